package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/wire"
)

// sweeper is the dead-letter safety net. A message that reached its
// consumer's MaxDeliver (it kept crashing the worker process, say) is never
// delivered again but stays in the WorkQueue stream. The server announces
// it with an advisory, which the JOBS_ADVISORIES stream keeps; the sweeper
// moves such a message to the DLQ, publishes the job's failed result and
// deletes it from JOBS, so it neither blocks the queue nor vanishes.
type sweeper struct{ w *Worker }

type maxDeliverAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

func (s *sweeper) run(ctx context.Context) {
	w := s.w
	cons, err := w.js.CreateOrUpdateConsumer(ctx, queue.StreamAdvisories, jetstream.ConsumerConfig{
		Durable: "reelq-dlq-sweeper", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: 16,
	})
	if err != nil {
		if ctx.Err() == nil {
			w.log.Error("dead-letter sweeper not started", "err", err)
		}
		return
	}
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(fctx))
		cancel()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
				w.log.Warn("sweeper pull failed", "err", err)
				sleepCtx(ctx, time.Second)
			}
			continue
		}
		if err := s.sweep(ctx, msg.Data()); err != nil {
			w.log.Warn("sweeping a max-deliveries job failed; will retry", "err", err)
			_ = msg.NakWithDelay(5 * time.Second)
			continue
		}
		_ = msg.DoubleAck(ctx)
	}
}

func (s *sweeper) sweep(ctx context.Context, data []byte) error {
	w := s.w
	var adv maxDeliverAdvisory
	if err := json.Unmarshal(data, &adv); err != nil || adv.Stream != queue.StreamJobs {
		return nil // not ours; drop it
	}
	stream, err := w.js.Stream(ctx, queue.StreamJobs)
	if err != nil {
		return err
	}
	raw, err := stream.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // acked or removed meanwhile
	}
	if err != nil {
		return err
	}
	subj, _ := wire.ParseJobSubject(raw.Subject)
	provider := subj.Provider
	if provider == "" {
		provider, _, _ = strings.Cut(adv.Consumer, "-")
	}
	job, _ := reelq.DecodeJob(raw.Data)
	id := poisonID(job.ID, subj.ID, msgIDJob(raw.Header.Get(wire.HeaderMsgID)), adv.StreamSeq)
	reason := fmt.Sprintf("message delivered %d times without being settled (the worker kept crashing on it)", adv.Deliveries)
	if err := publishDLQ(ctx, w.js, provider, id, raw.Subject, raw.Data, raw.Header, adv.StreamSeq, "poison", reason); err != nil {
		return err
	}
	// Publish the failed result unless the job already has one.
	st, _, gerr := w.states.Get(ctx, id)
	if gerr == nil && st.Phase == reelq.PhaseFinished && len(st.Result) > 0 {
		var res reelq.Result
		if json.Unmarshal(st.Result, &res) == nil {
			if _, err := queue.PublishResult(ctx, w.js, &res); err != nil {
				return err
			}
		}
	} else {
		res := &reelq.Result{ID: id, Provider: provider, Batch: job.Batch, Status: reelq.StatusFailed,
			Error:       &reelq.ErrorInfo{Code: "poison", Message: reason},
			CompletedAt: time.Now().UTC(), Metadata: job.Metadata, Attempts: int(adv.Deliveries), PayOnce: reelq.PayOnceGuaranteed}
		if gerr == nil {
			res.Attempts = max(res.Attempts, st.Attempts)
			res.PayOnce = payOnce(w.recovery(provider), st)
			if st.Task != nil {
				res.ProviderTaskID = st.Task.ID
			}
		}
		init := &jobstate.State{ID: id, Provider: provider, Batch: job.Batch, Phase: reelq.PhaseQueued}
		if _, _, err := w.states.Mutate(ctx, id, init, func(st *jobstate.State) error {
			if st.Phase == reelq.PhaseFinished {
				return jobstate.ErrNoChange
			}
			st.Phase, st.Result, st.LastError = reelq.PhaseFinished, rawJSON(res), reason
			return nil
		}); err != nil {
			return err
		}
		if already, err := queue.PublishResult(ctx, w.js, res); err != nil {
			return err
		} else if !already {
			w.beat.finished(res)
		}
	}
	if err := stream.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	w.m.DeadLettered(provider, "poison")
	w.log.Warn("job dead-lettered after too many deliveries", "provider", provider, "job_id", id, "deliveries", adv.Deliveries)
	w.event(reelq.Event{Kind: reelq.EventDeadLettered, Provider: provider, JobID: id, Code: "poison", Reason: reason})
	return nil
}

// poisonID names the job of a message the server gave up delivering: the
// first of its body's, its subject's and its message id's ids, or its
// stream sequence when none is a valid id.
func poisonID(body, subject, msgID string, seq uint64) string {
	for _, id := range []string{body, subject, msgID} {
		if id != "" {
			if reelq.ValidID(id) {
				return id
			}
			break
		}
	}
	return wire.SeqID(seq)
}
