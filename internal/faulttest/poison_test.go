package faulttest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/wire"
	"github.com/reelq/reelq/internal/worker"
)

// A job that keeps crashing whoever handles it (taken, never settled, as
// by a worker process that dies on it) reaches the consumer's MaxDeliver.
// The server stops delivering it but leaves it in the WorkQueue stream;
// the worker's sweeper picks up the max-deliveries advisory and moves the
// original payload to the DLQ, publishes one failed result and removes the
// message, while the jobs behind it run. A message that cannot be parsed
// fails at once the same way, answered under a seq-<stream sequence> id
// that cannot collide with a real job (its subject names a job id, but an
// unreadable body proves nothing about it).
func TestPoisonMessagesEndInDLQ(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, fastSamsar())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	settings := queue.ConsumerSettings{Cap: 1, AckWait: time.Second, MaxDeliver: 2}
	consumers, err := queue.EnsureConsumers(ctx, env.JS, "samsar", settings)
	if err != nil {
		t.Fatal(err)
	}
	cons := consumers[reelq.Normal]
	poison := reelqtest.SamsarJob("poison")
	env.Enqueue(poison)
	var payload []byte
	for want := uint64(1); want <= 2; want++ {
		m, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
		if err != nil {
			t.Fatalf("delivery %d: %v", want, err)
		}
		md, err := m.Metadata()
		if err != nil || md.NumDelivered != want {
			t.Fatalf("delivery %d: metadata %+v %v", want, md, err)
		}
		payload = m.Data() // and crash: never settle it
	}

	// A worker with the same consumer settings, behind the poisoned job.
	env.StartWorker(reelqtest.WorkerOptions{
		Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: settings.Cap}},
		Config:    worker.Config{AckWait: settings.AckWait, MaxDeliver: settings.MaxDeliver},
	})
	next := reelqtest.SamsarJob("behind-poison")
	env.Enqueue(next)
	ack, err := env.JS.Publish(ctx, "jobs.samsar.garbage", []byte("{oops"), jetstream.WithMsgID("garbage"))
	if err != nil {
		t.Fatal(err)
	}
	garbage := wire.SeqID(ack.Sequence)
	results := env.Results(3, time.Minute)
	waitDrained(t, env)

	if rs := results[poison.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusFailed || rs[0].Error == nil || rs[0].Error.Code != "poison" {
		t.Errorf("poisoned job: %+v, want one failed result with code poison", rs)
	}
	if rs := results[next.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Errorf("job behind the poisoned one: %+v, want one succeeded", rs)
	}
	if rs := results[garbage]; len(rs) != 1 || rs[0].Status != reelq.StatusFailed || rs[0].Error == nil || rs[0].Error.Code != reelq.CodeInvalidRequest {
		t.Errorf("unparseable message: %+v, want one failed result under %s with code invalid_request (all: %v)", rs, garbage, results)
	}
	if _, ok := results["garbage"]; ok {
		t.Errorf("the unparseable message was answered under the id its subject names: %+v", results["garbage"])
	}
	dlq, err := env.JS.Stream(ctx, queue.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string][]byte{poison.ID: payload, garbage: []byte("{oops")} {
		m, err := dlq.GetLastMsgForSubject(ctx, wire.DLQSubject("samsar", id))
		if err != nil {
			t.Errorf("DLQ has no message for %s: %v", id, err)
			continue
		}
		if !bytes.Equal(m.Data, want) {
			t.Errorf("DLQ payload of %s is %q, want the original %q", id, m.Data, want)
		}
		if m.Header.Get("Reelq-Error-Code") == "" || m.Header.Get("Reelq-Error") == "" {
			t.Errorf("DLQ message of %s carries no reason: %v", id, m.Header)
		}
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamDLQ); got != 2 {
		t.Errorf("DLQ holds %d messages, want 2", got)
	}
	if got := env.Sim.Stats(0)["samsar"].Submissions[reelqtest.SamsarPrompt(poison.ID)]; got != 0 {
		t.Errorf("the poisoned job reached the provider %d times", got)
	}
}
