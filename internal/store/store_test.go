package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/leaktest"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/store"
)

// TestMain checks that no test leaves a goroutine behind.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// A batched direct get receives each message once, also on a connection
// that has made requests before (whose response inboxes a wildcard
// subscription covers: a batch read on one of them came twice).
func TestDirectPageReceivesEachMessageOnce(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t, natstest.Server(t))
	natstest.Setup(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 300
	for range n {
		if _, err := js.Publish(ctx, "events.samsar.test", []byte("{}")); err != nil { // requests: the wildcard exists
			t.Fatal(err)
		}
	}
	if _, err := nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s := &store.Store{NC: nc, JS: js, Timeout: 10 * time.Second}
	before := nc.Stats().InMsgs
	got := 0
	if _, err := s.DirectPage(ctx, "EVENTS", map[string]any{"seq": 1, "batch": n}, func(store.Msg) bool { got++; return true }); err != nil {
		t.Fatal(err)
	}
	if in := nc.Stats().InMsgs - before; got != n || in > n+1 {
		t.Errorf("read %d of %d messages receiving %d (want %d and the end of the batch)", got, n, in, n)
	}
}
