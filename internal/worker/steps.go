package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/wire"
)

// Job steps. Each runs on an executor for one job and returns the job's
// next outcome; the engine's loop applies it. Steps never settle a
// message themselves.

// pausedWait is how long a job refused because its provider is paused
// waits before it is looked at again (the pause itself holds dispatch;
// this only bounds how often a stale view is re-checked).
const pausedWait = time.Second

// stateRetry is how long a job waits when the job-state bucket is
// unavailable. The message stays held (heartbeated), so an outage of any
// length uses no delivery and marks nothing as poison.
func stateRetry(n int) time.Duration {
	return min(time.Second<<min(n, 5), 30*time.Second)
}

// maxRateLimitRetries bounds how many 429s in a row one call may meet
// before the job returns to the queue (without using an attempt).
const maxRateLimitRetries = 50

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// stepClaim starts a job that holds a slot: it creates the job state (a
// first delivery) or reads it (a redelivery or a duplicate) and decides.
func (e *engine) stepClaim(ctx context.Context, j *job) outcome {
	if j.cancel.Load() || e.w.cancels.has(j.id) {
		return e.stepCancelQueued(ctx, j)
	}
	if j.deliveries <= 1 && j.run == 1 && j.st == nil {
		// Most likely a new job: take the rate-limit token first, so the
		// state can go straight to "submitting" (one write, not two).
		if e.pausedForUs(j) {
			return pausedOutcome()
		}
		if err := e.limit(j); err != nil {
			return limited(err)
		}
		if e.draining.Load() {
			return nak(0)
		}
		token := newToken()
		hold, park := e.reserveFor(ctx, j, token, 0)
		if park != nil {
			return *park
		}
		st := e.newState(j, reelq.PhaseSubmitting)
		st.SubmitToken = token
		if hold != nil {
			st.Reserved = j.est
		}
		rev, err := e.w.states.Create(ctx, st)
		switch {
		case err == nil:
			j.st, j.rev, j.hold = st, rev, hold
			return e.submitCall(ctx, j)
		case !errors.Is(err, jobstate.ErrExists):
			e.settleBudget(ctx, j, hold, false)
			return e.stateUnavailable(j, err)
		}
		// Known already: fall through to the slow path (the token is spent).
		e.settleBudget(ctx, j, hold, false)
	}
	return e.claimExisting(ctx, j)
}

// claimExisting reads the job's state and decides what this delivery does.
// A write that conflicts returns reread: runStep reads again.
func (e *engine) claimExisting(ctx context.Context, j *job) outcome {
	cur, rev, err := e.w.states.Get(ctx, j.id)
	if errors.Is(err, jobstate.ErrNotFound) {
		st := e.newState(j, reelq.PhaseQueued)
		rev, err = e.w.states.Create(ctx, st)
		if errors.Is(err, jobstate.ErrExists) {
			return reread()
		}
		if err != nil {
			return e.stateUnavailable(j, err)
		}
		j.st, j.rev = st, rev
		return e.submit(ctx, j, false)
	}
	if err != nil {
		return e.stateUnavailable(j, err)
	}
	shareInput(j, cur)
	j.st, j.rev = cur, rev
	if cur.Reserved != nil && cur.Phase != reelq.PhaseQueued {
		e.settleStaleReservation(ctx, j)
	}
	return e.decide(ctx, j)
}

