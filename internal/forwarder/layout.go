package forwarder

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/wire"
)

// Streams, bucket and names of the forwarder. They are a public contract
// (docs/webhooks.md, the NATS permissions in deploy/nats/auth.conf).
const (
	// StreamDLQ keeps deliveries that never succeeded, one message per
	// receiver URL, on DLQSubject. Only the forwarder writes it.
	StreamDLQ = "HOOKS_DLQ"
	// StreamRedrive carries operators' requests to deliver a dead letter
	// again (enqueue hooks redrive), on RedriveSubject; a work queue.
	StreamRedrive = "HOOKS_REDRIVE"
	// BucketLedger records, per job, the last result whose deliveries
	// are settled and the progress of the one being delivered.
	BucketLedger = "reelq_hooks"
	// DefaultDurable is the forwarder's consumer on RESULTS and on
	// HOOKS_REDRIVE.
	DefaultDurable = "forwarder"
)

// DLQSubject is where a dead-lettered delivery of job id's result goes.
func DLQSubject(provider, id string) string { return "hooks.dlq." + provider + "." + id }

// RedriveSubject is where a request to deliver dead letter seq again goes.
func RedriveSubject(seq uint64) string { return "hooks.redrive." + strconv.FormatUint(seq, 10) }

// Layout sizes the forwarder's streams and bucket.
type Layout struct {
	// Replicas of each (1 to 5; default 1).
	Replicas int
	// Retention is how long dead letters and ledger entries are kept
	// (default 30 days, RESULTS' default).
	Retention time.Duration
}

// Setup creates or updates the forwarder's streams and bucket
// (idempotent: what matches is left alone).
func Setup(ctx context.Context, js jetstream.JetStream, l Layout) error {
	if l.Replicas <= 0 {
		l.Replicas = 1
	}
	if l.Retention <= 0 {
		l.Retention = 30 * 24 * time.Hour
	}
	streams := []jetstream.StreamConfig{
		{Name: StreamDLQ, Description: "reelq result webhooks that were never delivered", Subjects: []string{"hooks.dlq.>"},
			Storage: jetstream.FileStorage, Replicas: l.Replicas, MaxAge: l.Retention, AllowDirect: true, Duplicates: 2 * time.Minute},
		{Name: StreamRedrive, Description: "requests to deliver a dead-lettered webhook again", Subjects: []string{"hooks.redrive.*"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Replicas: l.Replicas, MaxAge: l.Retention, Duplicates: 2 * time.Minute},
	}
	for _, sc := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("forwarder: stream %s: %w", sc.Name, err)
		}
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketLedger, Description: "reelq result webhooks: delivery ledger per job",
		History: 1, TTL: l.Retention, Storage: jetstream.FileStorage, Replicas: l.Replicas}); err != nil {
		return fmt.Errorf("forwarder: bucket %s: %w", BucketLedger, err)
	}
	return nil
}

// consumers opens the forwarder's durable consumers, creating them when
// missing. A new RESULTS consumer starts after the last result already
// stored (or at the first with deliverAll); an existing one keeps its
// position and gets the current AckWait and MaxAckPending. It returns the
// RESULTS consumer's first sequence, below which nothing was ever
// delivered to it.
func consumers(ctx context.Context, js jetstream.JetStream, results jetstream.Stream, name string, deliverAll bool,
	ackWait time.Duration, maxPending int) (res, redrive jetstream.Consumer, first uint64, err error) {
	want := func(c jetstream.ConsumerConfig) jetstream.ConsumerConfig {
		c.Durable, c.AckPolicy, c.AckWait, c.MaxDeliver, c.MaxAckPending = name, jetstream.AckExplicitPolicy, ackWait, -1, maxPending
		c.Description = "reelq result forwarder (webhooks)"
		return c
	}
	res, err = js.Consumer(ctx, wire.StreamResults, name)
	switch {
	case err == nil:
		c := res.CachedInfo().Config
		if c.AckWait != ackWait || c.MaxAckPending != maxPending {
			if res, err = js.UpdateConsumer(ctx, wire.StreamResults, want(c)); err != nil {
				return nil, nil, 0, fmt.Errorf("forwarder: update consumer %s on %s: %w", name, wire.StreamResults, err)
			}
		}
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		c := jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
		if !deliverAll {
			info, err := results.Info(ctx)
			if err != nil {
				return nil, nil, 0, fmt.Errorf("forwarder: stream %s: %w", wire.StreamResults, err)
			}
			c = jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: info.State.LastSeq + 1}
		}
		if res, err = js.CreateConsumer(ctx, wire.StreamResults, want(c)); err != nil {
			return nil, nil, 0, fmt.Errorf("forwarder: create consumer %s on %s: %w", name, wire.StreamResults, err)
		}
	default:
		return nil, nil, 0, fmt.Errorf("forwarder: consumer %s on %s: %w", name, wire.StreamResults, err)
	}
	first = max(res.CachedInfo().Config.OptStartSeq, 1)
	redrive, err = js.CreateOrUpdateConsumer(ctx, StreamRedrive, want(jetstream.ConsumerConfig{}))
	if err != nil {
		return nil, nil, 0, fmt.Errorf("forwarder: consumer %s on %s: %w", name, StreamRedrive, err)
	}
	return res, redrive, first, nil
}
