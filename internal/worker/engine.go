package worker

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/slots"
)

// slotPool is the part of *slots.Pool an engine uses: the provider's
// cluster-wide concurrency cap as leases.
type slotPool interface {
	Run(ctx context.Context) error
	TryAcquire(ctx context.Context, k, top int) (int, error)
	Release(ctx context.Context, k int) error
	Held() int
	SetDemand(ctx context.Context, want, top int) error
	Yield(myTop int) bool
	Version() uint64
	Changed(seen uint64) <-chan struct{}
}

// An engine runs one provider's jobs on this replica. Its loop (run) owns
// the scheduling state: the jobs it holds, the waiting queue, the timer
// heap, the slot count; pullers, the slot manager and the gate feed it
// events, and a bounded pool of executors runs the jobs' steps (provider
// calls and state writes) and reports each step's outcome back. A job is
// data while it waits or between polls, not a goroutine.
type engine struct {
	w    *Worker
	name string
	rt   *Runtime
	cons map[reelq.Priority]jetstream.Consumer
	pool slotPool
	log  *slog.Logger

	events  chan any
	stopped chan struct{} // closed when the loop has returned: nothing reads events
	index   *batchIndex
	runq    *runQueue
	archq   *runQueue // downloads, on executors of their own

	// intake is cancelled when shutdown begins: no new paid call or poll
	// starts after it. draining mirrors it for steps.
	intake   context.Context
	draining atomic.Bool

	// Shared with the pullers: messages pulled and not yet started or
	// settled, per priority rank, and a wake-up per puller.
	pulled   [4]atomic.Int64
	pullWake [4]chan struct{}

	// Shared with the slot manager.
	slotWake chan struct{}
	want     atomic.Int64
	top      atomic.Int64
	toFree   atomic.Int64

	hbErrLog rate.Sometimes
	bg       sync.WaitGroup // short-lived I/O the loop starts (a probe release)

	// Spilling: a replica that holds more waiting jobs than its own slots
	// can start, while the cluster has free slots and other replicas wait
	// for work, hands the surplus back so they can run it.
	waitingN atomic.Int64 // jobs in the waiting queue, for the gate
	// runningN and slotsN are running and slots, for the heartbeat.
	runningN, slotsN atomic.Int64
	needMu           sync.Mutex
	need             reelq.Cost  // the estimate a provider budget last refused
	spillHold        atomic.Bool // pullers pause while set
	spillAsk         atomic.Bool // the slot manager should look for idle replicas
	lastSpill        time.Time

	// Loop-owned.
	jobs       map[uint64]*job
	byID       map[string][]*job
	parked     []*job // waiting for a budget to allow them (no slot)
	parkedAt   uint64 // the oldest budget view a parked job was refused at
	waitq      *waitQueue
	timers     timerHeap
	slots      int // slots granted to this engine and not released
	running    int // jobs holding a slot
	gate       gateState
	probeFor   time.Time // the probe claim a probe job was started for
	idleTimer  *time.Timer
	pullersOut int
	// Fairness: running jobs per rank and key hash, and what was last
	// advertised.
	runKeys    [levels]map[string]int
	runKeysVer uint64
	keysAt     [2]uint64 // waitq and runKeys versions of the advertised keys
	keysRank   int
	keyBuf     []string
}

type gateMode int

const (
	gateOpen gateMode = iota
	gateClosed
	gateProbe // paused; this replica may run one probe job
)

type gateState struct {
	mode  gateMode
	claim time.Time // the probe claim's ProbeUntil, for gateProbe
}

// Events for the loop.
type (
	evMsg  struct{ j *job }
	evDone struct {
		j   *job
		out outcome
	}
	evCancel  struct{ id string }
	evGranted struct{ n int }
	evLost    struct{ n int }
	evGate    struct{ g gateState }
	evPuller  struct{}              // a puller stopped
	evSpill   struct{ waiting int } // other replicas' open pulls
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
	outKinds                      // the number of kinds
)

