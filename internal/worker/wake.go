package worker

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq/internal/wire"
)

// wakeGap is the shortest time between two polls of a job that a wake
// asks for: duplicate callbacks (a provider's retries, a replay within
// the signature's window) cost at most one extra poll per gap.
const wakeGap = time.Second

// evWake is a callback's wake-up for job id (see wake).
type evWake struct{ id string }

// wake makes the jobs named id poll now. A callback changes nothing by
// itself: the poll (rate-limited, validated) decides. A job waiting for
// its next poll polls now, or wakeGap after its last poll began; one
// whose poll is due already coalesces the wake into it; any other (a
// step runs: the submit, or a poll that may have read the task before it
// finished) is marked woken, and done polls it as soon as its step asks
// for a poll.
func (e *engine) wake(id string) {
	for j := range e.withID(id) {
		if j.sched != schedPolling {
			j.woken = true
			continue
		}
		if at := wakeAt(j, time.Now()); at.Before(j.due.time()) {
			e.timers.schedule(j, at)
		}
	}
}

// wakeAt is when a wake polls j: now, or wakeGap after its last poll
// began.
func wakeAt(j *job, now time.Time) time.Time {
	if at := j.polledAt.time().Add(wakeGap); at.After(now) {
		return at
	}
	return now
}

// subscribeWakes subscribes to the wakes of every provider with callbacks
// on, each posted to its engine; unsubscribe ends them.
func (w *Worker) subscribeWakes() (unsubscribe func(), err error) {
	var subs []*nats.Subscription
	unsubscribe = func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	for name, rt := range w.rts {
		if rt.CallbackURL == nil {
			continue
		}
		prefix := strings.TrimSuffix(wire.WakeFilter(name), "*")
		sub, err := w.nc.Subscribe(wire.WakeFilter(name), func(m *nats.Msg) {
			w.mu.Lock()
			e := w.engines[name]
			w.mu.Unlock()
			if e != nil {
				e.post(evWake{id: strings.TrimPrefix(m.Subject, prefix)})
			}
		})
		if err != nil {
			unsubscribe()
			return nil, err
		}
		subs = append(subs, sub)
	}
	return unsubscribe, nil
}
