package worker

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/heartbeat"
	"github.com/reelq/reelq/internal/queue"
)

// beat keeps what this replica did since its last heartbeat record and
// publishes the record every heartbeat.Interval (see package heartbeat).
type beat struct {
	w       *Worker
	started time.Time

	mu    sync.Mutex
	since time.Time
	tally map[string]*heartbeat.Provider
}

func newBeat(w *Worker) *beat {
	now := time.Now().UTC()
	return &beat{w: w, started: now, since: now, tally: map[string]*heartbeat.Provider{}}
}

func (b *beat) of(provider string) *heartbeat.Provider {
	p := b.tally[provider]
	if p == nil {
		p = &heartbeat.Provider{}
		b.tally[provider] = p
	}
	return p
}

// submitted counts an accepted paid submission.
func (b *beat) submitted(provider string) {
	b.mu.Lock()
	b.of(provider).Submits++
	b.mu.Unlock()
}

// finished counts a published result and its cost.
func (b *beat) finished(res *reelq.Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.of(res.Provider)
	switch res.Status {
	case reelq.StatusSucceeded:
		p.Succeeded++
	case reelq.StatusFailed:
		p.Failed++
	case reelq.StatusCancelled:
		p.Cancelled++
	}
	if c := res.Cost; c != nil && c.Amount > 0 && c.Unit != "" {
		if p.Spent == nil {
			p.Spent = map[string]float64{}
		}
		p.Spent[c.Unit] += c.Amount
	}
}

// run publishes a record every interval until ctx ends, then a last one
// saying the replica stops.
func (b *beat) run(ctx context.Context) {
	t := time.NewTicker(b.w.cfg.HeartbeatEvery)
	defer t.Stop()
	b.publish(ctx, false)
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			b.publish(sctx, true)
			cancel()
			return
		case <-t.C:
			b.publish(ctx, false)
		}
	}
}

func (b *beat) publish(ctx context.Context, stopping bool) {
	rec := b.record(ctx, stopping)
	data, err := json.Marshal(rec)
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := b.w.js.Publish(pctx, heartbeat.Subject(b.w.cfg.WorkerID), data); err != nil {
		b.w.log.Debug("heartbeat not published", "err", err)
	}
}

// record takes the counts since the last record and reads the engines'
// figures and the queues.
func (b *beat) record(ctx context.Context, stopping bool) heartbeat.Record {
	now := time.Now().UTC()
	b.mu.Lock()
	tally, since := b.tally, b.since
	b.tally, b.since = map[string]*heartbeat.Provider{}, now
	b.mu.Unlock()
	rec := heartbeat.Record{Worker: b.w.cfg.WorkerID, Version: buildinfo.Version(), Started: b.started, At: now, Since: since,
		EveryMS: b.w.cfg.HeartbeatEvery.Milliseconds(), Stopping: stopping, Providers: map[string]heartbeat.Provider{}}
	b.w.mu.Lock()
	engines := make(map[string]*engine, len(b.w.engines))
	for name, e := range b.w.engines {
		engines[name] = e
	}
	b.w.mu.Unlock()
	for name, rt := range b.w.rts {
		p := heartbeat.Provider{Limit: rt.Slots, Queued: b.queued(ctx, name)}
		if t := tally[name]; t != nil {
			p.Submits, p.Succeeded, p.Failed, p.Cancelled, p.Spent = t.Submits, t.Succeeded, t.Failed, t.Cancelled, t.Spent
		}
		if e := engines[name]; e != nil {
			p.Slots, p.Running, p.Waiting = int(e.slotsN.Load()), int(e.runningN.Load()), int(e.waitingN.Load())
		}
		rec.Providers[name] = p
	}
	return rec
}

// queued is how many of provider's jobs wait in JOBS, or -1.
func (b *beat) queued(ctx context.Context, provider string) int64 {
	var n int64
	for _, name := range queue.ConsumerNames(provider) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := b.w.js.Consumer(cctx, queue.StreamJobs, name) // reads its info
		cancel()
		if err != nil {
			return -1
		}
		n += int64(c.CachedInfo().NumPending)
	}
	return n
}
