package queue

import (
	"context"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/wire"
)

// countResult adds a published result to the COUNTERS stream: done_<status>
// of its batch and of its provider, and its estimated spend (in millionths
// of the unit) per batch and per provider. Each increment is a JetStream publish the server
// acknowledges, under a Nats-Msg-Id naming the counter, the job and the
// run, so sending it again (the next delivery of a job whose worker was
// killed between the result and the ack, a retry after a lost
// acknowledgement) is dropped by the server within the stream's duplicate
// window (REELQ_DEDUPE_WINDOW): a run is counted once. An error means some
// increments may be missing: publishing the result again counts them.
func countResult(ctx context.Context, js jetstream.JetStream, r *reelq.Result) error {
	msgs := counterIncrements(r)
	futs := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		f, err := js.PublishMsgAsync(m)
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
			return context.Cause(ctx)
		}
	}
	return nil
}

// counterIncrements are r's counter messages, each with its Nats-Msg-Id
// cnt:<counter>:<job id>:<run>.
func counterIncrements(r *reelq.Result) []*nats.Msg {
	run := strconv.Itoa(max(r.Run, 1))
	var out []*nats.Msg
	incr := func(subj, what string, by int64) {
		m := nats.NewMsg(subj)
		m.Header.Set("Nats-Incr", "+"+strconv.FormatInt(by, 10))
		m.Header.Set(wire.HeaderMsgID, "cnt:"+what+":"+r.ID+":"+run)
		out = append(out, m)
	}
	if r.Batch != "" {
		incr(wire.BatchCounterSubject(r.Batch, "done_"+r.Status), "b", 1)
	}
	incr(wire.ProviderCounterSubject(r.Provider, "done_"+r.Status), "p", 1)
	if r.Cost != nil && r.Cost.Amount > 0 && r.Cost.Unit != "" {
		micro := int64(money.FromFloat(r.Cost.Amount))
		field := wire.SpendCounterField(r.Cost.Unit)
		if r.Batch != "" {
			incr(wire.BatchCounterSubject(r.Batch, field), "sb", micro)
		}
		incr(wire.ProviderCounterSubject(r.Provider, field), "sp", micro)
	}
	return out
}