// decide acts on an existing state: the job's phase picks the step.
func (e *engine) decide(ctx context.Context, j *job) outcome {
	cur := j.st
	log := e.logJob(j)
	if !j.sameContent(cur.Digest) {
		return e.conflict(ctx, j, cur)
	}
	switch {
	case j.run < cur.Run:
		log.Info("message of an earlier run; dropping it", "message_run", j.run, "run", cur.Run)
		e.jobEvent(j, reelq.EventDuplicateDropped, func(ev *reelq.Event) {
			ev.Reason = fmt.Sprintf("message of run %d; the job is at run %d", j.run, cur.Run)
		})
		return term("stale run")
	case j.run > cur.Run+1:
		return e.deadLetterSeq(ctx, j, reelq.CodeInvalidRequest,
			fmt.Errorf("%w: run %d skips run %d (the job is at run %d)", reelq.ErrInvalidJob, j.run, cur.Run+1, cur.Run))
	case j.run == cur.Run+1:
		return e.newRun(ctx, j)
	}
	if cur.Seq != 0 && cur.Seq != j.seq {
		// Another message carries this run (the same job published again
		// after the duplicate window, say).
		if cur.Phase == reelq.PhaseFinished {
			if out := e.republish(ctx, j, cur); out.kind != outAck {
				return out
			}
		}
		log.Info("another message carries this job; dropping the duplicate", "owner_seq", cur.Seq, "phase", cur.Phase)
		e.jobEvent(j, reelq.EventDuplicateDropped, func(ev *reelq.Event) { ev.Reason = "duplicate message" })
		return term("duplicate")
	}
	switch cur.Phase {
	case reelq.PhaseFinished:
		return e.republish(ctx, j, cur)
	case reelq.PhaseQueued:
		return e.submit(ctx, j, false)
	case reelq.PhaseSubmitting:
		return e.fromSubmitting(ctx, j)
	case reelq.PhaseSubmitted:
		return e.fromSubmitted(ctx, j)
	case reelq.PhaseArchiving:
		return e.archive(ctx, j, cur.Outputs)
	case reelq.PhaseHeld:
		log.Info("job is held for an operator; dropping the message", "held_reason", cur.HeldReason)
		e.markHeld(ctx, j) // again: the worker that held it may have died before marking it
		return term("held")
	}
	return e.finish(ctx, j, reelq.StatusFailed, nil, &reelq.ErrorInfo{Code: reelq.CodeInternal, Message: fmt.Sprintf("unknown job phase %q", cur.Phase)})
}

// newRun starts run n+1 of a job whose run n finished without success.
func (e *engine) newRun(ctx context.Context, j *job) outcome {
	cur := j.st
	if cur.Phase != reelq.PhaseFinished || cur.Succeeded() {
		why := fmt.Sprintf("run %d not started: run %d is %s", j.run, cur.Run, cur.Phase)
		if cur.Succeeded() {
			why = fmt.Sprintf("run %d not started: run %d succeeded, and a job that succeeded is never paid again", j.run, cur.Run)
		}
		e.logJob(j).Warn("retry refused", "reason", why)
		e.jobEvent(j, reelq.EventRetryRefused, func(ev *reelq.Event) { ev.Reason = why })
		return term("retry refused")
	}
	next := *cur
	prev := cur.StoredResult()
	sum := reelq.RunSummary{Run: cur.Run, Attempts: cur.Attempts}
	if prev != nil {
		sum.Status, sum.Cost, sum.CompletedAt, sum.TaskID = prev.Status, prev.Cost, prev.CompletedAt, prev.ProviderTaskID
		if prev.Error != nil {
			sum.Code = prev.Error.Code
		}
	}
	next.Runs = append(append([]reelq.RunSummary(nil), cur.Runs...), sum)
	next.Run, next.Phase, next.Seq = j.run, reelq.PhaseQueued, j.seq
	next.Task, next.Result, next.Outputs, next.LastError = nil, nil, nil, ""
	next.Attempts, next.Submissions, next.SubmitUnknown, next.SubmitToken = 0, 0, false, ""
	next.SubmitStartedAt, next.SubmittedAt, next.HeldReason, next.HeldSince, next.Reserved = nil, nil, "", nil, nil
	rev, err := e.w.states.Update(ctx, cur, &next, j.rev)
	if errors.Is(err, jobstate.ErrConflict) {
		return reread()
	}
	if err != nil {
		return e.stateUnavailable(j, err)
	}
	j.st, j.rev = &next, rev
	e.logJob(j).Info("starting a new run", "run", j.run)
	return e.submit(ctx, j, false)
}

