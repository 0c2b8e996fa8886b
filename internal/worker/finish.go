package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/queue"
)

// finish ends the job: it stores the result in the job state (first
// writer wins, so racing deliveries agree on one result), publishes it and
// waits for the server's ack, and only then acknowledges the job.
func (r *jobRun) finish(ctx context.Context, status string, outputs []providers.Output, errInfo *queue.ErrorInfo) {
	sctx, cancel := r.settleCtx(ctx)
	defer cancel()
	now := time.Now().UTC()
	res := &queue.Result{
		ID: r.job.ID, Provider: r.name, Batch: r.job.Batch, Status: status, Outputs: outputs, Error: errInfo,
		Cost: r.cost(), EnqueuedAt: r.enqueuedAt(), CompletedAt: now, Metadata: r.job.Metadata, Traceparent: r.traceparent,
	}
	if r.st != nil {
		res.Attempts = r.st.Attempts + 1 // the failed ones plus this one
		if r.exhausted {
			res.Attempts = r.st.Attempts
		}
		if r.st.Task != nil {
			res.ProviderTaskID = r.st.Task.ID
		}
		res.SubmittedAt = r.st.SubmittedAt
		if r.st.EnqueuedAt != nil {
			res.EnqueuedAt = r.st.EnqueuedAt
		}
	}
	if status != queue.StatusSucceeded && res.ProviderTaskID == "" {
		res.Cost = nil // nothing was spent
	}
	init := &jobstate.State{ID: r.job.ID, Provider: r.name, Batch: r.job.Batch, Phase: jobstate.Queued, EnqueuedAt: res.EnqueuedAt}
	st, _, err := r.w.states.Mutate(sctx, r.job.ID, init, func(st *jobstate.State) error {
		if st.Phase == jobstate.Finished && len(st.Result) > 0 {
			return jobstate.ErrNoChange // another delivery finished first: its result stands
		}
		st.Phase, st.Result = jobstate.Finished, rawJSON(res)
		if errInfo != nil {
			st.LastError = errInfo.Message
		}
		return nil
	})
	if err != nil {
		r.log.Warn("could not store the result; the job returns to the queue", "err", err)
		r.nak(5 * time.Second)
		return
	}
	r.st = st
	r.publishStored(ctx)
}

// republish handles a delivery of a job that already finished (a
// duplicate message, or a crash between storing and acking the result):
// it publishes the stored result again, which the server deduplicates,
// then acks.
func (r *jobRun) republish(ctx context.Context) {
	r.log.Info("job already finished; ensuring its result is published")
	r.event(queue.EventDuplicateDropped, nil)
	r.publishStored(ctx)
}

func (r *jobRun) publishStored(ctx context.Context) {
	var res queue.Result
	if len(r.st.Result) == 0 || json.Unmarshal(r.st.Result, &res) != nil {
		r.log.Error("finished job has no readable stored result; acking without publishing")
		r.ack(ctx)
		return
	}
	sctx, cancel := r.settleCtx(ctx)
	defer cancel()
	var already bool
	err := backoff.Retry(func() error {
		var err error
		already, err = queue.PublishResult(sctx, r.w.js, &res)
		return err
	}, backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond), backoff.WithMaxElapsedTime(20*time.Second)), sctx))
	if err != nil {
		r.log.Warn("result not acknowledged by the server; the job returns to the queue", "err", err)
		r.nak(5 * time.Second)
		return
	}
	r.ack(ctx)
	if already {
		return
	}
	var since time.Time
	if res.EnqueuedAt != nil {
		since = *res.EnqueuedAt
	}
	r.w.m.JobDone(r.name, res.Status, since)
	attrs := []any{"status", res.Status, "attempts", res.Attempts}
	if res.Error != nil {
		attrs = append(attrs, "code", res.Error.Code, "error", res.Error.Message)
	}
	r.log.Info("job finished", attrs...)
	r.event(queue.EventCompleted, func(e *queue.Event) {
		e.Status = res.Status
		if res.Error != nil {
			e.Code, e.Reason = res.Error.Code, res.Error.Message
		}
	})
}

// cancel stops the job at the provider where possible and finishes it
// as cancelled.
func (r *jobRun) cancel(ctx context.Context, why string) {
	r.cancelAtProvider(ctx)
	r.finish(ctx, queue.StatusCancelled, nil, &queue.ErrorInfo{Code: "cancelled", Message: why})
}

// cancelAtProvider asks the provider to stop the job's task, if it has
// one and the API can.
func (r *jobRun) cancelAtProvider(ctx context.Context) {
	c, ok := r.rt.Provider.(providers.Canceler)
	if !ok || r.st == nil || r.st.Task == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.rt.RequestTimeout)
	defer cancel()
	if err := r.limit(cctx); err != nil {
		return
	}
	start := time.Now()
	err := c.Cancel(prepaid(cctx), *r.st.Task)
	r.w.observeCall(r.name, "cancel", err, time.Since(start))
	if err != nil && !errors.Is(err, providers.ErrNotFound) {
		r.log.Warn("cancel at provider failed", "task_id", r.st.Task.ID, "err", err)
	}
}

