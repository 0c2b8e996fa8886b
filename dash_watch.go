package reelq

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WatchJob yields job id's state now (if it has one) and then every time a
// worker writes it, until ctx ends (yielding ctx's error) or the caller
// stops ranging. It reads only that key of the job state bucket (an
// ordered consumer filtered on it), whatever else the bucket holds, and
// keeps no state on the server. A job still waiting in the queue has no
// state yet: the first state comes when a worker picks it up.
func (c *Client) WatchJob(ctx context.Context, id string) iter.Seq2[*JobState, error] {
	return func(yield func(*JobState, error) bool) {
		if !ValidID(id) {
			yield(nil, fmt.Errorf("reelq: watch job: %w: id %q", ErrInvalidJob, id))
			return
		}
		cons, err := c.js.OrderedConsumer(ctx, "KV_"+BucketJobs, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{"$KV." + BucketJobs + "." + id},
			DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
			NamePrefix:     c.consumerName("watch"),
		})
		if err != nil {
			yield(nil, fmt.Errorf("reelq: watch job %s: %w", id, err))
			return
		}
		it, err := cons.Messages()
		if err != nil {
			yield(nil, fmt.Errorf("reelq: watch job %s: %w", id, err))
			return
		}
		defer stopIter(it)
		for {
			msg, err := nextMsg(ctx, it)
			if err != nil {
				yield(nil, err)
				return
			}
			if op := msg.Headers().Get("KV-Operation"); op == "DEL" || op == "PURGE" || len(msg.Data()) == 0 {
				continue
			}
			st, err := decodeState(id, msg.Data())
			if err != nil {
				continue
			}
			if !yield(st, nil) {
				return
			}
		}
	}
}

// CounterUpdate is a new value of one of the counters Stats reads: a
// batch's (Batch set) or a provider's (Provider set) field, such as
// "enqueued" or "done_succeeded".
type CounterUpdate struct {
	Batch, Provider string
	Field           string
	Value           uint64
	Time            time.Time
}

// FollowCounters yields the batch and provider counters as they move
// (jobs published, runs finished), from now on, until ctx ends (yielding
// ctx's error) or the caller stops ranging. A program that shows Stats
// reads them again when one moves, instead of polling. It keeps no state
// on the server.
func (c *Client) FollowCounters(ctx context.Context) iter.Seq2[CounterUpdate, error] {
	return func(yield func(CounterUpdate, error) bool) {
		cons, err := c.js.OrderedConsumer(ctx, StreamCounters, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{"counters.>"},
			DeliverPolicy:  jetstream.DeliverNewPolicy,
			NamePrefix:     c.consumerName("counters"),
		})
		if err != nil {
			yield(CounterUpdate{}, fmt.Errorf("reelq: follow counters: %w", err))
			return
		}
		it, err := cons.Messages()
		if err != nil {
			yield(CounterUpdate{}, fmt.Errorf("reelq: follow counters: %w", err))
			return
		}
		defer stopIter(it)
		for {
			msg, err := nextMsg(ctx, it)
			if err != nil {
				yield(CounterUpdate{}, err)
				return
			}
			u, ok := parseCounter(msg.Subject())
			if !ok {
				continue
			}
			u.Value = counterValue(msg.Data())
			if md, err := msg.Metadata(); err == nil {
				u.Time = md.Timestamp
			}
			if !yield(u, nil) {
				return
			}
		}
	}
}

// parseCounter reads counters.batch.<batch>.<field> and
// counters.provider.<provider>.<field>.
func parseCounter(subj string) (CounterUpdate, bool) {
	rest, ok := strings.CutPrefix(subj, "counters.")
	if !ok {
		return CounterUpdate{}, false
	}
	scope, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return CounterUpdate{}, false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return CounterUpdate{}, false
	}
	name, field := rest[:i], rest[i+1:]
	switch scope {
	case "batch":
		return CounterUpdate{Batch: name, Field: field}, true
	case "provider":
		return CounterUpdate{Provider: name, Field: field}, true
	}
	return CounterUpdate{}, false
}

// bucketSlots is the bucket the workers hold their providers' slots in
// (what Stats reads as running against the cap).
const bucketSlots = "reelq_slots"

// FollowSlots yields the name of a provider each time the slots held for
// it change (a job starts or ends at the provider, a worker renews or
// drops its lease), from now on, until ctx ends (yielding ctx's error) or
// the caller stops ranging. A program that shows Stats' running counts
// reads them again when told. It keeps no state on the server.
func (c *Client) FollowSlots(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		prefix := "$KV." + bucketSlots + "."
		cons, err := c.js.OrderedConsumer(ctx, "KV_"+bucketSlots, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{prefix + ">"},
			DeliverPolicy:  jetstream.DeliverNewPolicy,
			NamePrefix:     c.consumerName("slots"),
		})
		if err != nil {
			yield("", fmt.Errorf("reelq: follow slots: %w", err))
			return
		}
		it, err := cons.Messages()
		if err != nil {
			yield("", fmt.Errorf("reelq: follow slots: %w", err))
			return
		}
		defer stopIter(it)
		for {
			msg, err := nextMsg(ctx, it)
			if err != nil {
				yield("", err)
				return
			}
			if !yield(strings.TrimPrefix(msg.Subject(), prefix), nil) {
				return
			}
		}
	}
}
