package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/samsar"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/slots"
	"github.com/reelq/reelq/internal/wire"
)

// loopHarness runs one engine's loop on its own, on a real Worker against
// a real JetStream server (jobs, budgets, events), without pullers or
// executors: the test plays them. It hands the loop jobs it pulled itself
// and takes the steps the loop starts instead of running them, so the
// loop's decisions can be checked one event at a time. Its slot manager
// grants every slot the loop asks for (a cluster with room).
type loopHarness struct {
	t       *testing.T
	w       *Worker
	e       *engine
	js      jetstream.JetStream
	budgets jetstream.KeyValue
	paused  *nats.Subscription // the budget-paused events the loop publishes
	tasks   chan task
	taken   map[*job]bool      // steps the test took and has not finished
	stop    context.CancelFunc // ends intake: the loop drains and returns
}

// harnessPool is the engine's slot pool in a loopHarness: the harness
// grants slots itself, so only the calls the loop makes matter.
// keyWeights, when set, runs on the loop's goroutine at the top of each
// pass (publishKeys): a test makes a change there that lands after the
// loop's last decision and before it sleeps again.
type harnessPool struct {
	keyWeights atomic.Pointer[func()]
}

func (p *harnessPool) Run(ctx context.Context) error                     { <-ctx.Done(); return nil }
func (p *harnessPool) TryAcquire(context.Context, int, int) (int, error) { return 0, nil }
func (p *harnessPool) Release(context.Context, int) error                { return nil }
func (p *harnessPool) Held() int                                         { return 0 }
func (p *harnessPool) SetDemand(context.Context, int, int) error         { return nil }
func (p *harnessPool) Yield(int) bool                                    { return false }
func (p *harnessPool) Version() uint64                                   { return 0 }
func (p *harnessPool) Changed(uint64) <-chan struct{}                    { return nil }
func (p *harnessPool) SetKeys([]string)                                  {}
func (p *harnessPool) KeyWeights() map[string]float64 {
	if f := p.keyWeights.Swap(nil); f != nil {
		(*f)()
	}
	return nil
}