// fromSubmitting handles a delivery that finds the job mid-submission.
func (e *engine) fromSubmitting(ctx context.Context, j *job) outcome {
	cur := j.st
	var age time.Duration
	if cur.SubmitStartedAt != nil {
		age = time.Since(*cur.SubmitStartedAt)
	}
	grace := e.rt.RequestTimeout + 10*time.Second
	if !cur.SubmitUnknown && age < grace {
		// The delivery before us may be inside the paid call right now (it
		// stalled past AckWait): wait, holding no slot, until its call must
		// have ended.
		e.logJob(j).Info("another delivery may be submitting this job; checking back later", "other_worker", cur.Worker, "wait", grace-age)
		return waitFor(grace - age)
	}
	return e.ambiguous(ctx, j)
}

// fromSubmitted resumes polling a submitted job (a redelivery). A result
// may already be out: the run's result is published before its state is
// marked finished only in a crash window, so look for it first.
func (e *engine) fromSubmitted(ctx context.Context, j *job) outcome {
	if j.st.Task == nil {
		return e.finish(ctx, j, reelq.StatusFailed, nil, &reelq.ErrorInfo{Code: reelq.CodeInternal, Message: "submitted without a task"})
	}
	if j.st.Seq == 0 {
		next := *j.st
		next.Seq = j.seq
		rev, err := e.w.states.Update(ctx, j.st, &next, j.rev)
		if errors.Is(err, jobstate.ErrConflict) {
			return reread()
		}
		if err != nil {
			return e.stateUnavailable(j, err)
		}
		j.st, j.rev = &next, rev
	}
	e.releaseProbeIfOurs(j)
	return pollAt(time.Now())
}

// ambiguous handles a submission whose outcome is unknown: find the task
// if the provider can look it up; otherwise resubmit or hold, per policy.
func (e *engine) ambiguous(ctx context.Context, j *job) outcome {
	log := e.logJob(j)
	if f, ok := e.rt.Provider.(providers.Finder); ok {
		if err := e.limit(j); err != nil {
			return limited(err)
		}
		cctx, cancel := context.WithTimeout(ctx, e.rt.RequestTimeout)
		start := time.Now()
		task, err := f.Find(prepaid(cctx, j.tokenAt.time()), providers.Request{JobID: j.id, Input: j.env.Input})
		cancel()
		e.w.observeCall(e.name, "find", err, time.Since(start))
		switch {
		case err == nil:
			e.w.m.Ambiguous(e.name, "recovered")
			log.Warn("found the task of an earlier submission with unknown outcome; resuming it", "task_id", task.ID)
			out := e.recordTask(ctx, j, task, true)
			if out.kind == outPoll {
				e.jobEvent(j, reelq.EventRecoveredTask, func(ev *reelq.Event) { ev.Reason = "task found after a submission with unknown outcome" })
			}
			return out
		case errors.Is(err, providers.ErrNotFound):
		default:
			return e.callFailed(ctx, j, err, false)
		}
	}
	if e.holdAmbiguous(j) {
		return e.holdJob(ctx, j, "the outcome of a paid submission is unknown and the provider cannot be asked; check its dashboard, then run 'enqueue resolve "+j.id+" --task ID' or '--resubmit'")
	}
	return e.submit(ctx, j, true)
}

// holdAmbiguous says whether a job whose submission's outcome is unknown
// waits for an operator rather than being submitted again: always with
// P_AMBIGUOUS=hold, never with resubmit; by default, only for a provider
// that cannot recover the submission (Recovery none) and a job whose
// estimate is above HoldAbove.
func (e *engine) holdAmbiguous(j *job) bool {
	switch e.rt.Ambiguous {
	case AmbiguousHold:
		return true
	case AmbiguousResubmit:
		return false
	}
	limit := e.rt.HoldAbove
	if e.rt.Spec.Recovery != providers.RecoveryNone || limit.Unit == "" {
		return false
	}
	est := e.cost(j)
	return est == nil || est.Unit != limit.Unit || money.FromFloat(est.Amount) > money.FromFloat(limit.Amount)
}

