package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/wire"
)

// finish ends the run: it stores the result in the job state (the first
// writer wins, so racing deliveries agree on one result), publishes it and
// waits for the server's acknowledgement; only then is the message acked.
func (e *engine) finish(ctx context.Context, j *job, status string, outs []reelq.Output, errInfo *reelq.ErrorInfo) outcome {
	sctx, cancel := settleCtx(ctx)
	defer cancel()
	res := e.result(j, status, outs, errInfo)
	init := e.newState(j, reelq.PhaseQueued)
	var cur *jobstate.State
	mine := false   // our result is the one stored
	shrunk := false // res replaced by a result_too_large failure
	for range 20 {
		if j.st == nil {
			// No state yet (a job cancelled or found invalid before it ever
			// started): create it finished.
			st := *init
			st.Phase, st.Result, st.LastError = reelq.PhaseFinished, rawJSON(res), lastError(errInfo)
			if errInfo != nil && errInfo.Code == reelq.CodeInvalidInput {
				st.Input = nil // too large or unreadable: not worth keeping
			}
			rev, err := e.w.states.Create(sctx, &st)
			if err == nil {
				j.st, j.rev, mine = &st, rev, true
				break
			}
			if errors.Is(err, jobstate.ErrTooLarge) && !shrunk {
				res, errInfo, shrunk = e.tooLarge(j, res, err)
				continue
			}
			if !errors.Is(err, jobstate.ErrExists) {
				return e.stateUnavailable(j, err)
			}
			cur, rev, err = e.w.states.Get(sctx, j.id)
			if err != nil {
				return e.stateUnavailable(j, err)
			}
			j.st, j.rev = cur, rev
		}
		if j.st.Phase == reelq.PhaseFinished && len(j.st.Result) > 0 && j.st.Run == res.Run {
			break // another delivery finished first: its result stands
		}
		next := *j.st
		next.Phase, next.Result, next.LastError, next.Reserved = reelq.PhaseFinished, rawJSON(res), lastError(errInfo), nil
		if j.st.Run != res.Run {
			res.Run = j.st.Run
			next.Result = rawJSON(res)
		}
		rev, err := e.w.states.Update(sctx, j.st, &next, j.rev)
		if err == nil {
			j.st, j.rev, mine = &next, rev, true
			break
		}
		if errors.Is(err, jobstate.ErrInvalidTransition) {
			e.logJob(j).Error("cannot finish the job from its state", "phase", j.st.Phase, "err", err)
			return term("invalid state")
		}
		if errors.Is(err, jobstate.ErrTooLarge) && !shrunk {
			res, errInfo, shrunk = e.tooLarge(j, res, err)
			continue
		}
		if !errors.Is(err, jobstate.ErrConflict) {
			return e.stateUnavailable(j, err)
		}
		st, rev, gerr := e.w.states.Get(sctx, j.id)
		if gerr != nil {
			return e.stateUnavailable(j, gerr)
		}
		j.st, j.rev = st, rev
	}
	if !mine {
		return e.publishStored(ctx, j, j.st) // another delivery's result stands
	}
	return e.publishResult(ctx, j, res, j.st.Result)
}

// tooLarge replaces a result the job state cannot hold (more outputs or
// text than the server's message limit) with a failed one that says so:
// writing it again would fail however often it were tried, so this is no
// outage to wait out.
func (e *engine) tooLarge(j *job, res *reelq.Result, err error) (*reelq.Result, *reelq.ErrorInfo, bool) {
	e.logJob(j).Error("the run's result does not fit in its job state; failing the run", "status", res.Status, "outputs", len(res.Outputs), "err", err)
	cp := *res
	cp.Status, cp.Outputs = reelq.StatusFailed, nil
	cp.Error = &reelq.ErrorInfo{Code: reelq.CodeResultTooLarge,
		Message: fmt.Sprintf("the provider's answer (a %s result with %d outputs) does not fit in the job state: %s", res.Status, len(res.Outputs), e.w.redact(err.Error()))}
	return &cp, cp.Error, true
}

func lastError(ei *reelq.ErrorInfo) string {
	if ei == nil {
		return ""
	}
	return ei.Message
}

