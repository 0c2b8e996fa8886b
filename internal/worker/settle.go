package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// settle is the one place a delivery ends: ack, nak, term, or abandon.
func (e *engine) settle(j *job, out outcome) {
	if j.sched == schedSettled {
		e.log.Error("job settled twice; ignoring the second settlement", "job_id", j.id, "stream_seq", j.seq, "outcome", out.String())
		return
	}
	defer endDelivery(j, out)
	var err error
	m := e.acks(j)
	switch out.kind {
	case outAck, outHold:
		err = m.Ack()
	case outNak:
		if out.delay > 0 {
			err = m.NakWithDelay(out.delay)
		} else {
			err = m.Nak()
		}
	case outTerm:
		err = m.TermWithReason(out.reason)
	case outAbandon:
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		e.log.Warn("settling the message failed; it returns after AckWait", "job_id", j.id, "stream_seq", j.seq, "outcome", out.String(), "err", err)
	}
	switch j.sched {
	case schedParked:
		for i, x := range e.parked {
			if x == j {
				e.parked = append(e.parked[:i], e.parked[i+1:]...)
				break
			}
		}
	case schedWaiting:
		e.waitq.remove(j) // unless the caller popped it
	case schedPolling, schedWaking:
		e.timers.unschedule(j)
	}
	e.move(j, schedSettled)
	if j.probe && out.kind != outAck && out.kind != outHold {
		// The probe did not get a verdict: let another probe run.
		e.bg.Add(1)
		go func() {
			defer e.bg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = e.w.pstate.ReleaseProbe(ctx, e.name, e.w.cfg.WorkerID)
		}()
	}
	delete(e.jobs, j.seq)
	e.dropID(j)
}

// heartbeats keeps every held message alive: one ticker for all of them.
func (e *engine) heartbeats() {
	for _, j := range e.jobs {
		if err := e.acks(j).InProgress(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			e.hbErrLog.Do(func() { e.log.Warn("heartbeat failed", "job_id", j.id, "err", err) })
		}
	}
}

// cancelRequested acts on a cancel request for a job this engine holds.
func (e *engine) cancelRequested(id string) {
	for j := range e.withID(id) {
		j.cancel.Store(true)
		switch j.sched {
		case schedWaiting:
			e.waitq.remove(j)
			e.move(j, schedOffSlot)
			e.start(j, (*engine).stepCancelQueued)
		case schedWaking:
			e.timers.unschedule(j)
			e.move(j, schedOffSlot)
			e.start(j, (*engine).stepCancelQueued)
		case schedPolling:
			e.timers.schedule(j, time.Now()) // poll now: the poll step cancels
		}
		// Busy (a step runs): the step sees the flag at its next
		// decision. Parked: dispatch's claim step sees it.
	}
}

// drain begins shutdown: no new job or paid call starts; the pullers stop
// (their open pulls are cancelled), and then drainHeld returns the jobs.
func (e *engine) drain() {
	e.draining.Store(true)
	for i := range e.pullWake {
		e.wakePuller(i)
	}
}

// drainHeld returns every job not in a step to the queue at once, without
// using an attempt. It runs only once no pull of this engine is open, so
// the returned messages go to other replicas, not back to us.
func (e *engine) drainHeld() {
	n := 0
	for _, j := range e.jobs {
		if !j.sched.busy() {
			e.settle(j, nak(0))
			n++
		}
	}
	if n > 0 {
		e.log.Info("shutdown: jobs returned to the queue", "returned", n, "still_in_a_call", len(e.jobs))
	}
}
