package main

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runJetStream is the floor under every JetStream queue, the same loop as
// internal/bench's raw path: async publishes with a message id (dedupe
// over the stream's duplicate window) into a work-queue stream, then a
// consumer that publishes a result with its own message id and acks.
func runJetStream(o opts) result {
	dir, _ := os.MkdirTemp("", "peers-js-")
	defer os.RemoveAll(dir)
	srv := startNATS(o.natsBin, dir, o.natsSync)
	defer srv.stop()
	nc, err := nats.Connect("nats://" + srv.addr)
	if err != nil {
		fatalf("%v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
	ctx := context.Background()
	for name, subj := range map[string]string{"RAW": "raw.>", "RAWRES": "rawres.>"} {
		ret := jetstream.WorkQueuePolicy
		if name == "RAWRES" {
			ret = jetstream.LimitsPolicy
		}
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Retention: ret, Storage: jetstream.FileStorage, Duplicates: time.Hour}); err != nil {
			fatalf("%v", err)
		}
	}
	publish := func(subj string, data []byte, id string) {
		for {
			_, err := js.PublishAsync(subj, data, jetstream.WithMsgID(id))
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				<-js.PublishAsyncComplete()
				continue
			}
			if err != nil {
				fatalf("publish: %v", err)
			}
			return
		}
	}
	m0 := markNow(srv)
	for i := range o.jobs {
		publish("raw.samsar."+jobID(i), []byte(jobInput(i)), jobID(i))
	}
	<-js.PublishAsyncComplete()
	cons, err := js.CreateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4000})
	if err != nil {
		fatalf("%v", err)
	}
	var done atomic.Int64
	finished := make(chan struct{})
	st0 := nc.Stats()
	m1 := markNow(srv)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, _ := m.Metadata()
		seq := strconv.FormatUint(md.Sequence.Stream, 10)
		publish("rawres.samsar."+seq, m.Data(), "r"+seq)
		_ = m.Ack()
		if done.Add(1) == int64(o.jobs) {
			close(finished)
		}
	})
	if err != nil {
		fatalf("%v", err)
	}
	<-finished
	<-js.PublishAsyncComplete()
	m2 := markNow(srv)
	st := nc.Stats()
	cc.Stop()
	// The dedupe, checked untimed: the id is in the duplicate window.
	if ack, err := js.Publish(ctx, "raw.samsar."+jobID(0), []byte(jobInput(0)), jetstream.WithMsgID(jobID(0))); err != nil || !ack.Duplicate {
		fatalf("dedupe: publishing %s again: %+v %v", jobID(0), ack, err)
	}
	r := phases(m0, m1, m2)
	r.MsgsPerJob = float64(st.InMsgs-st0.InMsgs+st.OutMsgs-st0.OutMsgs) / float64(o.jobs)
	return r
}
