package worker

import (
	"strconv"
	"time"
)

type outcomeKind int

const (
	outAck     outcomeKind = iota // finished: ack the message
	outNak                        // return it after delay (0: at once)
	outTerm                       // remove it for good (reason)
	outAbandon                    // a stale delivery another replica owns: leave the message alone
	outHold                       // parked for an operator: the state holds the job; ack the message
	outPoll                       // keep the slot; run the poll step at `at`
	outWait                       // release the slot; back to the waiting queue at `at`
	outArchive                    // release the slot; archive the outputs (no provider work)
	outPark                       // release the slot; wait for a budget to allow the job
	outPeeked                     // a redelivery's state was read: it waits at level (resume first if its task runs)
	outReread                     // the job's state changed under the step: read it again and decide (runStep does; the loop never sees it)
	outKinds                      // the number of kinds
)

var outcomeNames = [outKinds]string{outAck: "ack", outNak: "nak", outTerm: "term", outAbandon: "abandon", outHold: "hold",
	outPoll: "poll", outWait: "wait", outArchive: "archive", outPark: "park", outPeeked: "peeked", outReread: "reread"}

// outcome is what a step decided for its job.
type outcome struct {
	kind   outcomeKind
	delay  time.Duration
	at     time.Time
	reason string
	lvl    int    // outPeeked: the waiting queue level
	seen   uint64 // outPark: the budget view the job was refused at
	// paid (outWait): the job needs a paid call the provider's pause
	// holds; it leaves resumeLevel, which a pause lets through.
	paid bool
}

func ack() outcome                  { return outcome{kind: outAck} }
func nak(d time.Duration) outcome   { return outcome{kind: outNak, delay: d} }
func term(reason string) outcome    { return outcome{kind: outTerm, reason: reason} }
func pollAt(t time.Time) outcome    { return outcome{kind: outPoll, at: t} }
func waitUntil(t time.Time) outcome { return outcome{kind: outWait, at: t} }
func abandon() outcome              { return outcome{kind: outAbandon} }
func hold() outcome                 { return outcome{kind: outHold} }
func reread() outcome               { return outcome{kind: outReread} }
func (o outcome) settles() bool     { return o.kind <= outHold }

func (o outcome) String() string {
	if o.kind < 0 || o.kind >= outKinds {
		return "outcome(" + strconv.Itoa(int(o.kind)) + ")"
	}
	return outcomeNames[o.kind]
}

func waitFor(d time.Duration) outcome { return waitUntil(time.Now().Add(d)) }
func pausedOutcome() outcome          { o := waitFor(pausedWait); o.paid = true; return o }