// result builds the run's result event.
func (e *engine) result(j *job, status string, outs []reelq.Output, errInfo *reelq.ErrorInfo) *reelq.Result {
	now := time.Now().UTC()
	res := &reelq.Result{
		ID: j.id, Provider: e.name, Batch: j.env.Batch, Run: j.run, Status: status, Outputs: outs, Error: errInfo,
		Cost: e.cost(j), EnqueuedAt: e.enqueuedAt(j), CompletedAt: now, Metadata: j.env.Metadata,
		Priority: j.env.Priority, FairnessKey: j.env.FairnessKey, Traceparent: resultTraceparent(j), Attempts: 1,
	}
	if st := j.st; st != nil {
		res.Run = st.Run
		res.Attempts = st.Attempts + 1 // the failed ones plus this one
		if j.exhausted {
			res.Attempts = st.Attempts
		}
		if st.Task != nil {
			res.ProviderTaskID = st.Task.ID
		}
		res.SubmittedAt = st.SubmittedAt
		if st.EnqueuedAt != nil {
			res.EnqueuedAt = st.EnqueuedAt
		}
		res.OutputRetries = st.OutputRetries
		if res.Cost != nil && st.Submissions > 1 {
			// Paid twice (an ambiguous submission, or an output retry):
			// both count.
			c := *res.Cost
			c.Amount = (money.FromFloat(c.Amount) * money.Micros(st.Submissions)).Float()
			c.Basis = fmt.Sprintf("%s, x%d submissions", c.Basis, st.Submissions)
			res.Cost = &c
		}
	}
	if res.ProviderTaskID == "" && (j.st == nil || j.st.Submissions == 0) {
		res.Cost = nil // nothing was submitted
	}
	res.PayOnce = payOnce(e.rt.Spec.Recovery, j.st)
	return res
}

// payOnce is a result's PayOnce: best effort when a paid call of the run
// was made again after an unknown outcome (st counts more than one
// submission besides the output retries, which are paid again on
// purpose) and the provider cannot recover submissions.
func payOnce(r providers.Recovery, st *jobstate.State) string {
	if st != nil && st.Submissions-st.OutputRetries > 1 && r.PayOnce() != reelq.PayOnceGuaranteed {
		return reelq.PayOnceBestEffort
	}
	return reelq.PayOnceGuaranteed
}

// republish handles a delivery of a run that already finished (a
// duplicate message, or a crash between storing and acking the result).
func (e *engine) republish(ctx context.Context, j *job, st *jobstate.State) outcome {
	e.logJob(j).Info("job already finished; making sure its result is published")
	return e.publishStored(ctx, j, st)
}

// publishStored publishes the state's stored result (deduplicated by the
// server), counts it, and acks.
func (e *engine) publishStored(ctx context.Context, j *job, st *jobstate.State) outcome {
	res := st.StoredResult()
	if res == nil {
		e.logJob(j).Error("finished job has no readable stored result; dropping the message")
		return term("no stored result")
	}
	if res.Run == 0 {
		res.Run = st.Run
	}
	if j.span != nil && j.span.IsRecording() {
		// This delivery publishes it: the consumer's span is its child
		// (the delivery that stored it may have died unexported).
		res.Traceparent = resultTraceparent(j)
	}
	return e.publishResult(ctx, j, res, nil)
}

