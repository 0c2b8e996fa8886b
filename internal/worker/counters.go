package worker

import (
	"context"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/money"
)

// count adds a published result to the COUNTERS stream: done_<status> of
// its batch, and its estimated spend (in millionths of the unit) per batch
// and per provider. Each increment is a JetStream publish acknowledged by
// the server, under a Nats-Msg-Id naming the counter, the job and the run:
// the job's message is acked only after every increment is stored, and
// the next delivery of a job whose increments were not all acknowledged
// (a worker killed between the result and the ack, a server away) counts
// again, the server dropping what it already has within the stream's
// duplicate window (REELQ_DEDUPE_WINDOW). So a crash or a slow server
// neither loses nor doubles a run's counts.
func (e *engine) count(ctx context.Context, res *reelq.Result) error {
	msgs := counterIncrements(res)
	if len(msgs) == 0 {
		return nil
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond), backoff.WithMaxElapsedTime(20*time.Second)), ctx)
	return backoff.Retry(func() error {
		futs := make([]jetstream.PubAckFuture, 0, len(msgs))
		for _, m := range msgs {
			// A message is sent once: copy it for a retry.
			f, err := e.w.js.PublishMsgAsync(&nats.Msg{Subject: m.Subject, Header: m.Header})
			if err != nil {
				return err
			}
			futs = append(futs, f)
		}
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return backoff.Permanent(context.Cause(ctx))
			}
		}
		return nil
	}, b)
}

// counterIncrements are res's counter messages, each with its Nats-Msg-Id:
// cnt:<what>:<job id>:<run>.
func counterIncrements(res *reelq.Result) []*nats.Msg {
	run := strconv.Itoa(max(res.Run, 1))
	var out []*nats.Msg
	incr := func(subj, what string, by int64) {
		m := nats.NewMsg(subj)
		m.Header.Set("Nats-Incr", "+"+strconv.FormatInt(by, 10))
		m.Header.Set(reelq.HeaderMsgID, "cnt:"+what+":"+res.ID+":"+run)
		out = append(out, m)
	}
	if res.Batch != "" {
		incr(reelq.BatchCounterSubject(res.Batch, "done_"+res.Status), "b", 1)
	}
	if res.Cost != nil && res.Cost.Amount > 0 && res.Cost.Unit != "" {
		micro := int64(money.FromFloat(res.Cost.Amount))
		field := reelq.SpendCounterField(res.Cost.Unit)
		if res.Batch != "" {
			incr(reelq.BatchCounterSubject(res.Batch, field), "sb", micro)
		}
		incr(reelq.ProviderCounterSubject(res.Provider, field), "sp", micro)
	}
	return out
}
