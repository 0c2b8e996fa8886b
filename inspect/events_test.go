package inspect_test

import (
	"context"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/wire"
)

// A job's events are published under its id and read back by subject,
// without reading other jobs' events; FollowEvents sees new ones live.
func TestJobEvents(t *testing.T) {
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	after, err := env.Inspector.EventsSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	live := make(chan *reelq.Event, 64)
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range env.Inspector.FollowEvents(fctx, after, wire.EventFilter("samsar", reelq.EventSubmitted)...) {
			if err != nil {
				return
			}
			live <- ev
		}
	}()
	defer func() { stop(); <-done }()

	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	env.Enqueue(reelqtest.SamsarJob("ev-a"), reelqtest.SamsarJob("ev-b"))
	for _, id := range []string{"ev-a", "ev-b"} {
		if _, err := env.Client.Wait(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := env.Inspector.JobEvents(ctx, "ev-a")
	if err != nil {
		t.Fatal(err)
	}
	var submitted bool
	for _, ev := range evs {
		if ev.JobID != "ev-a" {
			t.Errorf("event of %q among ev-a's: %+v", ev.JobID, ev)
		}
		if ev.Kind == reelq.EventSubmitted && ev.TaskID != "" {
			submitted = true
		}
	}
	if !submitted {
		t.Fatalf("ev-a's events %+v lack a submitted event with its task", evs)
	}
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case ev := <-live:
			if ev.Kind != reelq.EventSubmitted {
				t.Fatalf("followed %+v, want only submitted events", ev)
			}
			seen[ev.JobID] = true
		case <-ctx.Done():
			t.Fatalf("followed submitted events for %v only", seen)
		}
	}
	if evs, err := env.Inspector.JobEvents(ctx, "never-enqueued"); err != nil || len(evs) != 0 {
		t.Fatalf("unknown job: %v, %v; want no events", evs, err)
	}
}