// onError settles the job according to err's class.
func (r *jobRun) onError(ctx context.Context, err error) {
	switch {
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, ErrShutdown)):
		r.shutdownNak()
	case errors.Is(err, providers.ErrCreditsExhausted), errors.Is(err, providers.ErrAuth):
		r.log.Warn("provider refused the job; pausing the provider", "err", err)
		r.w.pause(ctx, r.name, err)
		r.nak(pausedNakDelay) // held by the paused consumer; attempts untouched
	case errors.Is(err, providers.ErrInvalidInput), errors.Is(err, providers.ErrNotFound), errors.Is(err, providers.ErrTaskFailed):
		r.finish(ctx, queue.StatusFailed, nil, errorInfo(err, r.w.redact))
	default:
		r.retry(ctx, err)
	}
}

// retry counts a failed attempt and either schedules the next one with a
// backoff/v4 delay or, after the last, fails the job naming the error.
func (r *jobRun) retry(ctx context.Context, cause error) {
	msg := r.w.redact(cause.Error())
	sctx, cancel := r.settleCtx(ctx)
	defer cancel()
	st, _, err := r.w.states.Mutate(sctx, r.job.ID, nil, func(st *jobstate.State) error {
		st.Attempts++
		st.LastError = msg
		return nil
	})
	if err != nil {
		r.log.Warn("could not count the failed attempt; retrying later", "err", err, "cause", cause)
		r.nak(r.w.retryDelay(1))
		return
	}
	r.st = st
	if st.Attempts >= r.w.cfg.MaxAttempts {
		r.exhausted = true
		r.w.m.Attempt(r.name, "exhausted")
		code := providers.Code(cause)
		if code == "" {
			code = "internal"
		}
		r.finish(ctx, queue.StatusFailed, nil, &queue.ErrorInfo{Code: code,
			Message: fmt.Sprintf("gave up after %d attempts; last error: %s", st.Attempts, msg)})
		return
	}
	delay := r.w.retryDelay(st.Attempts)
	if ra := providers.RetryAfter(cause); ra > delay {
		delay = ra
	}
	r.w.m.Attempt(r.name, "retry")
	r.log.Warn("attempt failed; retrying", "attempt", st.Attempts, "max_attempts", r.w.cfg.MaxAttempts, "retry_in", delay, "err", msg)
	until := time.Now().Add(delay)
	r.event(queue.EventRetry, func(e *queue.Event) {
		e.Attempt, e.Reason, e.Code, e.Until = st.Attempts, msg, providers.Code(cause), &until
	})
	r.nak(delay)
}

// errorInfo turns a classified error into the result's error.
func errorInfo(err error, redact func(string) string) *queue.ErrorInfo {
	code := providers.Code(err)
	if code == "" {
		code = "internal"
	}
	return &queue.ErrorInfo{Code: code, Message: redact(err.Error())}
}

// deadLetter handles a message that can never run (it cannot be parsed,
// or names the wrong provider): the original payload goes to the DLQ
// stream, the job gets a failed result, and the message is removed.
func (r *jobRun) deadLetter(ctx context.Context, code string, cause error) {
	r.log.Warn("job cannot run; dead-lettering it", "err", cause)
	if err := publishDLQ(ctx, r.w.js, r.name, r.job.ID, r.m.Data(), r.m.Headers(), r.md.Sequence.Stream, code, r.w.redact(cause.Error())); err != nil {
		r.log.Warn("dead-letter publish failed; retrying later", "err", err)
		r.nak(5 * time.Second)
		return
	}
	r.w.m.DeadLettered(r.name, code)
	r.event(queue.EventDeadLettered, func(e *queue.Event) { e.Code, e.Reason = code, r.w.redact(cause.Error()) })
	r.st = &jobstate.State{ID: r.job.ID}
	if st, _, err := r.w.states.Get(ctx, r.job.ID); err == nil {
		r.st = st
	}
	r.finish(ctx, queue.StatusFailed, nil, &queue.ErrorInfo{Code: code, Message: r.w.redact(cause.Error())})
}

// publishDLQ stores a dead letter with its reason in headers.
func publishDLQ(ctx context.Context, js jetstream.JetStream, provider, id string, data []byte, hdr nats.Header, seq uint64, code, reason string) error {
	msg := &nats.Msg{Subject: queue.DLQSubject(provider, id), Data: data, Header: nats.Header{}}
	for k, v := range hdr {
		if k != "Nats-Msg-Id" {
			msg.Header[k] = v
		}
	}
	msg.Header.Set("Reelq-Error-Code", code)
	msg.Header.Set("Reelq-Error", reason)
	msg.Header.Set("Reelq-Provider", provider)
	msg.Header.Set("Reelq-Job-Id", id)
	msg.Header.Set("Reelq-Stream-Seq", fmt.Sprint(seq))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := js.PublishMsg(sctx, msg, jetstream.WithMsgID(fmt.Sprintf("dlq:%s:%d", id, seq)))
	return err
}
