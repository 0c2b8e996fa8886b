package dashboard

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
)

// viewKey names what one live page shows: the overview, a batch, a job,
// the job list, the workers, the charts or the dead letters.
type viewKey struct{ kind, arg string }

const (
	viewOverview = "overview"
	viewBatch    = "batch"
	viewJob      = "job"
	viewJobs     = "jobs"
	viewDLQ      = "dlq"
	viewWorkers  = "workers"
	viewActivity = "activity"
)

// sub is one live page (a server-sent events connection): ch receives a
// signal when something it shows may have changed.
type sub struct {
	key viewKey
	ch  chan struct{}
}

// hub follows what changes (EVENTS, RESULTS, the counters, the slots held
// at the providers, the job state of the jobs being looked at) and tells the live pages that show it. It
// keeps no copy of the state: pages read what they show again when told.
type hub struct {
	c   *reelq.Client
	i   *inspect.Inspector
	r   *reads
	nc  *nats.Conn
	log *slog.Logger

	base context.Context // ends when Run returns
	wg   sync.WaitGroup  // every goroutine the hub starts

	mu      sync.Mutex
	closed  bool
	subs    map[*sub]struct{}
	gens    map[viewKey]uint64
	jobs    map[string]*jobWatch
	submits map[string]*window
	batches map[string]*window
}

// jobWatch is the job-state watch of a job some page looks at.
type jobWatch struct {
	refs   int
	cancel context.CancelFunc
}

func newHub(c *reelq.Client, i *inspect.Inspector, r *reads, nc *nats.Conn, log *slog.Logger) *hub {
	return &hub{c: c, i: i, r: r, nc: nc, log: log, subs: map[*sub]struct{}{}, gens: map[viewKey]uint64{}, jobs: map[string]*jobWatch{},
		submits: map[string]*window{}, batches: map[string]*window{}}
}

// run follows the streams until ctx ends, then waits for every goroutine
// the hub started (job watches included).
func (h *hub) run(ctx context.Context) error {
	h.mu.Lock()
	h.base = ctx
	h.mu.Unlock()
	var resSeq uint64
	evSeq, err := h.i.EventsSeq(ctx)
	if err == nil {
		resSeq, err = h.c.ResultsSeq(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	h.goFollow(ctx, "events", func(ctx context.Context) error {
		after := evSeq
		evSeq = 0 // a restart follows from then on (every page reads again)
		for e, err := range h.i.FollowEvents(ctx, after) {
			if err != nil {
				return err
			}
			h.onEvent(e)
		}
		return nil
	})
	h.goFollow(ctx, "results", func(ctx context.Context) error {
		after := resSeq
		resSeq = 0
		for d, err := range h.c.Results(ctx, reelq.ResultsOptions{After: after, Follow: true, FromNow: after == 0}) {
			if err != nil {
				return err
			}
			h.onResult(d.Result)
		}
		return nil
	})
	h.goFollow(ctx, "counters", func(ctx context.Context) error {
		for u, err := range h.r.followCounters(ctx) {
			if err != nil {
				return err
			}
			h.onCounter(u)
		}
		return nil
	})
	h.goFollow(ctx, "slots", func(ctx context.Context) error {
		for _, err := range h.r.followSlots(ctx) {
			if err != nil {
				return err
			}
			h.notify(func(k viewKey) bool { return k.kind == viewOverview })
		}
		return nil
	})
	// The workers' records: a plain subscription wakes the pages, which
	// read the records by direct get.
	beats, err := h.nc.Subscribe("workers.*", func(*nats.Msg) {
		h.notify(func(k viewKey) bool { return k.kind == viewWorkers || k.kind == viewActivity })
	})
	if err != nil {
		h.log.Warn("dashboard: following the workers' records", "err", err)
	}
	<-ctx.Done()
	if beats != nil {
		_ = beats.Unsubscribe()
	}
	h.mu.Lock()
	h.closed = true // no job watch starts after this
	h.mu.Unlock()
	h.wg.Wait()
	return nil
}

// goFollow runs f until ctx ends, starting it again (after a pause that
// grows to 10s) when it fails, so a NATS outage heals on its own.
func (h *hub) goFollow(ctx context.Context, what string, f func(context.Context) error) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		wait := 250 * time.Millisecond
		for ctx.Err() == nil {
			err := f(ctx)
			if ctx.Err() != nil {
				return
			}
			h.log.Warn("dashboard: live feed stopped; following again", "feed", what, "err", err, "retry_in", wait)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(2*wait, 10*time.Second)
			// Whatever changed meanwhile: every page reads again.
			h.notify(func(viewKey) bool { return true })
		}
	}()
}

