package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/ratelimit"
)

// defaultPollErrorBudget is how long polls may keep failing with transient errors
// before the job gives up this attempt and returns to the queue
// (Runtime.PollErrorBudget).
const defaultPollErrorBudget = 5 * time.Minute

// notFoundGrace is how long after submission a 404 on poll is read as
// "not visible yet" rather than "gone".
const notFoundGrace = time.Minute

// pollState is a job's polling schedule, kept between polls (48 bytes:
// 100,000 jobs in flight keep one each).
type pollState struct {
	every        time.Duration // the interval before randomization (nextPoll)
	errSince     stamp         // when its polls began to fail; zero: the last one answered
	lastRaw      string
	lastProgress float64
	lastPoll     bool // the deadline passed: this is the last look
}

// stepPoll polls the job's task once: the job waits for its next poll as
// data on the engine's timer heap, not in a goroutine. A poll costs the
// HTTP call and one rate-limit token; cancel requests arrive by watch.
func (e *engine) stepPoll(ctx context.Context, j *job) outcome {
	if e.draining.Load() {
		return nak(0)
	}
	t, submittedAt := j.polled()
	if t == nil {
		return e.claimExisting(ctx, j)
	}
	if j.cancel.Load() {
		return e.withState(ctx, j, func() outcome { return e.cancelRunning(ctx, j) })
	}
	ps := e.pollSchedule(j)
	submitted := time.Now()
	if submittedAt != nil {
		submitted = *submittedAt
	}
	task := providers.Task(*t)
	if time.Since(submitted) > e.rt.JobTimeout {
		ps.lastPoll = true // one more look before giving up
	}
	if err := e.limit(j); err != nil {
		if errors.Is(err, ratelimit.ErrUnavailable) {
			// The paid task runs on; its poll comes late, never not at all.
			return pollAt(time.Now().Add(limiterRetry))
		}
		return nak(0)
	}
	start := time.Now()
	pctx, end := e.callSpan(ctx, "poll", j)
	ps2, err := e.rt.Provider.Poll(prepaid(pctx, j.tokenAt.time()), task)
	end(err)
	e.w.observeCall(e.name, "poll", err, time.Since(start))
	ps2 = providers.Bound(ps2)
	next := func() outcome {
		if ps.lastPoll {
			return e.withState(ctx, j, func() outcome {
				e.cancelTask(ctx, task)
				return e.finish(ctx, j, reelq.StatusFailed, nil, &reelq.ErrorInfo{Code: reelq.CodeTimeout,
					Message: fmt.Sprintf("task %s did not finish within %s", task.ID, e.rt.JobTimeout)})
			})
		}
		return pollAt(time.Now().Add(e.nextPoll(ps)))
	}
	if err != nil {
		return e.pollFailed(ctx, j, err, time.Since(submitted), next)
	}
	ps.errSince = 0
	switch ps2.State {
	case providers.Pending:
		e.resumeIfProbe(ctx, j)
		if ps2.Raw != ps.lastRaw || math.Abs(ps2.Progress-ps.lastProgress) >= 10 {
			ps.lastRaw, ps.lastProgress = ps2.Raw, ps2.Progress
			e.jobEvent(j, reelq.EventProgress, func(ev *reelq.Event) {
				ev.Status = ps2.Raw
				if ps2.Progress >= 0 {
					p := ps2.Progress
					ev.Progress = &p
				}
			})
		}
		return next()
	case providers.Succeeded:
		e.resumeIfProbe(ctx, j)
		return e.withState(ctx, j, func() outcome { return e.archive(ctx, j, outputs(ps2.Outputs)) })
	}
	return e.withState(ctx, j, func() outcome { return e.taskFailed(ctx, j, ps2.Err) })
}

// polled is the task j polls and when it was submitted: from its state,
// or what it kept when it shed the state.
func (j *job) polled() (*reelq.Task, *time.Time) {
	if j.shed != nil {
		return j.shed.task()
	}
	if j.st == nil {
		return nil, nil
	}
	return j.st.Task, j.st.SubmittedAt
}

// pollSchedule returns j's polling schedule, made at its first poll.
func (e *engine) pollSchedule(j *job) *pollState {
	if j.poll == nil {
		j.poll = &pollState{lastProgress: -1, every: e.rt.PollInterval}
	}
	return j.poll
}

// nextPoll is the wait before ps's next poll: the interval ±10%, after
// which the interval grows 1.5 times, up to MaxPollInterval. It is
// backoff/v4's ExponentialBackOff.NextBackOff with those settings and no
// MaxElapsedTime, kept as one duration: the library's 96-byte schedule per
// job in flight was a tenth of what a waiting job kept.
func (e *engine) nextPoll(ps *pollState) time.Duration {
	const factor, mult = 0.1, 1.5
	cur := float64(ps.every)
	next := time.Duration(cur - factor*cur + rand.Float64()*(2*factor*cur+1))
	if cur >= float64(e.rt.MaxPollInterval)/mult {
		ps.every = e.rt.MaxPollInterval
	} else {
		ps.every = time.Duration(cur * mult)
	}
	return next
}