// holdJob parks the job for an operator: phase held, message acked.
func (e *engine) holdJob(ctx context.Context, j *job, why string) outcome {
	next := *j.st
	now := time.Now().UTC()
	next.Phase, next.HeldReason, next.HeldSince = reelq.PhaseHeld, why, &now
	rev, err := e.w.states.Update(ctx, j.st, &next, j.rev)
	if errors.Is(err, jobstate.ErrConflict) {
		return reread()
	}
	if err != nil {
		return e.stateUnavailable(j, err)
	}
	j.st, j.rev = &next, rev
	e.markHeld(ctx, j)
	e.w.m.Ambiguous(e.name, "held")
	e.logJob(j).Warn("job held for an operator", "reason", why)
	e.jobEvent(j, reelq.EventHeld, func(ev *reelq.Event) { ev.Reason = why })
	return hold()
}

// markHeld records in COUNTERS that j is held, so that stats can count
// held jobs without reading every job state. Marking again is harmless;
// a lost mark is made again when the job's message comes back.
func (e *engine) markHeld(ctx context.Context, j *job) {
	m := nats.NewMsg(wire.HeldMarkerSubject(e.name, j.id))
	m.Header.Set("Nats-Incr", "+1")
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := e.w.js.PublishMsg(cctx, m); err != nil {
		e.logJob(j).Warn("could not mark the held job for stats", "error", err)
	}
}

// submit moves the job to "submitting" and makes the paid call.
// ambiguous counts a resubmission after an unknown outcome.
func (e *engine) submit(ctx context.Context, j *job, ambiguous bool) outcome {
	if e.pausedForUs(j) {
		return pausedOutcome()
	}
	if err := e.limit(j); err != nil {
		return limited(err)
	}
	if e.draining.Load() {
		return nak(0)
	}
	token := newToken()
	hold, park := e.reserveFor(ctx, j, token, j.rev)
	if park != nil {
		return *park
	}
	next := *j.st
	now := time.Now().UTC()
	next.Phase, next.SubmitStartedAt, next.Worker, next.SubmitUnknown = reelq.PhaseSubmitting, &now, e.w.cfg.WorkerID, false
	next.SubmitToken, next.Seq, next.Reserved = token, j.seq, nil
	if hold != nil {
		next.Reserved = j.est
	}
	if ambiguous {
		// The earlier submission may have been billed: it counts, in the
		// result's cost and the spend, as the budget counts it; unless the
		// provider honours the idempotency key the adapter sends, when the
		// resubmission is the same submission.
		next.AmbiguousSubmits++
		if e.rt.Spec.Recovery != providers.RecoveryIdempotencyKey {
			next.Submissions++
		}
	}
	rev, err := e.w.states.Update(ctx, j.st, &next, j.rev)
	if err != nil {
		e.settleBudget(ctx, j, hold, false)
	}
	if errors.Is(err, jobstate.ErrConflict) {
		return reread()
	}
	if err != nil {
		return e.stateUnavailable(j, err)
	}
	j.st, j.rev, j.hold = &next, rev, hold
	if ambiguous {
		if c := e.cost(j); c != nil {
			e.w.m.Spent(e.name, c.Unit, c.Amount)
		}
		e.w.m.Ambiguous(e.name, "resubmitted")
		e.logJob(j).Warn("resubmitting a job whose earlier submission has an unknown outcome; the provider may bill twice",
			"ambiguous_submits", next.AmbiguousSubmits)
		e.jobEvent(j, reelq.EventAmbiguousSubmit, func(ev *reelq.Event) { ev.Reason = "earlier submission outcome unknown; resubmitted" })
	}
	return e.submitCall(ctx, j)
}