var outcomeNames = [outKinds]string{outAck: "ack", outNak: "nak", outTerm: "term", outAbandon: "abandon", outHold: "hold",
	outPoll: "poll", outWait: "wait", outArchive: "archive", outPark: "park", outPeeked: "peeked"}

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
func (o outcome) settles() bool     { return o.kind <= outHold }
func (o outcome) String() string {
	if o.kind < 0 || o.kind >= outKinds {
		return "outcome(" + strconv.Itoa(int(o.kind)) + ")"
	}
	return outcomeNames[o.kind]
}
func waitFor(d time.Duration) outcome { return waitUntil(time.Now().Add(d)) }
func pausedOutcome() outcome          { o := waitFor(pausedWait); o.paid = true; return o }

// post hands ev to the loop from another goroutine (a puller, an executor,
// the slot manager, the cancel watch). It blocks while the events buffer is
// full and the loop runs, never after the loop has returned: the loop
// returns only once every job is settled and no puller runs, so an event
// posted then (a cancel request, a grant) has nothing left to act on.
func (e *engine) post(ev any) {
	select {
	case e.events <- ev:
	case <-e.stopped:
	}
}

func (e *engine) localSlots() int          { return e.rt.Slots }
func (e *engine) heartbeat() time.Duration { return max(e.w.cfg.AckWait/4, 100*time.Millisecond) }

func newEngine(w *Worker, name string, rt *Runtime, cons map[reelq.Priority]jetstream.Consumer, pool slotPool) *engine {
	e := &engine{
		w: w, name: name, rt: rt, cons: cons, pool: pool,
		log:      w.log.With("provider", name),
		events:   make(chan any, 4096),
		stopped:  make(chan struct{}),
		runq:     newRunQueue(),
		index:    newBatchIndex(w.js),
		archq:    newRunQueue(),
		slotWake: make(chan struct{}, 1),
		hbErrLog: rate.Sometimes{First: 1, Interval: 10 * time.Second},
		jobs:     map[uint64]*job{},
		byID:     map[string][]*job{},
		waitq:    newWaitQueue(),
	}
	for i := range e.pullWake {
		e.pullWake[i] = make(chan struct{}, 1)
	}
	return e
}

// run is the engine: it returns when shutdown began (intake ended) and
// every job it held is settled.
func (e *engine) run(intake, work context.Context) {
	e.intake = intake
	var wg sync.WaitGroup
	defer wg.Wait()
	defer e.bg.Wait()
	aux, stopAux := context.WithCancel(work)
	defer stopAux()

	// The slot pool lives until the last job is settled, so the slots of
	// jobs finishing during shutdown stay held until then.
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = e.pool.Run(aux)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.slotManager(aux)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.index.run(aux)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.gateLoop(intake)
	}()
	for range e.rt.Calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.executor(work, e.runq)
		}()
	}
	for range e.w.archiveWorkers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.executor(work, e.archq)
		}()
	}
	for _, p := range reelq.Priorities {
		e.pullersOut++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer e.post(evPuller{})
			e.puller(intake, p)
		}()
	}
	e.loop(intake)
	e.runq.close()
	e.archq.close()
	stopAux()
}

func (e *engine) loop(intake context.Context) {
	defer close(e.stopped)
	hb := time.NewTicker(e.heartbeat())
	defer hb.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	e.idleTimer = time.NewTimer(time.Hour)
	defer e.idleTimer.Stop()
	intakeDone := intake.Done()
	for {
		if e.draining.Load() && e.pullersOut == 0 {
			e.drainHeld()
			if len(e.jobs) == 0 {
				return
			}
		}
		e.publishKeys()
		e.dispatch()
		e.publishDemand()
		e.checkSpill()
		e.waitingN.Store(int64(e.waitq.len()))
		e.runningN.Store(int64(e.running))
		e.slotsN.Store(int64(e.slots))
		e.w.m.SetEngine(e.name, e.running, e.waitq.len(), e.slots)
		if at, ok := e.timers.next(); ok {
			timer.Reset(max(time.Until(at), 0))
		} else {
			timer.Reset(time.Hour)
		}
		var budgetChanged <-chan struct{}
		if len(e.parked) > 0 {
			budgetChanged = e.w.budgets.changed(e.parkedAt)
		}
		select {
		case <-budgetChanged:
			e.unpark()
		case ev := <-e.events:
			e.handle(ev)
		case <-timer.C:
			for _, j := range e.timers.popDue(time.Now()) {
				e.due(j)
			}
		case <-hb.C:
			e.heartbeats()
		case <-e.idleTimer.C:
			e.releaseIdle()
		case <-intakeDone:
			intakeDone = nil
			e.drain()
		}
	}
}

