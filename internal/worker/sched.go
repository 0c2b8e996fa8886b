package worker

import (
	"iter"
	"slices"
	"strconv"
)

// sched is where a job is in its engine: the loop's one record of it
// (docs/state_machine.md draws it). Only move changes it, and move keeps
// the counts that follow from it: the pullers' pulled[rank] (the jobs in
// a state that counts as pulled ahead) and the slots in use (running, and
// the fairness keys of the jobs holding them).
type sched uint8

const (
	schedPulled  sched = iota // a puller posted the message; the loop has not placed it yet
	schedPeeking              // a step reads a redelivery's state to place it; no slot
	schedWaiting              // in the waiting queue
	schedRunning              // a step runs, holding a slot
	schedPolling              // holding its slot, on the timer heap until its next poll
	schedOffSlot              // a step runs without a slot: archiving, dead-lettering, failing invalid input, cancelling a queued job
	schedParked               // a budget refused it; back to the queue when a budget changes
	schedWaking               // on the timer heap until it goes back to the waiting queue (a back-off, a pause)
	schedSettled              // its delivery ended (ack, nak, term or abandon), or a duplicate copy was dropped
	schedStates               // the number of states
)

var schedNames = [schedStates]string{
	schedPulled: "pulled", schedPeeking: "peeking", schedWaiting: "waiting", schedRunning: "running",
	schedPolling: "polling", schedOffSlot: "off_slot", schedParked: "parked", schedWaking: "waking", schedSettled: "settled",
}

func (s sched) String() string {
	if s >= schedStates {
		return "sched(" + strconv.Itoa(int(s)) + ")"
	}
	return schedNames[s]
}

// pulledAhead reports whether a job in s counts in its rank's pulled: it
// holds a lookahead place, so the puller pulls no message for it.
func (s sched) pulledAhead() bool {
	return s == schedPulled || s == schedPeeking || s == schedWaiting || s == schedWaking
}

// holdsSlot reports whether a job in s holds one of the engine's slots.
func (s sched) holdsSlot() bool { return s == schedRunning || s == schedPolling }

// busy reports whether a step of a job in s runs on an executor: the
// loop leaves it alone until the step's outcome comes back.
func (s sched) busy() bool { return s == schedPeeking || s == schedRunning || s == schedOffSlot }

// moves lists the legal transitions; each says what makes it (the
// function that calls move). docs/state_machine.md draws the same table
// (TestStateMachineDocMatchesMoves).
var moves = map[[2]sched]string{
	{schedPulled, schedWaiting}:  "arrive",
	{schedPulled, schedPeeking}:  "arrive: a redelivery",
	{schedPulled, schedOffSlot}:  "arrive: unreadable, invalid or cancelled",
	{schedPulled, schedSettled}:  "arrive: a copy of a held message, dropped",
	{schedPeeking, schedWaiting}: "done: peeked",
	{schedPeeking, schedSettled}: "done: settles",
	{schedWaiting, schedRunning}: "dispatch",
	{schedWaiting, schedParked}:  "dispatch: over a budget",
	{schedWaiting, schedOffSlot}: "cancelRequested",
	{schedWaiting, schedSettled}: "spill, drainHeld",
	{schedRunning, schedPolling}: "done: poll",
	{schedRunning, schedOffSlot}: "done: archive",
	{schedRunning, schedParked}:  "done: park",
	{schedRunning, schedWaiting}: "done: wait now, or draining",
	{schedRunning, schedWaking}:  "done: wait",
	{schedRunning, schedSettled}: "done: settles",
	{schedPolling, schedRunning}: "due",
	{schedPolling, schedSettled}: "drainHeld",
	{schedOffSlot, schedWaiting}: "done: wait now, or draining",
	{schedOffSlot, schedWaking}:  "done: wait",
	{schedOffSlot, schedSettled}: "done: settles",
	{schedParked, schedWaiting}:  "unpark",
	{schedParked, schedSettled}:  "drainHeld",
	{schedWaking, schedWaiting}:  "due",
	{schedWaking, schedOffSlot}:  "cancelRequested",
	{schedWaking, schedSettled}:  "drainHeld",
}

// strictMoves makes an illegal move panic; the package's tests set it.
// In production an illegal move is logged and counted
// (reelq_engine_illegal_moves_total), and made: the counts stay those of
// the states the jobs are in.
var strictMoves = false

// move puts j in state to and keeps the counts that follow from its
// state. A job leaving its slot gives it back (freeSlot).
func (e *engine) move(j *job, to sched) {
	from := j.sched
	if _, ok := moves[[2]sched{from, to}]; !ok {
		if strictMoves {
			panic("worker: illegal move of job " + j.id + " from " + from.String() + " to " + to.String())
		}
		e.log.Error("illegal job state move; making it", "job_id", j.id, "stream_seq", j.seq, "from", from.String(), "to", to.String())
		e.w.m.IllegalMove(e.name, from.String(), to.String())
	}
	j.sched = to
	rank := j.priority().Rank()
	switch {
	case from.pulledAhead() && !to.pulledAhead():
		e.pulled[rank].Add(-1)
		e.wakePuller(rank)
	case !from.pulledAhead() && to.pulledAhead():
		e.pulled[rank].Add(1)
	}
	switch {
	case from.holdsSlot() && !to.holdsSlot():
		e.freeSlot(j)
	case !from.holdsSlot() && to.holdsSlot():
		e.running++
		e.keyStarted(j)
	}
}

// addID files j under its job id. Most jobs have one message held, filed
// in byID (a pointer per job, not a slice); a second message of the same
// job (a publish after the duplicate window, say) goes to moreByID.
func (e *engine) addID(j *job) {
	if e.byID[j.id] == nil {
		e.byID[j.id] = j
		return
	}
	e.moreByID[j.id] = append(e.moreByID[j.id], j)
}

// dropID removes j from the jobs filed under its id.
func (e *engine) dropID(j *job) {
	more := e.moreByID[j.id]
	if e.byID[j.id] == j {
		if len(more) == 0 {
			delete(e.byID, j.id)
			return
		}
		e.byID[j.id], more = more[0], more[1:]
	} else if i := slices.Index(more, j); i >= 0 {
		more = slices.Delete(more, i, i+1)
	}
	if len(more) == 0 {
		delete(e.moreByID, j.id)
	} else {
		e.moreByID[j.id] = more
	}
}

// withID is the held messages of job id.
func (e *engine) withID(id string) iter.Seq[*job] {
	return func(yield func(*job) bool) {
		j := e.byID[id]
		if j == nil || !yield(j) {
			return
		}
		for _, x := range e.moreByID[id] {
			if !yield(x) {
				return
			}
		}
	}
}
