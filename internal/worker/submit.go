package worker

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/queue"
)

// maxRateLimitRetries bounds how many 429s in a row one call may meet
// before it counts as a failed attempt.
const maxRateLimitRetries = 50

// submit makes sure the job has a provider task. It submits the job (the
// paid call) at most once per recorded phase change, or recovers an
// earlier submission whose outcome is unknown. On return the state is
// "submitted", or the message is settled, or errRequeue asks for a re-read.
func (r *jobRun) submit(ctx context.Context) error {
	if r.pausedForUs() {
		r.log.Info("provider is paused; job stays queued")
		r.nak(0) // the paused consumer holds the redelivery; no attempt used
		return nil
	}
	ambiguous := false
	if r.st.Phase == jobstate.Submitting {
		var age time.Duration
		if r.st.SubmitStartedAt != nil {
			age = time.Since(*r.st.SubmitStartedAt)
		}
		grace := r.rt.RequestTimeout + 10*time.Second
		if !r.st.SubmitUnknown && age < grace {
			// Another worker may be inside the paid call right now.
			r.log.Info("another worker is submitting this job; checking back later", "other_worker", r.st.Worker, "wait", grace-age)
			r.nak(grace - age)
			return nil
		}
		ambiguous = true
		if done, err := r.recoverTask(ctx); done || err != nil {
			return err
		}
	}

	req := providers.Request{JobID: r.job.ID, Input: r.job.Input}
	var (
		task providers.Task
		err  error
	)
	for rl := 0; ; rl++ {
		if err := r.limit(ctx); err != nil {
			r.shutdownNak()
			return nil
		}
		now := time.Now().UTC()
		if err := r.update(ctx, func(st *jobstate.State) {
			st.Phase, st.SubmitStartedAt, st.Worker, st.SubmitUnknown = jobstate.Submitting, &now, r.w.cfg.WorkerID, false
			if ambiguous {
				st.AmbiguousSubmits++
			}
		}); err != nil {
			return r.stateError(err)
		}
		if ambiguous {
			ambiguous = false
			r.w.m.Ambiguous(r.name, "resubmitted")
			r.log.Warn("resubmitting a job whose earlier submission has an unknown outcome; the provider may bill twice",
				"ambiguous_submits", r.st.AmbiguousSubmits)
			r.event(queue.EventAmbiguousSubmit, func(e *queue.Event) { e.Reason = "earlier submission outcome unknown; resubmitted" })
		}
		// The paid call is never cut short by shutdown: its answer must be
		// recorded, or the next worker cannot know whether we paid.
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.rt.RequestTimeout)
		start := time.Now()
		task, err = r.rt.Provider.Submit(callCtx, req)
		cancel()
		r.w.observeCall(r.name, "submit", err, time.Since(start))
		if err == nil || !errors.Is(err, providers.ErrRateLimited) || rl >= maxRateLimitRetries {
			break
		}
		// Refused with 429: nothing started. Slow every replica down and
		// try again without using an attempt.
		if uerr := r.update(ctx, func(st *jobstate.State) { st.Phase = jobstate.Queued }); uerr != nil {
			return r.stateError(uerr)
		}
		r.rateLimited(ctx, err)
	}
	if err != nil {
		if noResponse(err) {
			// The call may have reached the provider: keep "submitting" and
			// mark the outcome unknown for whoever handles the job next.
			if uerr := r.update(ctx, func(st *jobstate.State) { st.SubmitUnknown = true; st.LastError = r.w.redact(err.Error()) }); uerr != nil {
				return r.stateError(uerr)
			}
		} else if uerr := r.update(ctx, func(st *jobstate.State) { st.Phase = jobstate.Queued }); uerr != nil {
			return r.stateError(uerr)
		}
		r.onError(ctx, err)
		return nil
	}
	r.recordTask(ctx, task, false)
	if r.settled {
		return nil
	}
	cost := r.cost()
	if cost != nil {
		r.w.m.Spent(r.name, cost.Unit, cost.Amount)
	}
	r.log.Info("submitted", "task_id", task.ID)
	r.event(queue.EventSubmitted, nil)
	if v, _ := r.w.pstate.View(r.name); v.Paused {
		// A paid call went through: the account works again.
		r.w.resume(ctx, r.name)
	}
	return nil
}