func (e *engine) handle(ev any) {
	switch ev := ev.(type) {
	case evMsg:
		e.arrive(ev.j)
	case evDone:
		e.done(ev.j, ev.out)
	case evCancel:
		e.cancelRequested(ev.id)
	case evGranted:
		e.slots += ev.n
	case evLost:
		e.slots = max(e.slots-ev.n, 0)
		e.log.Warn("slot lease lost; starting no new jobs until it is renewed", "lost", ev.n, "slots", e.slots, "running", e.running)
	case evGate:
		if ev.g.mode == gateOpen && e.gate.mode != gateOpen {
			// A pause ended: one for a provider budget ends when the
			// period rolls over too, which changes no budget key, so
			// the jobs parked for it try again now.
			e.unpark()
		}
		e.gate = ev.g
	case evPuller:
		e.pullersOut--
	case evSpill:
		e.spill(ev.waiting)
	}
}

// arrive takes a freshly pulled message.
func (e *engine) arrive(j *job) {
	rank := j.prio.Rank()
	if prev, dup := e.jobs[j.seq]; dup && !prev.settled {
		// The server redelivered a message this engine still holds (a
		// heartbeat was late): keep the copy we have.
		e.pulled[rank].Add(-1)
		e.wakePuller(rank)
		return
	}
	e.jobs[j.seq] = j
	e.byID[j.id] = append(e.byID[j.id], j)
	switch {
	case e.draining.Load() && j.bad == nil:
		// Returned by drainHeld once no pull of ours is open (a Nak now
		// could come straight back to one).
		j.waiting = true
		e.waitq.push(j)
	case j.bad != nil:
		e.pulled[rank].Add(-1)
		e.start(j, (*engine).stepDeadLetter)
	case j.invalid != nil:
		e.pulled[rank].Add(-1)
		e.start(j, (*engine).stepInvalid)
	case e.w.cancels.has(j.id):
		e.pulled[rank].Add(-1)
		e.start(j, (*engine).stepCancelQueued)
	case j.deliveries > 1:
		// A redelivery: if its task already runs at the provider (its
		// worker died), it takes the next slot before any new
		// submission, or the provider would run more than the cap. Read
		// its state first, without a slot.
		e.start(j, (*engine).stepPeek)
	default:
		j.waiting = true
		e.waitq.push(j)
	}
}

// stepPeek reads a redelivered job's state to place it in the waiting
// queue: resumeLevel when its task was submitted (or may have been), or
// it needs no provider call at all (archiving, finished): those go first,
// and a pause of the provider lets them through. Otherwise, or on any
// failure, its priority.
func (e *engine) stepPeek(ctx context.Context, j *job) outcome {
	lvl := j.prio.Rank()
	if st, _, err := e.w.states.Get(ctx, j.id); err == nil {
		switch st.Phase {
		case reelq.PhaseSubmitted, reelq.PhaseSubmitting, reelq.PhaseArchiving, reelq.PhaseFinished:
			lvl = resumeLevel
		}
	}
	return outcome{kind: outPeeked, lvl: lvl}
}

// start hands j's next step to the executors.
func (e *engine) start(j *job, step func(*engine, context.Context, *job) outcome) {
	j.busy = true
	e.runq.push(task{j: j, step: step})
}

func (e *engine) executor(ctx context.Context, q *runQueue) {
	for {
		t, ok := q.pop()
		if !ok {
			return
		}
		out := e.runStep(ctx, t)
		e.post(evDone{j: t.j, out: out})
	}
}

func (e *engine) runStep(ctx context.Context, t task) (out outcome) {
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("job step panicked; returning the job to the queue", "job_id", t.j.id, "panic", p, "stack", string(debug.Stack()))
			out = nak(5 * time.Second)
		}
	}()
	return t.step(e, withJobSpan(ctx, t.j), t.j)
}

