package faulttest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
)

func fastSamsar() map[string]providersim.Knobs {
	return map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(100 * time.Millisecond)}}
}

// Enqueuing one job id twice gives one job: the server drops a repeated
// Nats-Msg-Id within the duplicate window, the producer does not publish a
// job that is still queued or already started, and a second copy that
// slipped past both (published beyond the window, here with a distinct
// Nats-Msg-Id) is run once: one result, one paid submission.
func TestEnqueueSameJobTwice(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, fastSamsar())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job := reelqtest.SamsarJob("twice")

	if out := env.Enqueue(job); out[0].Status != "published" {
		t.Fatalf("first enqueue: %+v", out[0])
	}
	if out := env.Enqueue(job); out[0].Status != "duplicate" || out[0].Phase != jobstate.Queued {
		t.Fatalf("second enqueue while queued: %+v, want duplicate (queued)", out[0])
	}
	msg, err := queue.JobMsg(&job)
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := env.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(job.ID)); err != nil || !ack.Duplicate {
		t.Fatalf("republish with the same Nats-Msg-Id: ack %+v err %v, want a duplicate", ack, err)
	}
	if _, err := env.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(job.ID+"-beyond-window")); err != nil {
		t.Fatal(err)
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); got != 2 {
		t.Fatalf("JOBS holds %d messages, want 2 (the job and its late copy)", got)
	}
	// A claim whose message never made it (enqueue died between its two
	// steps) is published again.
	orphan := reelqtest.SamsarJob("orphan")
	if _, err := env.States.Create(ctx, &jobstate.State{ID: orphan.ID, Provider: orphan.Provider, Batch: orphan.Batch, Phase: jobstate.Queued}); err != nil {
		t.Fatal(err)
	}
	if out := env.Enqueue(orphan); out[0].Status != "requeued" {
		t.Fatalf("enqueue of a claimed but unpublished job: %+v, want requeued", out[0])
	}

	// One slot, so the copy is handled after the original finished.
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 1}}})
	results := env.Results(2, time.Minute)
	waitDrained(t, env)
	subs := env.Sim.Stats(0)["samsar"].Submissions
	for _, id := range []string{job.ID, orphan.ID} {
		if rs := results[id]; len(rs) != 1 || rs[0].Status != queue.StatusSucceeded {
			t.Errorf("job %s: results %+v, want one succeeded", id, rs)
		}
		if got := subs[reelqtest.SamsarPrompt(id)]; got != 1 {
			t.Errorf("job %s submitted %d times, want 1", id, got)
		}
	}
	// Once finished, enqueuing the id again changes nothing.
	if out := env.Enqueue(job); out[0].Status != "duplicate" || out[0].Phase != jobstate.Finished {
		t.Errorf("enqueue after finishing: %+v, want duplicate (finished)", out[0])
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); got != 0 {
		t.Errorf("JOBS holds %d messages, want 0", got)
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamResults); got != 2 {
		t.Errorf("RESULTS holds %d events, want 2", got)
	}
}

// waitDrained waits until JOBS is empty: every message acknowledged.
func waitDrained(t testing.TB, env *reelqtest.Env) {
	t.Helper()
	if err := eventually(time.Minute, func() error {
		if n := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); n > 0 {
			return fmt.Errorf("JOBS still holds %d messages", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