// submitCall makes the paid call for a job in "submitting" (with this
// delivery's token) and records its answer.
func (e *engine) submitCall(ctx context.Context, j *job) outcome {
	req := providers.Request{JobID: j.id, Input: j.env.Input}
	if e.rt.CallbackURL != nil {
		req.CallbackURL = e.rt.CallbackURL(j.id)
	}
	for rl := 0; ; rl++ {
		if time.Since(j.tokenAt.time()) > e.rt.Limiter.TokenTTL() {
			// The state write after the token took long (a NATS stall): a
			// fresh token, so calls held meanwhile do not all go out at
			// once. Taken here, outside the call's timeout (and not
			// recorded as a wait of its own: one call, one observation).
			if _, err := e.rt.Limiter.Wait(e.intake); err != nil {
				return e.backToQueued(ctx, j, limited(err))
			}
			j.tokenAt = stampOf(time.Now())
			if e.draining.Load() {
				return e.backToQueued(ctx, j, nak(0))
			}
		}
		// The paid call is never cut short by shutdown: its answer must be
		// recorded, or the next worker cannot know whether we paid.
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.rt.RequestTimeout)
		start := time.Now()
		sctx, end := e.callSpan(callCtx, "submit", j)
		task, err := e.rt.Provider.Submit(prepaid(sctx, j.tokenAt.time()), req)
		end(err)
		cancel()
		e.w.observeCall(e.name, "submit", err, time.Since(start))
		if err == nil {
			e.w.beat.submitted(e.name)
			return e.submitted(ctx, j, task)
		}
		if !errors.Is(err, providers.ErrRateLimited) || rl >= maxRateLimitRetries {
			return e.callFailed(ctx, j, err, true)
		}
		// Refused with 429: nothing started. Slow every replica down and try
		// again without using an attempt.
		e.rateLimited(j, err)
		if err := e.limit(j); err != nil {
			return e.backToQueued(ctx, j, limited(err))
		}
		if e.draining.Load() {
			return e.backToQueued(ctx, j, nak(0))
		}
	}
}

// submitted records a successful paid call and starts polling.
func (e *engine) submitted(ctx context.Context, j *job, task providers.Task) outcome {
	out := e.recordTask(ctx, j, task, false)
	if out.kind != outPoll {
		return out
	}
	if c := e.cost(j); c != nil {
		e.w.m.Spent(e.name, c.Unit, c.Amount)
	}
	if e.log.Enabled(ctx, slog.LevelInfo) {
		e.logJob(j).Info("submitted", "task_id", task.ID)
	}
	e.jobEvent(j, reelq.EventSubmitted, func(ev *reelq.Event) { ev.Cost = e.cost(j) })
	if j.probe && !e.rt.Spec.CreditsOnPoll {
		// A paid call made during the credit pause went through: the account
		// works again. (Where credits show up only on the poll, Spec
		// CreditsOnPoll, the first poll decides.)
		e.w.resume(ctx, e.name, "probe job submitted")
		j.probe = false
	} else if !j.probe {
		e.resumeIfProven(ctx, j)
	}
	return out
}