// done applies a step's outcome.
func (e *engine) done(j *job, out outcome) {
	j.busy = false
	if out.kind == outPeeked {
		// Still counted as pulled; now it waits.
		j.lvl = out.lvl
		j.waiting = true
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
		e.freeSlot(j)
		e.pulled[j.prio.Rank()].Add(1)
		j.waiting = true
		e.waitq.pushFront(j)
		return
	}
	switch out.kind {
	case outPoll:
		j.wake = false
		e.timers.schedule(j, out.at)
		if j.cancel.Load() {
			e.timers.schedule(j, time.Now())
		}
	case outPark:
		e.freeSlot(j)
		e.park(j, nil, out.seen)
	case outArchive:
		e.freeSlot(j)
		j.busy = true
		e.archq.push(task{j: j, step: (*engine).stepArchive})
	case outWait:
		e.freeSlot(j)
		switch {
		case out.paid && j.lvl == resumeLevel:
			j.lvl = 0 // waits with the new submissions until the pause ends
		case !out.paid && knownTask(j.st):
			j.lvl = resumeLevel // a pause must not hold its polls
		}
		e.pulled[j.prio.Rank()].Add(1)
		if out.at.After(time.Now()) {
			j.wake = true
			e.timers.schedule(j, out.at)
			return
		}
		j.waiting = true
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
	if j.settled {
		return
	}
	if j.wake {
		j.wake = false
		j.waiting = true
		e.waitq.pushFront(j)
		return
	}
	e.start(j, (*engine).stepPoll)
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
		e.pulled[j.prio.Rank()].Add(-1)
		e.wakePuller(j.prio.Rank())
		j.waiting = false
		if sc, seen := e.w.budgets.scopes(e.name, j.env.Batch, j.est); len(sc) > 0 {
			if ok, over := e.w.budgets.fits(sc, j.est); !ok {
				e.park(j, over, seen)
				continue
			}
		}
		j.slot = true
		e.running++
		e.keyStarted(j)
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
	j.parked = true
	e.parked = append(e.parked, j)
	if over != nil {
		e.overBudget(j, over)
	}
}

// unpark returns parked jobs to the waiting queue when a budget changed;
// dispatch parks again those that still do not fit.
func (e *engine) unpark() {
	for _, j := range e.parked {
		j.parked = false
		if j.settled {
			continue
		}
		j.waiting = true
		e.waitq.pushFront(j)
		e.pulled[j.prio.Rank()].Add(1)
	}
	e.parked = e.parked[:0]
}

// publishDemand tells the slot manager how many slots this engine could
// use and the priority of its best waiting job.
func (e *engine) publishDemand() {
	want := int64(min(e.running+e.waitq.len(), e.localSlots()))
	if e.gate.mode != gateOpen {
		// Paused: the jobs a pause lets through (resumeLevel), and a
		// probe job.
		n := e.running + e.waitq.count(resumeLevel)
		if e.gate.mode == gateProbe && e.waitq.len() > e.waitq.count(resumeLevel) {
			n++
		}
		want = int64(min(n, e.localSlots()))
	}
	top := int64(e.waitq.top())
	if e.want.Swap(want) != want || e.top.Swap(top) != top || int(want) > e.slots {
		select {
		case e.slotWake <- struct{}{}:
		default:
		}
	}
	if int(want) < e.slots && e.running < e.slots {
		// Slots held beyond need: give them back if they stay idle.
		e.idleTimer.Reset(200 * time.Millisecond)
	}
}

// fairPool is the part of *slots.Pool that shares slots among fairness
// keys cluster-wide.
type fairPool interface {
	SetKeys(keys []string)
	KeyWeights() map[string]float64
}

func (e *engine) keyStarted(j *job) {
	r := j.level()
	if e.runKeys[r] == nil {
		e.runKeys[r] = map[string]int{}
	}
	if e.runKeys[r][j.fkh]++; e.runKeys[r][j.fkh] == 1 {
		e.runKeysVer++
	}
}

func (e *engine) keyEnded(j *job) {
	r := j.level()
	if e.runKeys[r][j.fkh]--; e.runKeys[r][j.fkh] <= 0 {
		delete(e.runKeys[r], j.fkh)
		e.runKeysVer++
	}
}

// publishKeys advertises the fairness keys of the jobs at this engine's
// top rank (waiting, or else running) when they changed, and takes the
// cluster-wide plan for the waiting queue.
func (e *engine) publishKeys() {
	fp, ok := e.pool.(fairPool)
	if !ok {
		return
	}
	rank := e.waitq.top()
	if rank == 0 {
		for r := levels - 1; r >= 1; r-- {
			if len(e.runKeys[r]) > 0 {
				rank = r
				break
			}
		}
	}
	at := [2]uint64{e.waitq.version(), e.runKeysVer}
	if at != e.keysAt || rank != e.keysRank {
		e.keysAt, e.keysRank = at, rank
		keys := e.keyBuf[:0]
		if rank > 0 {
			keys = e.waitq.keys(rank, keys)
			for k := range e.runKeys[rank] {
				keys = append(keys, k)
			}
		}
		e.keyBuf = keys
		fp.SetKeys(keys)
	}
	e.waitq.setWeights(fp.KeyWeights())
}

// checkSpill enters or leaves the spilling state: this replica runs as
// many jobs as its own slots allow (P_SLOTS), holds more waiting, and the
// cluster has free slots it cannot use.
func (e *engine) checkSpill() {
	candidate := !e.draining.Load() && e.gate.mode == gateOpen && e.running >= e.localSlots() &&
		e.waitq.len() > e.localSlots() && e.slots >= e.localSlots() && e.freeSlots() > 0
	switch {
	case candidate && !e.spillHold.Load():
		e.spillHold.Store(true)
		e.spillAsk.Store(true)
		e.wakeSlots()
	case candidate && time.Since(e.lastSpill) > time.Second && !e.spillAsk.Load():
		e.spillAsk.Store(true)
		e.wakeSlots()
	case !candidate && e.spillHold.Load():
		e.spillHold.Store(false)
		for i := range e.pullWake {
			e.wakePuller(i)
		}
	}
}

// spill hands surplus waiting jobs back to the queue when other replicas
// have pulls open (they take them at once); otherwise nothing moves, so a
// replica alone never churns its jobs' delivery counts.
func (e *engine) spill(waiting int) {
	e.lastSpill = time.Now()
	if waiting <= 0 || !e.spillHold.Load() {
		return
	}
	n := min(e.waitq.len()-e.localSlots(), max(e.freeSlots(), 1)*2)
	for range n {
		j := e.waitq.popSurplus()
		if j == nil {
			break
		}
		j.waiting = false
		e.pulled[j.prio.Rank()].Add(-1)
		e.settle(j, nak(0))
	}
	if n > 0 {
		e.log.Info("handed surplus jobs to idle replicas", "jobs", n, "free_slots", e.freeSlots())
	}
}

func (e *engine) freeSlots() int {
	if s, ok := e.pool.(interface{ Snapshot() slots.Allocation }); ok {
		return s.Snapshot().Free
	}
	return 0
}

func (e *engine) wakeSlots() {
	select {
	case e.slotWake <- struct{}{}:
	default:
	}
}

// releaseIdle gives back slots no job needs.
func (e *engine) releaseIdle() {
	want := int(e.want.Load())
	if n := e.slots - max(want, e.running); n > 0 {
		e.releaseSlots(n)
	}
}

func (e *engine) releaseSlots(n int) {
	e.slots -= n
	e.toFree.Add(int64(n))
	select {
	case e.slotWake <- struct{}{}:
	default:
	}
}

// freeSlot ends j's hold on a slot; the slot goes back to the pool when
// another replica needs it more (a higher priority waiting, or a fair
// share), else it is reused here.
func (e *engine) freeSlot(j *job) {
	if !j.slot {
		return
	}
	j.slot = false
	e.running--
	e.keyEnded(j)
	if e.waitq.len() > 0 && e.pool.Yield(e.waitq.top()) {
		e.releaseSlots(1)
	}
}

// settle is the one place a delivery ends: ack, nak, term, or abandon.
func (e *engine) settle(j *job, out outcome) {
	if j.settled {
		e.log.Error("job settled twice; ignoring the second settlement", "job_id", j.id, "stream_seq", j.seq, "outcome", out.String())
		return
	}
	j.settled = true
	defer endDelivery(j, out)
	var err error
	switch out.kind {
	case outAck, outHold:
		err = j.msg.Ack()
	case outNak:
		if out.delay > 0 {
			err = j.msg.NakWithDelay(out.delay)
		} else {
			err = j.msg.Nak()
		}
	case outTerm:
		err = j.msg.TermWithReason(out.reason)
	case outAbandon:
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		e.log.Warn("settling the message failed; it returns after AckWait", "job_id", j.id, "stream_seq", j.seq, "outcome", out.String(), "err", err)
	}
	if j.parked {
		j.parked = false
		for i, x := range e.parked {
			if x == j {
				e.parked = append(e.parked[:i], e.parked[i+1:]...)
				break
			}
		}
	}
	if j.waiting {
		e.waitq.remove(j)
		j.waiting = false
		e.pulled[j.prio.Rank()].Add(-1)
		e.wakePuller(j.prio.Rank())
	}
	e.timers.unschedule(j)
	e.freeSlot(j)
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
	list := e.byID[j.id]
	for i, x := range list {
		if x == j {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(e.byID, j.id)
	} else {
		e.byID[j.id] = list
	}
}

// heartbeats keeps every held message alive: one ticker for all of them.
func (e *engine) heartbeats() {
	for _, j := range e.jobs {
		if j.settled {
			continue
		}
		if err := j.msg.InProgress(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			e.hbErrLog.Do(func() { e.log.Warn("heartbeat failed", "job_id", j.id, "err", err) })
		}
	}
}

// cancelRequested acts on a cancel request for a job this engine holds.
func (e *engine) cancelRequested(id string) {
	for _, j := range e.byID[id] {
		if j.settled {
			continue
		}
		j.cancel.Store(true)
		switch {
		case j.waiting:
			e.waitq.remove(j)
			j.waiting = false
			e.pulled[j.prio.Rank()].Add(-1)
			e.start(j, (*engine).stepCancelQueued)
		case j.busy:
			// The running step sees the flag at its next decision.
		case j.heapIdx >= 0 && j.wake:
			e.timers.unschedule(j)
			j.wake = false
			e.start(j, (*engine).stepCancelQueued)
		case j.heapIdx >= 0:
			e.timers.schedule(j, time.Now()) // poll now: the poll step cancels
		}
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
		if !j.busy && !j.settled {
			e.settle(j, nak(0))
			n++
		}
	}
	if n > 0 {
		e.log.Info("shutdown: jobs returned to the queue", "returned", n, "still_in_a_call", len(e.jobs))
	}
}

func (e *engine) wakePuller(rank int) {
	select {
	case e.pullWake[rank] <- struct{}{}:
	default:
	}
}

// puller keeps up to Lookahead messages of priority p pulled ahead.
func (e *engine) puller(ctx context.Context, p reelq.Priority) {
	cons := e.cons[p]
	rank := p.Rank()
	look := int64(e.w.cfg.Lookahead)
	errBackoff := backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0))
	lim := e.w.cfg.Limits
	for ctx.Err() == nil {
		room := look - e.pulled[rank].Load()
		if room <= 0 {
			select {
			case <-ctx.Done():
				return
			case <-e.pullWake[rank]:
			}
			continue
		}
		if e.spillHold.Load() {
			// Handing surplus jobs to idle replicas: no pull of ours may take
			// them back.
			select {
			case <-ctx.Done():
				return
			case <-e.pullWake[rank]:
			}
			continue
		}
		n := int(min(room, 512))
		e.pulled[rank].Add(int64(n))
		fctx, cancel := context.WithTimeout(ctx, e.w.cfg.PullWait)
		batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				j := decodeEnvelope(msg, e.name, lim, e.rt.Provider)
				e.startDelivery(j)
				if j.bad == nil && j.invalid == nil {
					j.est = e.estimate(j)
				}
				if j.bad == nil && j.env.Batch != "" {
					e.index.add(j.env.Batch, j.id)
				}
				e.post(evMsg{j: j})
			}
			err = batch.Error()
		}
		cancel()
		e.pulled[rank].Add(int64(got - n))
		if err != nil && got == 0 {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
				errBackoff.Reset()
				continue
			}
			d := errBackoff.NextBackOff()
			e.log.WarnContext(ctx, "pull failed", "priority", string(p), "err", err, "retry_in", d)
			if !sleepCtx(ctx, d) {
				return
			}
			continue
		}
		errBackoff.Reset()
	}
}

