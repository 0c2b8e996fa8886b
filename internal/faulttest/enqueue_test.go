package faulttest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

func fastSamsar() map[string]providersim.Knobs {
	return map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(100 * time.Millisecond)}}
}

// Enqueuing one job id twice gives one job: the client does not publish a
// job that is still queued or already started (Known), the server drops a
// repeated Nats-Msg-Id within the duplicate window, and a second copy that
// slipped past both (what a publish beyond the duplicate window is: here a
// distinct Nats-Msg-Id that still names the job) is run once: one result,
// one paid submission. The same id with other content is refused and the
// known job left alone.
func TestEnqueueSameJobTwice(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, fastSamsar())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job := reelqtest.SamsarJob("twice")

	if out := env.Enqueue(job); out[0].Status != reelq.Published {
		t.Fatalf("first enqueue: %+v", out[0])
	}
	if out := env.Enqueue(job); out[0].Status != reelq.Known || out[0].Phase != reelq.PhaseQueued {
		t.Fatalf("second enqueue while queued: %+v, want known (queued)", out[0])
	}
	other := job
	other.Input = []byte(`{"prompt":"something else","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)
	if out, err := env.Client.EnqueueBatch(ctx, []reelq.Job{other}, reelq.BatchOptions{}); err != nil || out[0].Status != reelq.Failed || !errors.Is(out[0].Err, reelq.ErrConflict) {
		t.Fatalf("enqueue of the id with other content: %+v %v, want failed with ErrConflict", out, err)
	}
	msg := reelqtest.JobMsg(&job)
	if ack, err := env.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(wire.JobMsgID(job.ID, 1))); err != nil || !ack.Duplicate {
		t.Fatalf("republish with the same Nats-Msg-Id: ack %+v err %v, want a duplicate", ack, err)
	}
	msg = reelqtest.JobMsg(&job)
	if _, err := env.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(job.ID+":beyond-window")); err != nil {
		t.Fatal(err)
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); got != 2 {
		t.Fatalf("JOBS holds %d messages, want 2 (the job and its late copy)", got)
	}

	// One slot, so the copy is handled after the original finished.
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 1}}})
	results := env.Results(1, time.Minute)
	waitDrained(t, env)
	if rs := results[job.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Errorf("job %s: results %+v, want one succeeded", job.ID, rs)
	}
	if got := env.Sim.Stats(0)["samsar"].Submissions[reelqtest.SamsarPrompt(job.ID)]; got != 1 {
		t.Errorf("job %s submitted %d times, want 1", job.ID, got)
	}
	// Once finished, enqueuing the id again changes nothing.
	if out := env.Enqueue(job); out[0].Status != reelq.Known || out[0].Phase != reelq.PhaseFinished || out[0].Result == nil {
		t.Errorf("enqueue after finishing: %+v, want known (finished) with its result", out[0])
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); got != 0 {
		t.Errorf("JOBS holds %d messages, want 0", got)
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamResults); got != 1 {
		t.Errorf("RESULTS holds %d events, want 1", got)
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamDLQ); got != 0 {
		t.Errorf("DLQ holds %d messages, want 0 (the late copy is the same job, not a bad message)", got)
	}
}

// waitDrained waits until JOBS is empty: every message acknowledged.
func waitDrained(t testing.TB, env *reelqtest.Env) {
	t.Helper()
	if err := waitfor.Poll(time.Minute, func() error {
		if n := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); n > 0 {
			return fmt.Errorf("JOBS still holds %d messages", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