// recordTask writes the provider task into the job state, only if the
// state is still "submitting" by this delivery's call (its token): a call
// that comes back late must not replace the task another delivery
// recorded. An extra task is cancelled at the provider where possible and
// counted as paid twice.
func (e *engine) recordTask(ctx context.Context, j *job, task providers.Task, recovered bool) outcome {
	rctx := context.WithoutCancel(ctx)
	now := time.Now().UTC()
	token := j.st.SubmitToken
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(200*time.Millisecond), backoff.WithMaxElapsedTime(2*e.rt.RequestTimeout))
	var lost *jobstate.State
	err := backoff.Retry(func() error {
		cur := j.st
		if cur.Phase != reelq.PhaseSubmitting || cur.SubmitToken != token {
			lost = cur
			return backoff.Permanent(errDuplicateMsg)
		}
		// The task goes in the job state only: an operator's resolve finds
		// it there (jobstate TaskHolder), so no index entry is written here.
		next := *cur
		next.Phase, next.Task, next.SubmitUnknown = reelq.PhaseSubmitted, &reelq.Task{ID: task.ID, PollURL: task.PollURL, ResultURL: task.ResultURL, CancelURL: task.CancelURL}, false
		next.Submissions++
		next.Reserved = nil
		next.SubmittedAt = &now
		if recovered && cur.SubmitStartedAt != nil {
			next.SubmittedAt = cur.SubmitStartedAt
		}
		rev, err := e.w.states.Update(rctx, cur, &next, j.rev)
		if err == nil {
			j.st, j.rev = &next, rev
			return nil
		}
		if errors.Is(err, jobstate.ErrConflict) {
			st, rev, gerr := e.w.states.Get(rctx, j.id)
			if gerr != nil {
				return gerr
			}
			j.st, j.rev = st, rev
		}
		return err
	}, b)
	// The call created a task: it was paid, whoever records it.
	e.settleBudget(ctx, j, j.hold, true)
	j.hold = nil
	switch {
	case err == nil:
		return pollAt(time.Now().Add(e.rt.PollInterval))
	case errors.Is(err, errDuplicateMsg):
		return e.extraTask(ctx, j, task, lost)
	default:
		// Keep going with the task in memory; a crash before the record
		// lands would resubmit (the documented window).
		e.logJob(j).Error("could not record the provider task; continuing", "task_id", task.ID, "err", err)
		next := *j.st
		next.Phase, next.Task = reelq.PhaseSubmitted, &reelq.Task{ID: task.ID, PollURL: task.PollURL, ResultURL: task.ResultURL, CancelURL: task.CancelURL}
		next.SubmittedAt = &now
		j.st, j.unstored = &next, true
		return pollAt(time.Now().Add(e.rt.PollInterval))
	}
}

// extraTask handles a task our call created after another delivery took
// the job over: nobody will ever poll it, so stop it at the provider where
// the API allows, and count the double payment.
func (e *engine) extraTask(ctx context.Context, j *job, task providers.Task, owner *jobstate.State) outcome {
	log := e.logJob(j)
	if owner != nil && owner.Task != nil && owner.Task.ID == task.ID {
		return pollAt(time.Now()) // the same task (a recovered lookup): nothing extra
	}
	if ownerHasTask(owner) {
		e.w.m.Ambiguous(e.name, "paid_twice")
		log.Warn("another delivery owns this job; our late submission made an extra task", "task_id", task.ID)
		e.jobEvent(j, reelq.EventPaidTwice, func(ev *reelq.Event) {
			ev.TaskID, ev.Cost = task.ID, e.cost(j)
			ev.Reason = "a late answer to a submission after another delivery took the job over"
		})
	} else {
		// The job was settled without a task of its own meanwhile
		// (cancelled, say): this is its only task, paid once.
		e.w.m.Ambiguous(e.name, "late_task")
		log.Warn("the job was settled without a task while our submission was in flight; its task is cancelled where the provider allows", "task_id", task.ID)
	}
	if !usesTask(owner, task.ID) {
		e.cancelTask(ctx, task)
	}
	if owner != nil && owner.Phase == reelq.PhaseFinished && owner.Seq == j.seq {
		j.st = owner
		return e.republish(ctx, j, owner)
	}
	return abandon()
}

// ownerHasTask reports whether st (or its stored result) has a provider
// task of its own.
func ownerHasTask(st *jobstate.State) bool {
	if st == nil {
		return false
	}
	if st.Task != nil && st.Task.ID != "" {
		return true
	}
	r := st.StoredResult()
	return r != nil && r.ProviderTaskID != ""
}

// usesTask reports whether st (or its stored result) refers to task id.
func usesTask(st *jobstate.State, id string) bool {
	if st == nil {
		return false
	}
	if st.Task != nil && st.Task.ID == id {
		return true
	}
	r := st.StoredResult()
	return r != nil && r.ProviderTaskID == id
}

