package worker

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/reelq/reelq"
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

	// Shared with the pullers: per priority rank, the messages a puller
	// is fetching or has posted plus the jobs whose state holds a
	// lookahead place (sched.pulledAhead; move keeps the count), and a
	// wake-up per puller.
	pulled   [4]atomic.Int64
	pullWake [4]chan struct{}

	// Shared with the slot manager.
	slotWake chan struct{}
	want     atomic.Int64
	top      atomic.Int64
	toFree   atomic.Int64

	// estimates holds one copy of each estimate (reelq.Cost → *reelq.Cost;
	// see estimate).
	estimates  sync.Map
	estimatesN atomic.Int64

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
	byID       map[string]*job   // the first message held of each job (see addID)
	moreByID   map[string][]*job // the others, rare
	parked     []*job            // the jobs in schedParked: waiting for a budget to allow them
	parkedAt   uint64            // the oldest budget view a parked job was refused at
	waitq      *waitQueue
	timers     timerHeap
	slots      int // slots granted to this engine and not released
	running    int // jobs holding a slot (sched.holdsSlot; move keeps the count)
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
		byID:     map[string]*job{},
		moreByID: map[string][]*job{},
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
	case evWake:
		e.wake(ev.id)
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
