package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

// A worker killed after publishing a run's result and before its ack
// leaves the job's message to be delivered again (the kill is stood in
// for by publishing the result event first, under the run's Nats-Msg-Id).
// The run is counted once, from the result RESULTS stores (the fold):
// done and spend, per batch and per provider. A later copy of the job
// republishes the stored result and counts nothing twice.
func TestRunPublishedBeforeItsCountIsCountedOnce(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job := reelqtest.SamsarJob("counted")
	job.Batch = "precount"
	cost := reelq.Cost{Amount: 50, Unit: "credits"}
	early, err := json.Marshal(reelq.Result{ID: job.ID, Provider: "samsar", Batch: job.Batch, Status: reelq.StatusSucceeded, Run: 1, Cost: &cost})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.JS.Publish(ctx, wire.ResultSubject("samsar", job.ID), early, jetstream.WithMsgID(wire.ResultMsgID(job.ID, 1))); err != nil {
		t.Fatal(err)
	}
	env.Enqueue(job)
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	drained := func() {
		t.Helper()
		waitfor.Until(t, time.Minute, "JOBS to drain", func() error {
			if n := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); n > 0 {
				return fmt.Errorf("JOBS holds %d", n)
			}
			return nil
		})
	}
	drained()
	check := func(when string) {
		t.Helper()
		s := waitfor.Counted(t, ctx, env.Inspector, inspect.StatsOptions{Batch: job.Batch}, time.Minute)
		if len(s.Batches) != 1 || s.Batches[0].Succeeded != 1 || s.Batches[0].Spent[cost.Unit] != cost.Amount {
			t.Errorf("%s: batch stats %+v, want 1 succeeded and %v %s spent", when, s.Batches, cost.Amount, cost.Unit)
		}
		for _, p := range s.Providers {
			if p.Provider == "samsar" && p.Spent[cost.Unit] != cost.Amount {
				t.Errorf("%s: samsar spent %v, want %v %s", when, p.Spent, cost.Amount, cost.Unit)
			}
		}
	}
	check("after the delivery that found its result published")

	// A copy of the job (what a publish beyond the JOBS duplicate window
	// is): the stored result is published again, nothing counted twice.
	msg := reelqtest.JobMsg(&job)
	msg.Header = nats.Header{}
	if _, err := env.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(job.ID+":beyond-window")); err != nil {
		t.Fatal(err)
	}
	drained()
	check("after a copy of the job")
}