// pollFailed handles a poll that got no answer about the task: a limiter
// outage or a 429 polls again, a provider error polls again within the
// poll error budget (and a 404 within notFoundGrace of the submission,
// age ago), anything else fails the call; next is the next regular poll.
func (e *engine) pollFailed(ctx context.Context, j *job, err error, age time.Duration, next func() outcome) outcome {
	ps := j.poll
	switch {
	case ctx.Err() != nil:
		return nak(0)
	case errors.Is(err, ratelimit.ErrUnavailable):
		// A further request of the call found the limiter unavailable:
		// not the provider's fault, and no part of the poll budget.
		return pollAt(time.Now().Add(limiterRetry))
	case errors.Is(err, providers.ErrRateLimited):
		e.rateLimited(j, err)
		return pollAt(time.Now())
	case providers.Retryable(err):
		if ps.errSince == 0 {
			ps.errSince = stampOf(time.Now())
		}
		if time.Since(ps.errSince.time()) < e.rt.PollErrorBudget {
			e.logJob(j).Warn("poll failed; polling again", "err", err)
			return next()
		}
	case errors.Is(err, providers.ErrNotFound) && age < notFoundGrace:
		return next()
	}
	return e.withState(ctx, j, func() outcome { return e.callFailed(ctx, j, err, false) })
}

// taskFailed handles a task the provider reports failed (perr): for
// missing credits or a rejected key the provider is paused (and a task
// that failed unpaid is submitted again once credits return); otherwise
// the run fails.
func (e *engine) taskFailed(ctx context.Context, j *job, perr error) outcome {
	switch {
	case errors.Is(perr, providers.ErrCreditsExhausted):
		// The task failed unpaid for missing credits (a provider whose Spec
		// sets CreditsOnPoll): forget it and submit again once credits
		// return.
		e.logJob(j).Warn("task failed for missing credits; pausing the provider", "err", perr)
		e.w.pause(ctx, e.name, perr)
		nextSt := *j.st
		nextSt.Phase, nextSt.Task = reelq.PhaseQueued, nil
		rev, uerr := e.w.states.Update(ctx, j.st, &nextSt, j.rev)
		if uerr != nil {
			return e.stateUnavailable(j, uerr)
		}
		j.st, j.rev, j.poll = &nextSt, rev, nil
		return waitFor(pausedWait)
	case errors.Is(perr, providers.ErrAuth):
		e.w.pause(ctx, e.name, perr)
		return waitFor(pausedWait)
	}
	e.resumeIfProbe(ctx, j)
	return e.finish(ctx, j, reelq.StatusFailed, nil, errorInfo(perr, e.w.redact))
}

// resumeIfProbe ends a credit pause once the probe job's poll answered
// something other than missing credits: where credits show up only on the
// poll (Spec.CreditsOnPoll), a successful create proves nothing.
func (e *engine) resumeIfProbe(ctx context.Context, j *job) {
	if !j.probe {
		return
	}
	j.probe = false
	e.w.resume(ctx, e.name, "probe job's poll answered without a credit error")
}

// cancelRunning stops a running job at the provider where possible and
// finishes it as cancelled.
func (e *engine) cancelRunning(ctx context.Context, j *job) outcome {
	msg := "cancelled on request"
	if j.st != nil && j.st.Task != nil {
		if _, ok := e.rt.Provider.(providers.Canceler); ok {
			e.cancelTask(ctx, providers.Task(*j.st.Task))
			msg += "; the task was cancelled at the provider"
		} else {
			msg += "; " + e.name + " has no cancel API, so the task runs on at the provider and is billed"
		}
	}
	return e.finish(ctx, j, reelq.StatusCancelled, nil, &reelq.ErrorInfo{Code: reelq.CodeCancelled, Message: msg})
}

// cancelTask asks the provider to stop a task, if its API can.
func (e *engine) cancelTask(ctx context.Context, task providers.Task) {
	c, ok := e.rt.Provider.(providers.Canceler)
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.rt.RequestTimeout)
	defer cancel()
	if _, err := e.rt.Limiter.Wait(cctx); err != nil {
		e.log.Warn("cancel at provider not sent: no rate-limit token", "task_id", task.ID, "err", err)
		return
	}
	start := time.Now()
	cctx, end := e.callSpan(cctx, "cancel", nil)
	err := c.Cancel(prepaid(cctx, start), task)
	end(err)
	e.w.observeCall(e.name, "cancel", err, time.Since(start))
	if err != nil && !errors.Is(err, providers.ErrNotFound) {
		e.log.Warn("cancel at provider failed", "task_id", task.ID, "err", err)
	}
}

func outputs(in []providers.Output) []reelq.Output {
	out := make([]reelq.Output, len(in))
	for i, o := range in {
		out[i] = reelq.Output{URL: o.URL, ContentType: o.ContentType, Name: o.Name}
	}
	return out
}
