package worker

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
)

// checkSpill enters or leaves the spilling state: this replica runs as
// many jobs as its own slots allow (P_SLOTS) and the cluster has free
// slots it cannot use. It then pulls no more, so the jobs it could not
// start go to replicas that can (a full replica that kept pulling would
// take them, and hand them back and forth with another), and it hands
// back every job it holds waiting, however few: a slot frees only when a
// running job ends, which for long jobs may be hours.
func (e *engine) checkSpill() {
	candidate := !e.draining.Load() && e.gate.mode == gateOpen && e.running >= e.localSlots() &&
		e.slots >= e.localSlots() && e.freeSlots() > 0
	if !candidate {
		if e.spillHold.Swap(false) {
			for i := range e.pullWake {
				e.wakePuller(i)
			}
		}
		return
	}
	e.spillHold.Store(true)
	if e.waitq.len() > 0 && time.Since(e.lastSpill) > time.Second && !e.spillAsk.Load() {
		e.spillAsk.Store(true)
		e.wakeSlots()
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
	n := 0
	for limit := max(e.freeSlots(), 1) * 2; n < limit; n++ {
		j := e.waitq.popSurplus()
		if j == nil {
			break
		}
		e.settle(j, nak(0))
	}
	if n > 0 {
		e.log.Info("handed surplus jobs to idle replicas", "jobs", n, "free_slots", e.freeSlots())
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
				if j.bad() == nil && j.invalid() == nil {
					j.est = e.estimate(j)
				}
				if j.bad() == nil && j.env.Batch != "" {
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
