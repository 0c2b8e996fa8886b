package worker_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/embedded"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
)

// The NATS server stops and comes back on the same address and store
// (an embedded server restart, a node's restart): the worker's pulls,
// slots and watches recover and new jobs run.
func TestWorkerRecoversFromServerRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := natstest.ServerAt(t, dir)
	env := reelqtest.NewOn(t, s, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond)}})
	w := env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	env.Enqueue(reelqtest.Jobs(8, "before", reelqtest.SamsarJob)...)
	env.Results(8, time.Minute)

	addr := s.Addr().(*net.TCPAddr).String()
	embedded.Stop(s)
	s2, err := embedded.Start(embedded.Options{Name: "test", Listen: addr, StoreDir: dir})
	if err != nil {
		t.Fatalf("restart nats: %v", err)
	}
	t.Cleanup(func() { embedded.Stop(s2) })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitfor.Until(t, time.Minute, "the client and the worker to reconnect", func() error {
		if !env.NC.IsConnected() || !w.NC.IsConnected() {
			return fmt.Errorf("client %v, worker %v", env.NC.Status(), w.NC.Status())
		}
		return nil
	})
	env.Enqueue(reelqtest.SamsarJob("after-restart"))
	r, err := env.Client.Wait(ctx, "after-restart")
	if err != nil {
		t.Fatalf("job after the restart: %v", err)
	}
	if r.Status != reelq.StatusSucceeded {
		t.Fatalf("job after the restart: %+v", r)
	}
	// And with the server gone for good, shutdown still ends (nothing
	// waits for an ack that cannot come).
	embedded.Stop(s2)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Stop() }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop within 30 s without its server")
	}
}
