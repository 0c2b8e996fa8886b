package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/waitfor"
)

// A watcher that stops on its own (its updates channel closed by the
// server) is restarted with back-off, and Healthy (readiness) reports the
// gap until the restart succeeds. (Before, the provider-state watcher
// exited silently, freezing the replica's view of pauses.)
func TestWatcherIsRestarted(t *testing.T) {
	t.Parallel()
	w := &Worker{log: slog.New(slog.DiscardHandler), watchErr: map[string]error{}}
	var mu sync.Mutex
	calls := 0
	var stop chan struct{}
	failNext := true
	restarted := make(chan struct{}, 10)
	watch := func(context.Context) (<-chan struct{}, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls > 1 && w.Healthy() == nil {
			t.Error("readiness did not report the stopped watcher during the restart")
		}
		if calls == 2 && failNext {
			failNext = false
			return nil, errors.New("bucket not found")
		}
		stop = make(chan struct{})
		if calls > 1 {
			restarted <- struct{}{}
		}
		return stop, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	if err := w.startWatcher(ctx, &wg, "test watch", watch); err != nil {
		t.Fatal(err)
	}
	if err := w.Healthy(); err != nil {
		t.Fatalf("healthy at start: %v", err)
	}
	mu.Lock()
	close(stop) // the server ends the watch
	mu.Unlock()
	select {
	case <-restarted:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher was not restarted")
	}
	mu.Lock()
	n := calls
	mu.Unlock()
	if n != 3 {
		t.Errorf("watch called %d times, want 3 (start, a failed restart, a good one)", n)
	}
	// The supervisor marks the watcher healthy right after watch returns.
	waitfor.Until(t, 10*time.Second, "healthy after the restart", w.Healthy)
}