// slotManager does the slot pool's I/O for the loop: it advertises the
// engine's demand, acquires slots when there is demand, and releases the
// slots the loop gave back. It reads the pool's version before anything
// else, so a change during a pass (a slot freed after TryAcquire found
// none) brings it round again instead of being slept through.
func (e *engine) slotManager(ctx context.Context) {
	held := 0
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		seen := e.pool.Version()
		held = e.manageSlots(ctx, held, retry)
		select {
		case <-ctx.Done():
			return
		case <-e.slotWake:
		case <-e.pool.Changed(seen):
		case <-retry.C:
		}
	}
}

// manageSlots is one pass of the slot manager; held is what the loop was
// told it holds, before and after.
func (e *engine) manageSlots(ctx context.Context, held int, retry *time.Timer) int {
	if n := int(e.toFree.Swap(0)); n > 0 {
		if err := e.pool.Release(ctx, n); err != nil && ctx.Err() == nil {
			e.log.Warn("releasing slots failed; they expire with the lease", "n", n, "err", err)
		}
		held -= n
	}
	switch d := held - e.pool.Held(); {
	case d > 0:
		held -= d
		e.post(evLost{n: d})
	case d < 0 && int(e.toFree.Load()) == 0:
		// The pool holds slots this engine was not told about (a
		// release it answered as failed that the server applied
		// later, say): use them rather than hold them idle.
		held -= d
		e.post(evGranted{n: -d})
	}
	if e.spillAsk.Swap(false) {
		e.post(evSpill{waiting: e.othersWaiting(ctx)})
	}
	want, top := int(e.want.Load()), int(e.top.Load())
	if err := e.pool.SetDemand(ctx, want, top); err != nil && ctx.Err() == nil {
		e.log.Debug("advertising slot demand failed", "err", err)
	}
	if need := want - held; need > 0 {
		g, err := e.pool.TryAcquire(ctx, need, top)
		if err != nil && ctx.Err() == nil {
			e.log.Warn("acquiring slots failed; retrying", "err", err)
			retry.Reset(time.Second)
		}
		if g > 0 {
			held += g
			e.post(evGranted{n: g})
		}
	}
	return held
}