func (h *hub) onEvent(e *reelq.Event) {
	if e.Kind == reelq.EventSubmitted {
		h.mu.Lock()
		w := h.submits[e.Provider]
		if w == nil {
			w = &window{}
			h.submits[e.Provider] = w
		}
		w.add(time.Now())
		h.mu.Unlock()
	}
	h.notify(func(k viewKey) bool {
		switch k.kind {
		case viewOverview:
			return true
		case viewJobs:
			return e.JobID != ""
		case viewBatch:
			return e.Batch != "" && e.Batch == k.arg
		case viewJob:
			return e.JobID != "" && e.JobID == k.arg
		case viewDLQ:
			return e.Kind == reelq.EventDeadLettered
		}
		return false
	})
}

func (h *hub) onResult(r *reelq.Result) {
	h.mu.Lock()
	if r.Batch != "" {
		w := h.batches[r.Batch]
		if w == nil {
			w = &window{}
			h.batches[r.Batch] = w
		}
		w.add(time.Now())
	}
	h.mu.Unlock()
	h.notify(func(k viewKey) bool {
		switch k.kind {
		case viewOverview, viewJobs:
			return true
		case viewBatch:
			return r.Batch != "" && r.Batch == k.arg
		case viewJob:
			return r.ID == k.arg
		}
		return false
	})
}

func (h *hub) onCounter(u counterUpdate) {
	h.notify(func(k viewKey) bool {
		return k.kind == viewOverview || (k.kind == viewBatch && u.Batch != "" && u.Batch == k.arg)
	})
}

// notify signals the pages whose view match says may have changed.
func (h *hub) notify(match func(viewKey) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if match(s.key) {
			h.gens[s.key]++
			select {
			case s.ch <- struct{}{}:
			default: // already signalled
			}
		}
	}
}

// gen is the number of changes signalled for key so far.
func (h *hub) gen(key viewKey) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gens[key]
}

// subscribe registers a live page; a job page also starts (or shares) a
// watch of that job's state. The caller calls the returned function when
// the page goes away; it reports whether that was the view's last page.
func (h *hub) subscribe(key viewKey) (*sub, func() bool) {
	s := &sub{key: key, ch: make(chan struct{}, 1)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	if key.kind == viewJob && h.base != nil && !h.closed {
		jw := h.jobs[key.arg]
		if jw == nil {
			ctx, cancel := context.WithCancel(h.base)
			jw = &jobWatch{cancel: cancel}
			h.jobs[key.arg] = jw
			h.watchJob(ctx, key.arg)
		}
		jw.refs++
	}
	h.mu.Unlock()
	return s, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.subs, s)
		if jw := h.jobs[key.arg]; key.kind == viewJob && jw != nil {
			if jw.refs--; jw.refs == 0 {
				jw.cancel()
				delete(h.jobs, key.arg)
			}
		}
		for o := range h.subs {
			if o.key == key {
				return false
			}
		}
		return true
	}
}

// watchJob follows job id's state (called with h.mu held).
func (h *hub) watchJob(ctx context.Context, id string) {
	h.goFollow(ctx, "job "+id, func(ctx context.Context) error {
		// The first state is the one the page was drawn from (or a newer
		// one): the page asks again and gets only what changed.
		for _, err := range h.r.watchJob(ctx, id) {
			if err != nil {
				return err
			}
			h.notify(func(k viewKey) bool { return k.kind == viewJob && k.arg == id })
		}
		return nil
	})
}

// submitRate is provider's submissions per minute over the last minute
// this dashboard saw.
func (h *hub) submitRate(provider string) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.submits[provider].perMinute(time.Now())
}

// batchRate is batch's results per minute over the last minute.
func (h *hub) batchRate(batch string) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.batches[batch].perMinute(time.Now())
}

// window counts things that happened in the last minute.
type window struct{ ts []time.Time }

const windowSpan = time.Minute

func (w *window) add(t time.Time) {
	w.trim(t)
	if len(w.ts) < 100_000 {
		w.ts = append(w.ts, t)
	}
}

func (w *window) trim(now time.Time) {
	i := 0
	for i < len(w.ts) && now.Sub(w.ts[i]) > windowSpan {
		i++
	}
	w.ts = w.ts[i:]
}

func (w *window) perMinute(now time.Time) float64 {
	if w == nil {
		return 0
	}
	w.trim(now)
	return float64(len(w.ts)) * float64(time.Minute) / float64(windowSpan)
}
