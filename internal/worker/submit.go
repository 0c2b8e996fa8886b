package worker

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/queue"
)

// pausedNakDelay is the redelivery delay of a job returned to the queue
// because its provider is paused. The server-side pause holds it anyway;
// the delay keeps it from bouncing straight back whenever the consumer is
// not paused on the server while the provider state says paused (a probe
// lets one job through, a pull was still open when the pause began, or the
// pause could not be written): an immediate Nak would be redelivered at
// once, again and again, using up MaxDeliver until the job is
// dead-lettered as poison.
const pausedNakDelay = time.Second

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
		r.nak(pausedNakDelay) // the paused consumer holds the redelivery; no attempt used
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
		task, err = r.rt.Provider.Submit(prepaid(callCtx), req)
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
	if v, _ := r.w.pstate.View(r.name); v.Auto() && v.Since != nil && r.st.SubmitStartedAt != nil && r.st.SubmitStartedAt.After(*v.Since) {
		// A paid call made after the credit pause began went through: the
		// account works again. (Manual and auth pauses only end by an
		// operator; a call that started before the pause proves nothing.)
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
	task, err := f.Find(prepaid(cctx), providers.Request{JobID: r.job.ID, Input: r.job.Input})
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
		// Not found, or the provider cannot look tasks up (Vimmerse): submit;
		// the caller still counts it as an ambiguous resubmission.
		return false, nil
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
			// Keep the state just read, finished or not: republish below
			// needs the finished state's stored result (with the stale
			// state it acked without publishing anything).
			r.st, r.rev = st, rev
			if st.Phase == jobstate.Finished {
				return backoff.Permanent(errFinishedElsewhere)
			}
		}
		return err
	}, b)
	switch {
	case errors.Is(err, errFinishedElsewhere):
		// The job ended (cancelled, say) while our paid call ran: nobody
		// will ever poll the task we just started, so stop it at the
		// provider where the API allows instead of letting it run (and bill)
		// unseen. Never cancel the task the finished job used (a recovered
		// task another delivery polled to the end): Vimmerse's DELETE also
		// deletes the outputs. r.st is the finished state here; it points
		// at our task only for the cancel call.
		finished := r.st
		if !usesTask(finished, task.ID) {
			r.log.Warn("job finished elsewhere while we submitted it; cancelling our task at the provider", "task_id", task.ID)
			r.st = &jobstate.State{ID: r.job.ID, Task: &task}
			r.cancelAtProvider(ctx)
			r.st = finished
		}
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

// usesTask reports whether the job state st (or its stored result) refers
// to the provider task id.
func usesTask(st *jobstate.State, id string) bool {
	if st.Task != nil && st.Task.ID == id {
		return true
	}
	var res struct {
		TaskID string `json:"provider_task_id"`
	}
	return len(st.Result) > 0 && json.Unmarshal(st.Result, &res) == nil && res.TaskID == id
}

// noResponse reports a failed call that may still have reached the
// provider: no HTTP status came back, or a 2xx body could not be read.
func noResponse(err error) bool {
	var pe *providers.Error
	if errors.As(err, &pe) {
		return pe.StatusCode == 0 && errors.Is(err, providers.ErrRetryable)
	}
	// When the call's own deadline (RequestTimeout) expires first, the
	// adapters report the context error instead of a *providers.Error (see
	// providers.Caller.transportError). That is the classic lost answer: the
	// request may well have started a paid task. Treating it as "nothing
	// started" made the next attempt resubmit without counting the
	// ambiguity.
	return errors.Is(err, context.DeadlineExceeded)
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