// othersWaiting counts pull requests open on the provider's consumers:
// this replica has none open while it spills, so they are other
// replicas', waiting for work.
func (e *engine) othersWaiting(ctx context.Context) int {
	n := 0
	for _, c := range e.cons {
		info, err := c.Info(ctx)
		if err != nil {
			continue
		}
		n += info.NumWaiting
	}
	return n
}

// task is one step of one job for the executors.
type task struct {
	j    *job
	step func(*engine, context.Context, *job) outcome
}

// runQueue is the executors' FIFO of steps: unbounded, so the loop never
// blocks handing work out.
type runQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	q      []task
	head   int
	closed bool
}

func newRunQueue() *runQueue {
	r := &runQueue{}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *runQueue) push(t task) {
	r.mu.Lock()
	r.q = append(r.q, t)
	r.mu.Unlock()
	r.cond.Signal()
}

func (r *runQueue) pop() (task, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.head == len(r.q) && !r.closed {
		r.cond.Wait()
	}
	if r.head == len(r.q) {
		return task{}, false
	}
	t := r.q[r.head]
	r.q[r.head] = task{}
	r.head++
	if r.head > 1024 && r.head*2 >= len(r.q) {
		r.q = append(r.q[:0:0], r.q[r.head:]...)
		r.head = 0
	}
	return t, true
}

// close wakes the executors; they finish the queued steps, then return.
func (r *runQueue) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cond.Broadcast()
}