// recoverTask asks a provider that can look tasks up whether the unknown
// submission exists. It reports done=true when the job now has its task
// (or the message is settled).
func (r *jobRun) recoverTask(ctx context.Context) (bool, error) {
	f, ok := r.rt.Provider.(providers.Finder)
	if !ok {
		return false, nil
	}
	if err := r.limit(ctx); err != nil {
		r.shutdownNak()
		return true, nil
	}
	cctx, cancel := context.WithTimeout(ctx, r.rt.RequestTimeout)
	start := time.Now()
	task, err := f.Find(cctx, providers.Request{JobID: r.job.ID, Input: r.job.Input})
	cancel()
	r.w.observeCall(r.name, "find", err, time.Since(start))
	switch {
	case err == nil:
		r.w.m.Ambiguous(r.name, "recovered")
		r.log.Warn("found the task of an earlier submission with unknown outcome; resuming it", "task_id", task.ID)
		r.recordTask(ctx, task, true)
		if !r.settled {
			r.event(queue.EventRecoveredTask, func(e *queue.Event) { e.Reason = "task found after a crash during submission" })
		}
		return true, nil
	case errors.Is(err, providers.ErrNotFound):
		return false, nil // never reached the provider: submit
	default:
		r.onError(ctx, err)
		return true, nil
	}
}

// recordTask writes the provider task into the job state. This record is
// what stops a redelivery from paying again, so it is retried hard; the
// state may have changed meanwhile (a cancel request), which is merged.
func (r *jobRun) recordTask(ctx context.Context, task providers.Task, recovered bool) {
	rctx := context.WithoutCancel(ctx)
	now := time.Now().UTC()
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(200*time.Millisecond), backoff.WithMaxElapsedTime(2*r.rt.RequestTimeout))
	err := backoff.Retry(func() error {
		err := r.update(rctx, func(st *jobstate.State) {
			st.Phase, st.Task, st.SubmitUnknown = jobstate.Submitted, &task, false
			if recovered && st.SubmitStartedAt != nil {
				st.SubmittedAt = st.SubmitStartedAt
			} else {
				st.SubmittedAt = &now
			}
		})
		if errors.Is(err, errRequeue) {
			st, rev, gerr := r.w.states.Get(rctx, r.job.ID)
			if gerr != nil {
				return gerr
			}
			if st.Phase == jobstate.Finished {
				return backoff.Permanent(errFinishedElsewhere)
			}
			r.st, r.rev = st, rev
		}
		return err
	}, b)
	switch {
	case errors.Is(err, errFinishedElsewhere):
		r.log.Warn("job finished elsewhere while we submitted it", "task_id", task.ID)
		r.republish(ctx)
	case err != nil:
		// Keep going with the task in memory; a crash before the record
		// lands would resubmit (the documented window).
		r.log.Error("could not record the provider task; continuing", "task_id", task.ID, "err", err)
		r.st.Phase, r.st.Task = jobstate.Submitted, &task
		r.st.SubmittedAt = &now
	}
}

var errFinishedElsewhere = errors.New("job finished by another worker")

// noResponse reports a failed call that may still have reached the
// provider: no HTTP status came back, or a 2xx body could not be read.
func noResponse(err error) bool {
	var pe *providers.Error
	return errors.As(err, &pe) && pe.StatusCode == 0 && errors.Is(err, providers.ErrRetryable)
}

// limit waits for the cluster-wide rate limiter.
func (r *jobRun) limit(ctx context.Context) error {
	waited, err := r.rt.Limiter.Wait(ctx)
	r.w.m.Waited(r.name, waited)
	return err
}

// rateLimited pushes every replica's next call to this provider past the
// provider's Retry-After (or a short default).
func (r *jobRun) rateLimited(ctx context.Context, err error) {
	wait := providers.RetryAfter(err)
	if wait <= 0 {
		wait = 2 * time.Second
	}
	until := time.Now().Add(wait)
	if berr := r.rt.Limiter.Block(ctx, until); berr != nil && ctx.Err() == nil {
		r.log.Warn("could not share the rate-limit back-off", "err", berr)
	}
	r.log.Info("provider rate limit hit; every replica backs off", "retry_after", wait)
	r.event(queue.EventRateLimited, func(e *queue.Event) { e.Until = &until })
}

// stateError handles a failed job-state write.
func (r *jobRun) stateError(err error) error {
	if errors.Is(err, errRequeue) {
		return err
	}
	r.log.Warn("job state write failed; retrying the job later", "err", err)
	r.nak(5 * time.Second)
	return nil
}
