package worker_test

import (
	"context"
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
	"github.com/reelq/reelq/internal/worker"
)

// The canceller removes a queued job's message outside engine.settle, and
// an engine may hold that message (pulled ahead, waiting for a slot). The
// two cannot race into harm: whichever writes the finished state first
// wins its compare-and-set, the other republishes the stored result
// (deduplicated), the engine settles its delivery of a message that may
// be gone and forgets the job. One cancelled result, nothing paid, no
// delivery left pending, JOBS drained; run with -count to see both orders.
func TestCancelOfAJobAnEngineHoldsIsSettledOnce(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(time.Second)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 1}}})
	env.Enqueue(reelqtest.SamsarJob("long"))
	waitfor.Job(t, env.JS, "long", 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseSubmitted })
	env.Enqueue(reelqtest.SamsarJob("held"))
	waitAckPending(t, env, 2) // the engine holds "held", waiting for the slot
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := env.Client.Cancel(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	results := env.Results(2, 30*time.Second)
	if rs := results["held"]; len(rs) != 1 || rs[0].Status != reelq.StatusCancelled || rs[0].ProviderTaskID != "" {
		t.Errorf("held: %+v, want one cancelled result without a task", rs)
	}
	if rs := results["long"]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Errorf("long: %+v, want one success", rs)
	}
	waitAckPending(t, env, 0)
	if n := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); n != 0 {
		t.Errorf("JOBS holds %d messages, want none", n)
	}
	if n := env.Sim.Stats(0)["samsar"].Submissions[reelqtest.SamsarPrompt("held")]; n != 0 {
		t.Errorf("the cancelled job was submitted %d times", n)
	}
}

// The sweeper deletes a message outside engine.settle, but only one the
// server reported as out of deliveries: the last permitted delivery
// expired unsettled. An engine that holds that last delivery heartbeats
// it, so no such report comes and the sweeper never touches it: here the
// worker runs a job on its last permitted delivery (MaxDeliver 2, the
// first delivery lost) for three times the ack wait, and it succeeds, with
// nothing dead-lettered.
func TestSweeperLeavesAHeldLastDeliveryAlone(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(3 * time.Second)}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	settings := queue.ConsumerSettings{Cap: 1, AckWait: time.Second, MaxDeliver: 2}
	consumers, err := queue.EnsureConsumers(ctx, env.JS, "samsar", settings)
	if err != nil {
		t.Fatal(err)
	}
	env.Enqueue(reelqtest.SamsarJob("last-chance"))
	if _, err := consumers[reelq.Normal].Next(jetstream.FetchMaxWait(30 * time.Second)); err != nil {
		t.Fatal(err) // delivery 1, never settled: lost
	}
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: settings.Cap}},
		Config: worker.Config{AckWait: settings.AckWait, MaxDeliver: settings.MaxDeliver}})
	rs := env.Results(1, 30*time.Second)["last-chance"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Fatalf("last-chance: %+v, want one success (not poison)", rs)
	}
	if n := natstest.StreamMsgs(t, env.JS, queue.StreamDLQ); n != 0 {
		t.Errorf("DLQ holds %d messages, want none", n)
	}
	st, _, err := env.States.Get(ctx, "last-chance")
	if err != nil || st.SubmittedAt == nil || time.Since(*st.SubmittedAt) < 3*settings.AckWait {
		t.Errorf("state %+v, %v: want a task that ran for three ack waits", st, err)
	}
}

// waitAckPending waits until samsar's normal consumer has n deliveries
// pending.
func waitAckPending(t *testing.T, env *reelqtest.Env, n int) {
	t.Helper()
	waitfor.Until(t, 20*time.Second, fmt.Sprintf("%d samsar deliveries pending", n), func() error {
		if got := env.ConsumerInfo("samsar").NumAckPending; got != n {
			return fmt.Errorf("%d pending", got)
		}
		return nil
	})
}