func newLoopHarness(t *testing.T, pool slotPool) *loopHarness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, js := natstest.Connect(t, natstest.Server(t))
	natstest.Setup(t, js)
	rt := &Runtime{
		Provider: samsar.New(providers.Config{BaseURL: "http://127.0.0.1:1", APIKey: "unused"}, samsar.Options{}),
		Limiter:  ratelimit.New(ratelimit.NewMemStore(), "samsar", ratelimit.Config{Rate: 1, Burst: 1}),
	}
	// AckWait an hour: no heartbeat during a test.
	w, err := New(ctx, nc, js, Config{WorkerID: "harness", AckWait: time.Hour}, map[string]*Runtime{"samsar": rt})
	if err != nil {
		t.Fatal(err)
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchStopped, err := w.budgets.watch(watchCtx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := queue.EnsureConsumers(ctx, js, "samsar", queue.ConsumerSettings{AckWait: time.Hour, Cap: 1})
	if err != nil {
		t.Fatal(err)
	}
	budgets, err := js.KeyValue(ctx, wire.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	paused, err := nc.SubscribeSync("events.samsar." + reelq.EventBudgetPaused)
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(w, "samsar", rt, cons, pool)
	w.engines["samsar"] = e
	intake, stop := context.WithCancel(context.Background())
	e.intake = intake
	h := &loopHarness{t: t, w: w, e: e, js: js, budgets: budgets, paused: paused,
		tasks: make(chan task, 64), taken: map[*job]bool{}, stop: stop}
	loopDone, execDone, grantsDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(loopDone)
		e.loop(intake)
	}()
	grants, stopGrants := context.WithCancel(context.Background())
	go func() { // the slot manager, with every slot free
		defer close(grantsDone)
		held := 0
		for {
			select {
			case <-grants.Done():
				return
			case <-e.slotWake:
			}
			held -= int(e.toFree.Swap(0))
			if want := int(e.want.Load()); want > held {
				e.post(evGranted{n: want - held})
				held = want
			}
		}
	}()
	go func() { // the executors: steps go to the test
		defer close(execDone)
		for {
			tk, ok := e.runq.pop()
			if !ok {
				return
			}
			h.tasks <- tk
		}
	}()
	t.Cleanup(func() {
		stop()
		// Steps the test did not finish end without touching their
		// messages, so the loop can settle everything and return.
		for j := range h.taken {
			e.post(evDone{j: j, out: abandon()})
		}
		for {
			select {
			case tk := <-h.tasks:
				e.post(evDone{j: tk.j, out: abandon()})
				continue
			case <-loopDone:
			}
			break
		}
		e.runq.close()
		<-execDone
		stopGrants()
		<-grantsDone
		stopWatch()
		<-watchStopped
	})
	return h
}

// pull publishes the samsar jobs ids (batch "b", 50 credits each) to JOBS
// and takes them from the normal consumer as the puller would.
func (h *loopHarness) pull(ids ...string) []*job {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range ids {
		data, _ := json.Marshal(reelq.Job{ID: id, Provider: "samsar", Batch: "b",
			Input: []byte(`{"prompt":"a lighthouse at dusk","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)})
		if _, err := h.js.Publish(ctx, wire.JobSubject("samsar", "", id), data); err != nil {
			h.t.Fatal(err)
		}
	}
	batch, err := h.e.cons[reelq.Normal].Fetch(len(ids), jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*job
	for msg := range batch.Messages() {
		j := decodeEnvelope(msg, "samsar", h.w.cfg.Limits, h.e.rt.Provider)
		if j.bad() != nil || j.invalid() != nil {
			h.t.Fatalf("job %s: %v %v", j.id, j.bad(), j.invalid())
		}
		j.est = h.e.estimate(j)
		h.e.pulled[j.priority().Rank()].Add(1)
		out = append(out, j)
	}
	if len(out) != len(ids) {
		h.t.Fatalf("pulled %d of %d jobs: %v", len(out), len(ids), batch.Error())
	}
	return out
}

// setBatchBudget sets batch b's limit and waits until the worker's view
// has it.
func (h *loopHarness) setBatchBudget(amount float64) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "b", Amount: amount, Unit: "credits"}
	data, _ := json.Marshal(l)
	if _, err := h.budgets.Put(ctx, wire.BudgetLimitKey(reelq.ScopeBatch, "b"), data); err != nil {
		h.t.Fatal(err)
	}
	est := &reelq.Cost{Amount: 1, Unit: "credits"}
	for {
		sc, seen := h.w.budgets.scopes("samsar", "b", est)
		if len(sc) == 1 && sc[0].limit.Amount == amount {
			return
		}
		select {
		case <-h.w.budgets.changed(seen):
		case <-ctx.Done():
			h.t.Fatalf("the worker's view never had batch b's limit %v", amount)
		}
	}
}

// finish reports the outcome of a step the test took.
func (h *loopHarness) finish(tk task, out outcome) {
	delete(h.taken, tk.j)
	h.e.post(evDone{j: tk.j, out: out})
}

// nextTask returns the next step the loop started; the test finishes it,
// or the harness does when the test ends.
func (h *loopHarness) nextTask(what string) task {
	h.t.Helper()
	select {
	case tk := <-h.tasks:
		h.taken[tk.j] = true
		return tk
	case <-time.After(30 * time.Second):
		h.t.Fatalf("the loop started no step: %s", what)
		return task{}
	}
}

// A budget raised after the loop parked a job, but before the loop went to
// sleep again, unparks the job. The loop used to take the budget's change
// channel when it went to sleep, after its decision: a raise in between
// was never seen, and the job stayed parked until some later change
// (TestProviderBudgetPausesProvider waited 30 s for one under load).
func TestRaiseBeforeTheLoopSleepsUnparks(t *testing.T) {
	t.Parallel()
	pool := &harnessPool{}
	h := newLoopHarness(t, pool)
	h.setBatchBudget(10) // below one job's 50 credits
	jobs := h.pull("parked")
	h.e.post(evMsg{j: jobs[0]})

	// Once the job is parked, the loop's next pass raises the budget
	// before it sleeps.
	raised := make(chan struct{})
	raise := func() {
		defer close(raised)
		h.setBatchBudget(100)
	}
	h.waitParked()
	pool.keyWeights.Store(&raise)
	h.e.post(evGranted{n: 0}) // a pass of the loop (granting nothing)
	<-raised
	if tk := h.nextTask("the parked job after the raise"); tk.j != jobs[0] {
		t.Fatalf("started %s, want the parked job", tk.j.id)
	}
}

// A step that found no room in a budget parks its job; a raise made
// between the step's read of the budget and the loop's handling of its
// outcome unparks the job at once (the outcome carries the version of the
// view the step read).
func TestRaiseDuringAStepThatParksUnparks(t *testing.T) {
	t.Parallel()
	h := newLoopHarness(t, &harnessPool{})
	h.setBatchBudget(100)
	jobs := h.pull("stepped")
	h.e.post(evMsg{j: jobs[0]})
	first := h.nextTask("the job fits")

	// The step: the budget was lowered since dispatch; its reservation
	// finds no room, and it parks the job.
	h.setBatchBudget(10)
	sc, out := h.e.reserveFor(context.Background(), first.j, "stepped-token", 0)
	if sc != nil || out == nil || out.kind != outPark {
		t.Fatalf("reserveFor with no room = %v, %+v; want a park", sc, out)
	}
	h.setBatchBudget(100) // raised before the loop sees the outcome
	h.finish(first, *out)
	if tk := h.nextTask("the parked job after the raise"); tk.j != jobs[0] {
		t.Fatalf("started %s, want the parked job", tk.j.id)
	}
}

// A pause that ends (the gate opens) unparks the jobs parked for a budget:
// a provider budget's period rolling over ends its pause without changing
// any budget key.
func TestGateOpeningUnparks(t *testing.T) {
	t.Parallel()
	h := newLoopHarness(t, &harnessPool{})
	h.setBatchBudget(10)
	jobs := h.pull("rollover")
	h.e.post(evMsg{j: jobs[0]})
	h.waitParked()
	h.e.post(evGate{g: gateState{mode: gateClosed}})
	// The room is there now, unseen by any change of the view: only the
	// gate tells the loop.
	h.w.budgets.mu.Lock()
	h.w.budgets.limits[wire.BudgetLimitKey(reelq.ScopeBatch, "b")] = reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "b", Amount: 100, Unit: "credits"}
	h.w.budgets.mu.Unlock()
	h.e.post(evGate{g: gateState{mode: gateOpen}})
	if tk := h.nextTask("the parked job after the gate opened"); tk.j != jobs[0] {
		t.Fatalf("started %s, want the parked job", tk.j.id)
	}
}

// waitParked waits until the loop has parked a job for batch b's budget:
// it publishes the batch's budget-paused event once the job is parked.
func (h *loopHarness) waitParked() {
	h.t.Helper()
	if _, err := h.paused.NextMsg(30 * time.Second); err != nil {
		h.t.Fatalf("no job was parked: %v", err)
	}
}

// Once an engine's loop has returned, posting to it does not block: a
// mass cancel arriving while another provider's engine finishes a long
// shutdown used to fill this engine's events buffer and block the cancel
// watch, and then Run.
func TestPostAfterTheLoopEnded(t *testing.T) {
	t.Parallel()
	h := newLoopHarness(t, &harnessPool{})
	h.stop()
	select {
	case <-h.e.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not return after intake ended")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2 * cap(h.e.events) {
			h.w.onCancel(fmt.Sprintf("job-%d", i), "samsar")
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d cancel requests posted to an engine whose loop ended did not return", 2*cap(h.e.events))
	}
}

// slotsGate is the engine's slot pool in TestSlotFreedAfterTryAcquire: a
// real slots.Pool whose first TryAcquire that gets nothing runs between
// before returning, so a slot is freed after the pool refused one and
// before the slot manager sleeps.
type slotsGate struct {
	*slots.Pool
	between atomic.Pointer[func()]
}

func (p *slotsGate) TryAcquire(ctx context.Context, k, top int) (int, error) {
	n, err := p.Pool.TryAcquire(ctx, k, top)
	if n == 0 && err == nil {
		if f := p.between.Swap(nil); f != nil {
			(*f)()
		}
	}
	return n, err
}

// A slot freed after the slot manager's TryAcquire found none, and before
// it sleeps, is acquired at once. The slot manager used to take the pool's
// change channel after TryAcquire, so it slept through that change until
// the next one (a lease renewal, TTL/4 later).
func TestSlotFreedAfterTryAcquire(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, js := natstest.Connect(t, natstest.Server(t))
	natstest.Setup(t, js)
	kv, err := js.KeyValue(ctx, queue.BucketSlots)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 2 * time.Minute // no renewal wakes anyone during the test
	other := slots.New(kv, slots.Config{Provider: "samsar", Worker: "other", Cap: 1, TTL: ttl})
	mine := &slotsGate{Pool: slots.New(kv, slots.Config{Provider: "samsar", Worker: "mine", Cap: 1, TTL: ttl})}
	runCtx, stopPools := context.WithCancel(context.Background())
	pools := make(chan error, 2)
	for _, p := range []*slots.Pool{other, mine.Pool} {
		go func() { pools <- p.Run(runCtx) }()
	}
	defer func() {
		stopPools()
		<-pools
		<-pools
	}()
	if n, err := other.TryAcquire(ctx, 1, slots.PriorityNormal); n != 1 || err != nil {
		t.Fatalf("other's TryAcquire = %d, %v", n, err)
	}
	// mine advertises its demand up front, so the slot manager's pass
	// writes nothing that would wake it by itself.
	if err := mine.SetDemand(ctx, 1, slots.PriorityNormal); err != nil {
		t.Fatal(err)
	}
	advertised := func() bool {
		a := mine.Snapshot()
		for _, h := range a.Holders {
			if h.Worker == mine.Holder() && h.Want == 1 {
				return a.Free == 0
			}
		}
		return false
	}
	for !advertised() {
		select {
		case <-mine.Changed(mine.Version()):
		case <-ctx.Done():
			t.Fatalf("mine's demand never showed; allocation %+v", mine.Snapshot())
		}
	}
	between := func() {
		seen := mine.Version()
		if err := other.Release(ctx, 1); err != nil {
			t.Error(err)
		}
		for mine.Snapshot().Free != 1 {
			select {
			case <-mine.Changed(seen):
				seen = mine.Version()
			case <-ctx.Done():
				t.Errorf("mine never saw the slot freed; allocation %+v", mine.Snapshot())
				return
			}
		}
	}
	mine.between.Store(&between)

	w := &Worker{log: slog.New(slog.DiscardHandler), cfg: Config{WorkerID: "mine"}, nc: nc}
	e := newEngine(w, "samsar", &Runtime{Provider: samsar.New(providers.Config{BaseURL: "http://127.0.0.1:1"}, samsar.Options{}), Slots: 1}, nil, mine)
	e.want.Store(1)
	e.top.Store(slots.PriorityNormal)
	mgrCtx, stopMgr := context.WithCancel(context.Background())
	mgrDone := make(chan struct{})
	go func() {
		defer close(mgrDone)
		e.slotManager(mgrCtx)
	}()
	defer func() {
		stopMgr()
		<-mgrDone
	}()
	for {
		select {
		case ev := <-e.events:
			if g, ok := ev.(evGranted); ok && g.n == 1 {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the slot freed after TryAcquire was not acquired; allocation %+v", mine.Snapshot())
		}
	}
}
