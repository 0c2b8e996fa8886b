package worker

import (
	"context"
	"time"

	"github.com/reelq/reelq/internal/slots"
)

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
	e.running--
	e.keyEnded(j)
	if e.waitq.len() > 0 && e.pool.Yield(e.waitq.top()) {
		e.releaseSlots(1)
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
