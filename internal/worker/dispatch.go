package worker

import (
	"context"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
)

// arrive takes a freshly pulled message.
func (e *engine) arrive(j *job) {
	if prev, dup := e.jobs[j.seq]; dup && prev.sched != schedSettled {
		// The server redelivered a message this engine still holds (a
		// heartbeat was late): keep the copy we have.
		e.move(j, schedSettled)
		return
	}
	e.jobs[j.seq] = j
	e.addID(j)
	switch {
	case e.draining.Load() && j.bad() == nil:
		// Returned by drainHeld once no pull of ours is open (a Nak now
		// could come straight back to one).
		e.move(j, schedWaiting)
		e.waitq.push(j)
	case j.bad() != nil:
		e.move(j, schedOffSlot)
		e.start(j, (*engine).stepDeadLetter)
	case j.invalid() != nil:
		e.move(j, schedOffSlot)
		e.start(j, (*engine).stepInvalid)
	case e.w.cancels.has(j.id):
		e.move(j, schedOffSlot)
		e.start(j, (*engine).stepCancelQueued)
	case j.deliveries > 1:
		// A redelivery: if its task already runs at the provider (its
		// worker died), it takes the next slot before any new
		// submission, or the provider would run more than the cap. Read
		// its state first, without a slot.
		e.move(j, schedPeeking)
		e.start(j, (*engine).stepPeek)
	default:
		e.move(j, schedWaiting)
		e.waitq.push(j)
	}
}

// stepPeek reads a redelivered job's state to place it in the waiting
// queue: resumeLevel when its task was submitted (or may have been), or
// it needs no provider call at all (archiving, finished): those go first,
// and a pause of the provider lets them through. Otherwise, or on any
// failure, its priority.
func (e *engine) stepPeek(ctx context.Context, j *job) outcome {
	lvl := j.priority().Rank()
	if st, _, err := e.w.states.Get(ctx, j.id); err == nil {
		switch st.Phase {
		case reelq.PhaseSubmitted, reelq.PhaseSubmitting, reelq.PhaseArchiving, reelq.PhaseFinished:
			lvl = resumeLevel
		}
	}
	return outcome{kind: outPeeked, lvl: lvl}
}

// done applies a step's outcome.
func (e *engine) done(j *job, out outcome) {
	if out.kind == outPeeked {
		j.lvl = int8(out.lvl)
		e.move(j, schedWaiting)
		e.waitq.push(j)
		return
	}
	if out.settles() {
		e.settle(j, out)
		return
	}
	if e.draining.Load() {
		// Not settled here: drainHeld returns it once no pull of ours is
		// open.
		e.move(j, schedWaiting)
		e.waitq.pushFront(j)
		return
	}
	switch out.kind {
	case outPoll:
		e.move(j, schedPolling)
		at := out.at
		if j.woken {
			j.woken = false
			if w := wakeAt(j, time.Now()); w.Before(at) {
				at = w
			}
		}
		e.timers.schedule(j, at)
		if j.cancel.Load() {
			e.timers.schedule(j, time.Now())
		}
		e.shed(j, j.due.time())
	case outPark:
		e.park(j, nil, out.seen)
	case outArchive:
		e.move(j, schedOffSlot)
		e.archq.push(task{j: j, step: (*engine).stepArchive})
	case outWait:
		to := schedWaiting
		later := out.at.After(time.Now())
		if later {
			to = schedWaking
		}
		e.move(j, to) // out of its slot before its level changes (keyEnded)
		switch {
		case out.paid && j.lvl == resumeLevel:
			j.lvl = 0 // waits with the new submissions until the pause ends
		case !out.paid && knownTask(j.st):
			j.lvl = resumeLevel // a pause must not hold its polls
		}
		if later {
			e.timers.schedule(j, out.at)
			return
		}
		e.waitq.pushFront(j)
	}
}

// knownTask reports whether st needs no new paid call: its task was
// submitted, or it archives or republishes.
func knownTask(st *jobstate.State) bool {
	if st == nil {
		return false
	}
	switch st.Phase {
	case reelq.PhaseSubmitted, reelq.PhaseArchiving, reelq.PhaseFinished:
		return true
	}
	return false
}

// due runs a job whose timer fired: a poll, or a return to the queue.
func (e *engine) due(j *job) {
	switch j.sched {
	case schedWaking:
		e.move(j, schedWaiting)
		e.waitq.pushFront(j)
	case schedPolling:
		e.move(j, schedRunning)
		j.polledAt = stampOf(time.Now())
		e.start(j, (*engine).stepPoll)
	}
}

// dispatch starts as many waiting jobs as the slots and the gate allow. A
// paused provider (gate not open) still starts the jobs at resumeLevel:
// their task runs at the provider already, or they need no provider call,
// so a pause, which holds new paid calls only, must not hold their polls
// and archiving (a provider's output links expire).
func (e *engine) dispatch() {
	if e.draining.Load() {
		return
	}
	for e.waitq.len() > 0 {
		if e.running >= e.slots || e.running >= e.localSlots() {
			return
		}
		probe := false
		var j *job
		switch {
		case e.gate.mode == gateOpen:
			j = e.waitq.pop()
		case e.waitq.count(resumeLevel) > 0:
			j = e.waitq.popLevel(resumeLevel)
		case e.gate.mode == gateProbe && (e.probeFor.IsZero() || !e.probeFor.Equal(e.gate.claim)):
			j, probe = e.waitq.pop(), true
		default:
			return // closed, or this claim's probe job has started
		}
		if sc, seen := e.w.budgets.scopes(e.name, j.env.Batch, j.est); len(sc) > 0 {
			if ok, over := e.w.budgets.fits(sc, j.est); !ok {
				e.park(j, over, seen)
				continue
			}
		}
		e.move(j, schedRunning)
		if probe {
			j.probe = true
			e.probeFor = e.gate.claim
			e.log.Info("this job is the probe for the paused provider", "job_id", j.id)
		}
		e.start(j, (*engine).stepClaim)
	}
}

// park sets j aside until a budget allows it: it holds no slot, and jobs
// of other batches go on. seen is the version of the budget view that
// refused it: the loop unparks at any change after the oldest such view,
// including one that came before the loop went to sleep.
func (e *engine) park(j *job, over *budgetScope, seen uint64) {
	if len(e.parked) == 0 || seen < e.parkedAt {
		e.parkedAt = seen
	}
	e.move(j, schedParked)
	e.parked = append(e.parked, j)
	if over != nil {
		e.overBudget(j, over)
	}
}

// unpark returns parked jobs to the waiting queue when a budget changed;
// dispatch parks again those that still do not fit.
func (e *engine) unpark() {
	for _, j := range e.parked {
		e.move(j, schedWaiting)
		e.waitq.pushFront(j)
	}
	e.parked = e.parked[:0]
}