// publishResult publishes res (data: its encoding, or nil), counts it and
// acks.
func (e *engine) publishResult(ctx context.Context, j *job, res *reelq.Result, data []byte) outcome {
	sctx, cancel := settleCtx(ctx)
	defer cancel()
	if j.env.Batch != "" {
		// The batch lists the job before anyone can see its result.
		ictx, icancel := context.WithTimeout(sctx, indexAckWait+time.Second)
		e.index.waitIndexed(ictx, j.id)
		icancel()
	}
	pctx, span := e.stepSpan(sctx, "reelq.result.publish", trace.SpanKindProducer)
	span.SetAttributes(attribute.String("messaging.destination.name", wire.ResultSubject(res.Provider, res.ID)),
		attribute.String("reelq.status", res.Status), attribute.Int("reelq.run", res.Run))
	var already bool
	err := backoff.Retry(func() error {
		var err error
		already, err = queue.PublishResultData(pctx, e.w.js, res, data)
		return err
	}, backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond), backoff.WithMaxElapsedTime(20*time.Second)), sctx))
	span.SetAttributes(attribute.Bool("reelq.already_published", already))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	if err != nil {
		e.logJob(j).Warn("result not acknowledged by the server; trying again later", "err", err)
		return waitFor(5 * time.Second)
	}
	if already {
		return ack()
	}
	e.w.beat.finished(res)
	var since time.Time
	if res.EnqueuedAt != nil {
		since = *res.EnqueuedAt
	}
	e.w.m.JobDone(e.name, res.Status, since)
	if e.log.Enabled(ctx, slog.LevelInfo) {
		attrs := []any{"status", res.Status, "attempts", res.Attempts, "run", res.Run}
		if res.Error != nil {
			attrs = append(attrs, "code", res.Error.Code, "error", res.Error.Message)
		}
		e.logJob(j).Info("job finished", attrs...)
	}
	return ack()
}

// stepInvalid fails a job whose input breaks the provider's rules (or the
// size limits) at once, without a slot, under its own id.
func (e *engine) stepInvalid(ctx context.Context, j *job) outcome {
	cur, rev, err := e.w.states.Get(ctx, j.id)
	switch {
	case err == nil:
		j.st, j.rev = cur, rev
		if out, again := e.decideNoSubmit(ctx, j); !again {
			return out
		}
	case !errors.Is(err, jobstate.ErrNotFound):
		return e.stateUnavailable(j, err)
	}
	code := reelq.CodeInvalidInput
	if !errors.Is(j.invalid(), providers.ErrInvalidInput) {
		code = reelq.CodeInvalidRequest
		if errors.Is(j.invalid(), reelq.ErrInvalidJob) {
			code = reelq.CodeInvalidInput
		}
	}
	e.logJob(j).Warn("job input is invalid; failing it without calling the provider", "err", j.invalid())
	return e.finish(ctx, j, reelq.StatusFailed, nil, &reelq.ErrorInfo{Code: code, Message: e.w.redact(j.invalid().Error())})
}

// decideNoSubmit handles an invalid job whose id is already known: a
// different content is a conflict, a finished run is republished; anything
// else (a run in progress with the same content is impossible here, since
// valid content passed before) fails the job.
func (e *engine) decideNoSubmit(ctx context.Context, j *job) (outcome, bool) {
	cur := j.st
	if !j.sameContent(cur.Digest) {
		return e.conflict(ctx, j, cur), false
	}
	if cur.Phase == reelq.PhaseFinished && cur.Run >= j.run {
		return e.republish(ctx, j, cur), false
	}
	return outcome{}, true
}

// stepCancelQueued finishes a job that has not started as cancelled: no
// provider call is ever made for it.
func (e *engine) stepCancelQueued(ctx context.Context, j *job) outcome {
	cur, rev, err := e.w.states.Get(ctx, j.id)
	switch {
	case errors.Is(err, jobstate.ErrNotFound):
		j.st = nil
	case err != nil:
		return e.stateUnavailable(j, err)
	default:
		j.st, j.rev = cur, rev
		if !j.sameContent(cur.Digest) {
			return e.conflict(ctx, j, cur)
		}
		switch cur.Phase {
		case reelq.PhaseFinished:
			return e.republish(ctx, j, cur)
		case reelq.PhaseSubmitting, reelq.PhaseSubmitted, reelq.PhaseArchiving:
			if cur.Seq != 0 && cur.Seq != j.seq {
				return term("duplicate")
			}
			if cur.Phase != reelq.PhaseSubmitting {
				return e.cancelRunning(ctx, j)
			}
		}
	}
	if j.st != nil && j.st.Phase == reelq.PhaseSubmitting {
		// Another delivery's paid call may still answer: the worker that
		// made it cancels the task it gets, where the provider allows.
		e.logJob(j).Info("cancelled before a task was recorded; a task the submission in flight creates is cancelled where the provider allows")
		return e.finish(ctx, j, reelq.StatusCancelled, nil, &reelq.ErrorInfo{Code: reelq.CodeCancelled, Message: "cancelled before a task was recorded"})
	}
	e.logJob(j).Info("cancelled before it started; the provider is never called")
	return e.finish(ctx, j, reelq.StatusCancelled, nil, &reelq.ErrorInfo{Code: reelq.CodeCancelled, Message: "cancelled before it started"})
}