// callFailed settles a failed provider call by its error class. submit
// says the call was the paid submit (the state is "submitting").
func (e *engine) callFailed(ctx context.Context, j *job, err error, submit bool) outcome {
	log := e.logJob(j)
	if submit {
		// A call that may have started a task counts as paid.
		e.settleBudget(ctx, j, j.hold, noResponse(err) || errors.Is(err, providers.ErrUnknownSubmission))
		j.hold = nil
	}
	switch {
	case submit && noResponse(err):
		// The call may have reached the provider: keep "submitting", mark
		// the outcome unknown for whoever handles the job next, and count
		// it cluster-wide: a provider that creates tasks but does not answer
		// is paused before it is paid again and again.
		next := *j.st
		next.SubmitUnknown, next.LastError, next.Reserved = true, e.w.redact(err.Error()), nil
		if rev, uerr := e.w.states.Update(ctx, j.st, &next, j.rev); uerr == nil {
			j.st, j.rev = &next, rev
		}
		e.w.m.Ambiguous(e.name, "unknown")
		e.w.noteAmbiguous(ctx, e.name, e.rt, err)
		return e.retry(ctx, j, err)
	case errors.Is(err, providers.ErrUnknownSubmission):
		e.w.pauseFor(ctx, e.name, "unknown_submission", err)
		return e.finish(ctx, j, reelq.StatusFailed, nil, errorInfo(err, e.w.redact))
	case errors.Is(err, providers.ErrCreditsExhausted), errors.Is(err, providers.ErrAuth):
		log.Warn("provider refused the job; pausing the provider", "err", err)
		e.w.pause(ctx, e.name, err)
		if submit {
			return e.backToQueued(ctx, j, waitFor(pausedWait))
		}
		return waitFor(pausedWait)
	case errors.Is(err, providers.ErrInvalidInput), errors.Is(err, providers.ErrForbidden),
		errors.Is(err, providers.ErrNotFound), errors.Is(err, providers.ErrTaskFailed):
		return e.finish(ctx, j, reelq.StatusFailed, nil, errorInfo(err, e.w.redact))
	case errors.Is(err, providers.ErrRateLimited):
		e.rateLimited(j, err)
		if submit {
			return e.backToQueued(ctx, j, waitFor(0))
		}
		return waitFor(0)
	case ctx.Err() != nil:
		if submit {
			return e.backToQueued(ctx, j, nak(0))
		}
		return nak(0)
	}
	if submit {
		// Nothing started (the provider answered with an error).
		next := *j.st
		next.Phase, next.Reserved = reelq.PhaseQueued, nil
		if rev, uerr := e.w.states.Update(ctx, j.st, &next, j.rev); uerr == nil {
			j.st, j.rev = &next, rev
		}
	}
	return e.retry(ctx, j, err)
}

// backToQueued returns a job whose submit started nothing to "queued".
func (e *engine) backToQueued(ctx context.Context, j *job, out outcome) outcome {
	e.settleBudget(ctx, j, j.hold, false)
	j.hold = nil
	next := *j.st
	next.Phase, next.Reserved = reelq.PhaseQueued, nil
	rev, err := e.w.states.Update(context.WithoutCancel(ctx), j.st, &next, j.rev)
	if err == nil {
		j.st, j.rev = &next, rev
	}
	return out
}

