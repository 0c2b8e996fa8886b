package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/queue"
)

// pollErrorBudget is how long polls may keep failing with transient errors
// before the job gives up this attempt and returns to the queue.
const pollErrorBudget = 5 * time.Minute

// notFoundGrace is how long after submission a 404 on poll is read as
// "not visible yet" rather than "gone".
const notFoundGrace = time.Minute

// poll follows the job's task until it finishes, on a backoff/v4 schedule
// from PollInterval growing to MaxPollInterval, every call under the
// cluster-wide rate limit.
func (r *jobRun) poll(ctx context.Context) {
	task := *r.st.Task
	submitted := time.Now()
	if r.st.SubmittedAt != nil {
		submitted = *r.st.SubmittedAt
	}
	deadline := submitted.Add(r.rt.JobTimeout)
	sched := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(r.rt.PollInterval), backoff.WithMultiplier(1.5),
		backoff.WithMaxInterval(r.rt.MaxPollInterval), backoff.WithRandomizationFactor(0.1), backoff.WithMaxElapsedTime(0))
	var (
		errSince     time.Time
		lastRaw      string
		lastProgress = -1.0
	)
	for {
		if !sleepCtx(ctx, sched.NextBackOff()) {
			r.shutdownNak()
			return
		}
		if cancelled, err := r.cancelRequested(ctx); err == nil && r.st.Phase == jobstate.Finished {
			r.republish(ctx)
			return
		} else if err == nil && cancelled {
			r.cancel(ctx, "cancelled on request")
			return
		}
		if time.Now().After(deadline) {
			r.cancelAtProvider(ctx)
			r.finish(ctx, queue.StatusFailed, nil, &queue.ErrorInfo{Code: "timeout",
				Message: fmt.Sprintf("task %s did not finish within %s", task.ID, r.rt.JobTimeout)})
			return
		}
		if err := r.limit(ctx); err != nil {
			r.shutdownNak()
			return
		}
		start := time.Now()
		st, err := r.rt.Provider.Poll(prepaid(ctx), task)
		r.w.observeCall(r.name, "poll", err, time.Since(start))
		if err != nil {
			switch {
			case ctx.Err() != nil:
				r.shutdownNak()
				return
			case errors.Is(err, providers.ErrRateLimited):
				r.rateLimited(ctx, err)
				continue
			case providers.Retryable(err):
				if errSince.IsZero() {
					errSince = time.Now()
				}
				if time.Since(errSince) < pollErrorBudget {
					r.log.Warn("poll failed; polling again", "err", err)
					continue
				}
			case errors.Is(err, providers.ErrNotFound) && time.Since(submitted) < notFoundGrace:
				continue
			}
			r.onError(ctx, err)
			return
		}
		errSince = time.Time{}
		switch st.State {
		case providers.Pending:
			if st.Raw != lastRaw || math.Abs(st.Progress-lastProgress) >= 10 {
				lastRaw, lastProgress = st.Raw, st.Progress
				r.log.Debug("progress", "status", st.Raw, "progress", st.Progress)
				r.event(queue.EventProgress, func(e *queue.Event) {
					e.Status = st.Raw
					if st.Progress >= 0 {
						p := st.Progress
						e.Progress = &p
					}
				})
			}
		case providers.Succeeded:
			r.finish(ctx, queue.StatusSucceeded, st.Outputs, nil)
			return
		case providers.Failed:
			if errors.Is(st.Err, providers.ErrCreditsExhausted) {
				// The task failed unpaid (Camb reports PAYMENT_REQUIRED on
				// poll): forget it and submit again once credits return.
				if err := r.update(ctx, func(s *jobstate.State) { s.Phase, s.Task = jobstate.Queued, nil }); err != nil {
					_ = r.stateError(err)
					if !r.settled {
						r.nak(5 * time.Second)
					}
					return
				}
				r.onError(ctx, st.Err)
				return
			}
			if errors.Is(st.Err, providers.ErrAuth) {
				r.onError(ctx, st.Err)
				return
			}
			r.finish(ctx, queue.StatusFailed, nil, errorInfo(st.Err, r.w.redact))
			return
		}
	}
}

// cancelRequested re-reads the job state for a cancel request.
func (r *jobRun) cancelRequested(ctx context.Context) (bool, error) {
	st, rev, err := r.w.states.Get(ctx, r.job.ID)
	if err != nil {
		return false, err
	}
	r.st, r.rev = st, rev
	return st.CancelRequested, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