// conflict handles a message whose id is known with different content: it
// is dead-lettered and answered under its own stream sequence; the
// existing job is left untouched.
func (e *engine) conflict(ctx context.Context, j *job, cur *jobstate.State) outcome {
	err := fmt.Errorf("job %s is already known with different content (provider, input or metadata); the existing job is left as it is: give this one another id", j.id)
	e.jobEvent(j, reelq.EventDeadLettered, func(ev *reelq.Event) { ev.Code, ev.Reason = reelq.CodeConflict, err.Error() })
	return e.deadLetterSeq(ctx, j, reelq.CodeConflict, err)
}

// stepDeadLetter handles a message that cannot be attributed to a job.
func (e *engine) stepDeadLetter(ctx context.Context, j *job) outcome {
	return e.deadLetterSeq(ctx, j, reelq.CodeInvalidRequest, j.bad())
}

// deadLetterSeq moves a message to the DLQ and answers it with a failed
// result under SeqID(stream sequence), an id no real job has; no job
// state is read or written, so such a message can only ever affect itself.
func (e *engine) deadLetterSeq(ctx context.Context, j *job, code string, cause error) outcome {
	id := wire.SeqID(j.seq)
	reason := e.w.redact(cause.Error())
	e.log.Warn("message cannot run; dead-lettering it", "stream_seq", j.seq, "claimed_id", j.env.ID, "code", code, "err", reason)
	if err := publishDLQ(ctx, e.w.js, e.name, id, j.msg.Subject(), j.msg.Data(), j.msg.Headers(), j.seq, code, reason); err != nil {
		e.log.Warn("dead-letter publish failed; trying again later", "stream_seq", j.seq, "err", err)
		return waitFor(5 * time.Second)
	}
	e.w.m.DeadLettered(e.name, code)
	res := &reelq.Result{ID: id, Provider: e.name, Run: 1, Status: reelq.StatusFailed, CompletedAt: time.Now().UTC(),
		Error: &reelq.ErrorInfo{Code: code, Message: reason}, Traceparent: resultTraceparent(j), PayOnce: reelq.PayOnceGuaranteed}
	if already, err := queue.PublishResult(ctx, e.w.js, res); err != nil {
		e.log.Warn("publishing the dead letter's result failed; trying again later", "stream_seq", j.seq, "err", err)
		return waitFor(5 * time.Second)
	} else if !already {
		e.w.beat.finished(res)
	}
	e.w.event(reelq.Event{Kind: reelq.EventDeadLettered, Provider: e.name, JobID: id, Code: code, Reason: reason})
	return term(code)
}

// publishDLQ stores a dead letter with its reason in headers.
func publishDLQ(ctx context.Context, js jetstream.JetStream, provider, id, subject string, data []byte, hdr nats.Header, seq uint64, code, reason string) error {
	msg := &nats.Msg{Subject: wire.DLQSubject(provider, id), Data: data, Header: nats.Header{}}
	for k, v := range hdr {
		// Nats-* headers are the server's (Nats-Msg-Id, and on a message
		// read back from a stream Nats-Sequence, Nats-Stream, ...): the DLQ
		// sets its own, and a copy would shadow them.
		if !strings.HasPrefix(http.CanonicalHeaderKey(k), "Nats-") {
			msg.Header[k] = v
		}
	}
	msg.Header.Set("Reelq-Error-Code", code)
	msg.Header.Set("Reelq-Error", reason)
	msg.Header.Set("Reelq-Provider", provider)
	msg.Header.Set("Reelq-Job-Id", id)
	msg.Header.Set("Reelq-Stream-Seq", strconv.FormatUint(seq, 10))
	msg.Header.Set("Reelq-Subject", subject)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := js.PublishMsg(sctx, msg, jetstream.WithMsgID(fmt.Sprintf("dlq:%s:%d", id, seq)))
	return err
}

