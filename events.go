package reelq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// JobEvents returns the events kept in EVENTS about job id (submitted,
// progress, retries, holds, cancel requests, archive outcomes, ...),
// oldest first. It reads them by subject (JobEventSubject), so its cost is
// the job's own events, whatever else the stream holds; EVENTS keeps
// events for a limited time (see the stream's MaxAge).
func (c *Client) JobEvents(ctx context.Context, id string) ([]Event, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("reelq: job events: %w: id %q", ErrInvalidJob, id)
	}
	cctx, cancel := c.reqCtx(ctx)
	defer cancel()
	cons, err := c.js.OrderedConsumer(cctx, StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"events.*.*." + id},
		NamePrefix:     c.consumerName("events"),
	})
	if err != nil {
		return nil, fmt.Errorf("reelq: job events: %w", err)
	}
	info := cons.CachedInfo()
	if info == nil {
		return nil, errors.New("reelq: job events: no consumer info")
	}
	pending := info.NumPending
	out := make([]Event, 0, pending)
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 256)), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return out, fmt.Errorf("reelq: job events: %w", err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			var ev Event
			if json.Unmarshal(msg.Data(), &ev) == nil {
				out = append(out, ev)
			}
			if md, err := msg.Metadata(); err == nil {
				pending = md.NumPending
			}
		}
		if err := batch.Error(); err != nil && got == 0 {
			if cctx.Err() != nil {
				return out, context.Cause(cctx)
			}
			if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) {
				break // expired meanwhile
			}
			return out, fmt.Errorf("reelq: job events: %w", err)
		}
		if got == 0 {
			break
		}
	}
	return out, nil
}

// EventsSeq is the last sequence stored in EVENTS: pass it to
// FollowEvents to see every event stored after this call.
func (c *Client) EventsSeq(ctx context.Context) (uint64, error) {
	cctx, cancel := c.reqCtx(ctx)
	defer cancel()
	s, err := c.js.Stream(cctx, StreamEvents)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(cctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// FollowEvents yields events as they are stored, from the EVENTS stream
// sequence after on (0: from now on; take EventsSeq first so none can slip
// by), on the given subject filters (none: every event; see EventFilter
// and JobEventSubject). It ends when ctx ends (yielding ctx's error) or the
// caller stops ranging, and keeps no state on the server.
func (c *Client) FollowEvents(ctx context.Context, after uint64, filters ...string) iter.Seq2[*Event, error] {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverNewPolicy,
		NamePrefix: c.consumerName("events")}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	return followStream(ctx, c, StreamEvents, cfg, "follow events", func(msg jetstream.Msg) (*Event, bool) {
		var ev Event
		if json.Unmarshal(msg.Data(), &ev) != nil {
			return nil, false
		}
		return &ev, true
	})
}