// retry counts a failed attempt and either schedules the next one with a
// backoff/v4 delay (the message comes back after it, holding no slot) or,
// after the last, fails the job naming the error. A submitted task whose
// attempts run out is cancelled at the provider where possible.
func (e *engine) retry(ctx context.Context, j *job, cause error) outcome {
	msg := e.w.redact(cause.Error())
	sctx, cancel := settleCtx(ctx)
	defer cancel()
	for range 10 {
		next := *j.st
		next.Attempts++
		next.LastError = msg
		rev, err := e.w.states.Update(sctx, j.st, &next, j.rev)
		if errors.Is(err, jobstate.ErrConflict) {
			st, r, gerr := e.w.states.Get(sctx, j.id)
			if gerr != nil {
				return e.stateUnavailable(j, gerr)
			}
			j.st, j.rev = st, r
			if st.Phase == reelq.PhaseFinished {
				return e.republish(ctx, j, st)
			}
			continue
		}
		if err != nil {
			return e.stateUnavailable(j, err)
		}
		j.st, j.rev = &next, rev
		break
	}
	st := j.st
	if st.Attempts >= e.w.cfg.MaxAttempts {
		j.exhausted = true
		e.w.m.Attempt(e.name, "exhausted")
		if st.Task != nil {
			e.cancelTask(ctx, providers.Task(*st.Task))
		}
		code := providers.Code(cause)
		if code == "" {
			code = reelq.CodeInternal
		}
		return e.finish(ctx, j, reelq.StatusFailed, nil, &reelq.ErrorInfo{Code: code,
			Message: fmt.Sprintf("gave up after %d attempts; last error: %s", st.Attempts, msg)})
	}
	delay := e.w.retryDelay(st.Attempts)
	if ra := providers.RetryAfter(cause); ra > delay {
		delay = ra
	}
	e.w.m.Attempt(e.name, "retry")
	e.logJob(j).Warn("attempt failed; retrying", "attempt", st.Attempts, "max_attempts", e.w.cfg.MaxAttempts, "retry_in", delay, "err", msg)
	until := time.Now().Add(delay)
	e.jobEvent(j, reelq.EventRetry, func(ev *reelq.Event) {
		ev.Attempt, ev.Reason, ev.Code, ev.Until = st.Attempts, msg, providers.Code(cause), &until
	})
	return nak(delay)
}

// noResponse reports a failed call that may still have reached the
// provider: no HTTP status came back, the call's own deadline expired, or
// the adapter says the answer leaves the outcome unknown (Error.Ambiguous).
func noResponse(err error) bool {
	var pe *providers.Error
	if errors.As(err, &pe) {
		return pe.Ambiguous || (pe.StatusCode == 0 && errors.Is(err, providers.ErrRetryable) && !errors.Is(err, providers.ErrCredentialsRefused))
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// limiterRetry is how long a job whose call found the rate limiter's
// shared state unavailable waits before it tries again (holding its
// message, so it uses no delivery).
const limiterRetry = 5 * time.Second

// limit waits for the cluster-wide rate limiter and records when the
// token came (the call must start within the limiter's TokenTTL, or take
// another). It gives up when shutdown begins (no new call starts after
// it), and while the limiter's shared state is unavailable.
func (e *engine) limit(j *job) error {
	waited, err := e.rt.Limiter.Wait(e.intake)
	e.w.m.Waited(e.name, waited)
	j.tokenAt = stampOf(time.Now())
	return err
}

// limited is what a step whose limiter wait failed does: at shutdown the
// job returns to the queue; while the limiter is unavailable it waits,
// holding no slot, and comes back.
func limited(err error) outcome {
	if errors.Is(err, ratelimit.ErrUnavailable) {
		return waitFor(limiterRetry)
	}
	return nak(0)
}

// rateLimited pushes every replica's next call to this provider past the
// provider's Retry-After (or a short default).
func (e *engine) rateLimited(j *job, err error) {
	wait := providers.RetryAfter(err)
	if wait <= 0 {
		wait = e.w.cfg.RateLimitBackoff
	}
	until := time.Now().Add(wait)
	if berr := e.rt.Limiter.Block(e.intake, until); berr != nil && e.intake.Err() == nil {
		e.log.Warn("could not share the rate-limit back-off", "err", berr)
	}
	e.logJob(j).Info("provider rate limit hit; every replica backs off", "retry_after", wait)
	e.jobEvent(j, reelq.EventRateLimited, func(ev *reelq.Event) { ev.Until = &until })
}

// stateUnavailable returns the job to the waiting queue when the job-state
// bucket cannot be read or written: the message stays held and
// heartbeated, so it uses no delivery however long the outage lasts.
func (e *engine) stateUnavailable(j *job, err error) outcome {
	e.logJob(j).Warn("job state unavailable; trying again later", "err", err)
	j.exhausted = false
	return waitFor(stateRetry(0))
}

func settleCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}