// archive is where a succeeded run's outputs are copied into durable
// storage before its result is published (see archive.go).

// Helpers shared by the steps.

// newState is the state a job's first delivery creates.
func (e *engine) newState(j *job, phase reelq.Phase) *jobstate.State {
	st := &jobstate.State{
		ID: j.id, Provider: e.name, Batch: j.env.Batch, Priority: j.env.Priority, FairnessKey: j.env.FairnessKey,
		Digest: j.digestOf(), Phase: phase, Run: 1, Seq: j.seq, Input: j.env.Input, Metadata: j.env.Metadata, Expect: j.env.Expect,
		Traceparent: j.traceparent, Worker: e.w.cfg.WorkerID, EnqueuedAt: e.enqueuedAt(j),
	}
	if phase == reelq.PhaseSubmitting {
		now := time.Now().UTC()
		st.SubmitStartedAt, st.SubmitToken = &now, newToken()
	}
	return st
}

// enqueuedAt is when j was enqueued: its producer's stamp, or the
// stream's (decodeEnvelope).
func (e *engine) enqueuedAt(j *job) *time.Time { return j.env.EnqueuedAt }

// logJob is the job's logger (built on demand: a waiting job carries none).
func (e *engine) logJob(j *job) *slog.Logger {
	l := e.log.With("job_id", j.id, "stream_seq", j.seq, "delivery", j.deliveries)
	if j.env.Batch != "" {
		l = l.With("batch", j.env.Batch)
	}
	if j.run > 1 {
		l = l.With("run", j.run)
	}
	if j.traceparent != "" {
		l = l.With("trace_id", traceID(j.traceparent))
	}
	return l
}

func (e *engine) jobEvent(j *job, kind string, mod func(*reelq.Event)) {
	ev := reelq.Event{Kind: kind, Provider: e.name, JobID: j.id, Batch: j.env.Batch, Run: j.run}
	if j.st != nil {
		ev.Run = j.st.Run
	}
	if a, ok := j.attempts(); ok {
		ev.Attempt = a + 1
	}
	switch {
	case j.shed != nil:
		ev.TaskID = j.shed.taskID
	case j.st != nil && j.st.Task != nil:
		ev.TaskID = j.st.Task.ID
	}
	if mod != nil {
		mod(&ev)
	}
	e.w.event(ev)
}

// estimate prices one submission of a valid job (done once, at intake).
func (e *engine) estimate(j *job) *reelq.Cost {
	if len(j.env.Input) == 0 || j.invalid() != nil {
		return nil
	}
	c := e.rt.Provider.Estimate(j.env.Input)
	if c.Unit == "" {
		return nil // unpriced (a hub model without a price): no cost, never a unit-less one
	}
	// Jobs priced alike share one estimate (read only, as every j.est
	// is), up to maxEstimates distinct ones.
	est := reelq.Cost{Amount: c.Amount, Unit: c.Unit, Basis: c.Basis}
	if p, ok := e.estimates.Load(est); ok {
		return p.(*reelq.Cost)
	}
	if e.estimatesN.Add(1) > maxEstimates {
		return &est
	}
	p, _ := e.estimates.LoadOrStore(est, &est)
	return p.(*reelq.Cost)
}

// maxEstimates bounds the distinct estimates an engine keeps shared.
const maxEstimates = 4096

// cost is the job's estimate (a copy), or nil.
func (e *engine) cost(j *job) *reelq.Cost {
	if j.est == nil {
		return nil
	}
	c := *j.est
	return &c
}

// errorInfo turns a classified error into the result's error.
func errorInfo(err error, redact func(string) string) *reelq.ErrorInfo {
	code := providers.Code(err)
	if code == "" {
		code = reelq.CodeInternal
	}
	return &reelq.ErrorInfo{Code: code, Message: redact(err.Error())}
}

func rawJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// traceID extracts the trace id from a W3C traceparent header.
func traceID(tp string) string {
	if len(tp) >= 35 && tp[2] == '-' {
		return tp[3:35]
	}
	return ""
}
