package worker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/wire"
)

// The sweeper dead-letters a message read back from JOBS with its stored
// headers, which include the server's own (Nats-Sequence, Nats-Stream,
// ...). Those must not be copied: a reader of the DLQ took the JOBS
// sequence for the dead letter's, and removing it after a redrive failed.
func TestDeadLetterDropsServerHeaders(t *testing.T) {
	s := natstest.Server(t)
	nc, js := natstest.Connect(t, s)
	natstest.Setup(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var seq uint64
	for _, id := range []string{"a", "b", "c"} {
		msg := &nats.Msg{Subject: wire.JobSubject("samsar", "", id), Data: []byte(`{"id":"` + id + `","provider":"samsar","input":{}}`), Header: nats.Header{"Traceparent": {"00-x"}}}
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		seq = ack.Sequence
	}
	stream, err := js.Stream(ctx, queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	if err := publishDLQ(ctx, js, "samsar", "c", raw.Subject, raw.Data, raw.Header, seq, "poison", "test"); err != nil {
		t.Fatal(err)
	}
	c, err := inspect.New(ctx, nc, reelq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dls, err := c.DeadLetters(ctx)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
	d := dls[0]
	if d.Seq != 1 || d.JobID != "c" || d.Header.Get("Traceparent") != "00-x" {
		t.Fatalf("dead letter seq %d job %q traceparent %q, want seq 1 (the DLQ's) for c with its traceparent", d.Seq, d.JobID, d.Header.Get("Traceparent"))
	}
	for k := range d.Header {
		if k == "Nats-Stream" && d.Header.Get(k) != queue.StreamDLQ {
			t.Errorf("header %s = %v copied from JOBS", k, d.Header[k])
		}
	}
}
