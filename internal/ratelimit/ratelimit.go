// Package ratelimit is a cluster-wide request rate limiter: every worker
// replica that calls one paid provider account draws from one budget, kept
// in a shared [Store] (a JetStream KV bucket in production, see [KVStore]).
//
// # Algorithm
//
// GCRA (the generic cell rate algorithm). The only shared state is the
// theoretical arrival time TAT, stored as JSON {"tat": <unix ns>} under one
// key. With interval T = 1/Rate and tolerance τ = (Burst-1)·T, a request at
// time now is allowed when max(TAT, now) - τ <= now, and then TAT becomes
// max(TAT, now) + T. k requests at the same instant are k such steps: the
// largest k with max(TAT, now) + (k-1)·T - τ <= now (at most Burst), after
// which TAT = max(TAT, now) + k·T. Every write is a compare-and-set on the
// key's revision, so concurrent replicas never both apply a step to the same
// TAT. Because each token moves TAT forward by T, any closed window of length
// W holds at most Rate·W + Burst grants, whatever the number of replicas.
//
// Within one process, Wait callers of a Limiter join a FIFO queue. While the
// queue is not empty one goroutine owned by the Limiter (the pump; it exits
// when the queue empties) serves it: it computes k for the queue's length
// from the last state it knows, CASes TAT forward by k·T in one write and
// hands the k tokens to the first k waiters, in order. If no token is due it
// sleeps on one timer until the next one is. The pump keeps the TAT and
// revision it last wrote and CASes against them without reading again; it
// reads the key only when that CAS fails (another replica or a Block wrote)
// or the state is unknown (start, store error). So a process reads the store
// once per CAS it lost, however many goroutines wait: alone on a key, once
// in all; with P replicas all saturating one key, each token costs about P
// CAS attempts and P-1 reads across the replicas. One round trip grants up
// to Burst tokens, so a high rate is not bounded by the store's latency. A
// Limiter notices a reset key (see Failures) at its next CAS, which may be as
// late as the next slot its last known state gives.
//
// A waiter whose ctx ends leaves the queue at once; when the last one
// leaves, the pump's sleep or store call is cancelled and it exits. Tokens
// taken for waiters that left during the CAS, or handed to a waiter as its
// ctx ended, are dropped, not kept for later (they count against the rate;
// see [Stats]).
//
// [Limiter.Block] records a provider's 429 ("retry after until") in the same
// state: TAT = max(TAT, until + τ). The next grant is then no earlier than
// until, only one token is available at until (no burst), queued waiters
// wait past it, and since Block only ever raises TAT the window bound above
// still holds. [Limiter.SetRate] wakes the pump, which applies the new rate
// from the next token on.
//
// # Calls made late
//
// The bound above is on grants; a provider sees calls. A token is good for
// a short while only ([Limiter.TokenTTL]: a quarter of the interval T,
// between 50 ms and 1 s): a CAS whose answer comes back more than that
// later than the pump's usual round trip (a moving average) hands out
// nothing (its tokens count as dropped: a request held across a reconnect
// or a stall), and a caller that could not use its token within that time
// takes another (worker.HTTPClient does). So calls held during an outage
// do not all go out when it ends, and any window of length W sees at most
// Rate·(W + 2·TokenTTL) + Burst calls, give or take the variation of the
// round trip: for T/4 that is Rate·W + Burst + ½, so Rate·W + Burst
// wherever that is a whole number (network jitter aside). At rates above
// 5/s the 50 ms floor, which keeps the ordinary latency of a loaded host
// from costing tokens, adds up to Rate·100 ms. A store that is uniformly
// slow costs nothing: only answers later than usual are dropped.
//
// # Failures
//
// The limiter fails closed: no token is granted without a successful CAS. If
// the store is unavailable (KV bucket missing, no quorum, connection down),
// the pump retries with exponential backoff (100ms to 5s) and logs at most
// one warning every 10s. A CAS whose outcome is unknown (error, timeout)
// grants nothing and makes the pump read the key again. Once store calls
// have failed for UnavailableAfter (10 s by default) the shared state is
// unavailable: the Limiter reports it (Config.OnOutage, [Limiter.Outage]),
// its waiters return [ErrUnavailable] instead of waiting on (a caller
// comes back later; nothing waits forever behind a broken store), and a
// store that can repair itself ([Repairer], as [KVStore.Repairable] does:
// it recreates a missing or unwritable bucket) is asked to. It ends at the
// next store call that works.
//
// The schedule is soft state. When a Limiter that has seen it finds the
// key gone (a bucket recreated, a memory-stored bucket after a server
// restart), it writes the schedule again from the latest TAT it knew or,
// if later, now + τ: as if a whole burst had just been taken, so a lost
// schedule costs no extra burst (provided it was lost at least one
// interval after its last grant, and after any Block it held). A Limiter
// that never saw the key starts it with a burst.
//
// # Clocks
//
// TAT is an absolute time written and compared with each replica's own clock
// (Config.Now), so replicas share the schedule through their clocks: a
// replica whose clock runs s ahead can take a token up to s early. NTP-synced
// hosts (skew of milliseconds) are assumed; keep the skew well below the
// interval 1/Rate. The pump sleeps on the runtime's timers, so Config.Now
// must advance with real time.
package ratelimit

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

const (
	defaultUnavailable = 10 * time.Second
	minTokenTTL        = 50 * time.Millisecond
	maxTokenTTL        = time.Second
	repairTimeout      = 10 * time.Second
	conflictBackoffMin = time.Millisecond      // after the second lost CAS in a row
	conflictBackoffMax = 50 * time.Millisecond // cap under heavy contention
	storeBackoffMin    = 100 * time.Millisecond
	storeBackoffMax    = 5 * time.Second
	maxInterval        = 24 * time.Hour // rates below one per day are clamped
	maxBurst           = 1000
	storeErrLogEvery   = 10 * time.Second
)

// DefaultLinger is the Linger reelq's workers use.
const DefaultLinger = 5 * time.Millisecond

// Config configures a [Limiter].
type Config struct {
	// Rate is the number of requests per second across all replicas, e.g.
	// 2 or 0.5. Zero, negative or NaN grants nothing (the provider is closed)
	// until SetRate sets a positive rate.
	Rate float64
	// Burst is how many requests may go at once after an idle period;
	// values below 1 mean 1, above 1000 mean 1000. Keep it small, but at
	// least 2 if the rate must be met exactly: with Burst 1 every late
	// grant (timer or network latency) shifts the schedule.
	Burst int
	// Linger is how long the longest-waiting caller may be held so that
	// callers arriving meanwhile share its compare-and-set, when more
	// tokens are due than callers wait (a high rate with few callers at a
	// time). It never delays a caller past its slot on the schedule by more
	// than Linger, and changes nothing in the rate. Zero: none.
	Linger time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Logger receives store errors (at most one every 10s) and blocks.
	// Nil discards.
	Logger *slog.Logger
	// UnavailableAfter is how long store calls may keep failing before the
	// shared state counts as unavailable (see Failures in the package
	// documentation). Zero means 10s; negative never.
	UnavailableAfter time.Duration
	// OnOutage, if set, is called when the shared state becomes unavailable
	// (Err set) and when a store call works again after that (Err nil). It
	// is called from the Limiter's goroutines and must not block.
	OnOutage func(Outage)
}

// Outage describes the Limiter's shared state being unavailable.
type Outage struct {
	Key string // the Limiter's key (the provider)
	// Since is when the store calls began to fail.
	Since time.Time
	// Err is the last store error (naming the bucket, for KVStore); nil
	// when the outage has ended.
	Err error
}

// ErrUnavailable is returned by Wait while the shared state is
// unavailable (see Failures in the package documentation).
var ErrUnavailable = errors.New("ratelimit: shared state unavailable")

// Repairer is a Store that can repair itself when its calls keep failing
// (KVStore.Repairable): the Limiter calls Repair after every failed call
// from the second in a row on; since is when the failures began. Repair
// returns nil only when it changed something (the store may work now),
// and decides itself what is worth doing after how long.
type Repairer interface {
	Repair(ctx context.Context, since time.Time) error
}

// Limiter takes tokens from the schedule stored under one key. It is safe for
// concurrent use. Every replica creates one Limiter per key and shares it
// between its goroutines: Limiters on the same key contend like replicas.
type Limiter struct {
	store    Store
	key      string
	now      func() time.Time
	log      *slog.Logger
	errLog   rate.Sometimes
	wake     chan struct{} // SetRate: the pump recomputes at once
	onOutage func(Outage)
	unavail  time.Duration // UnavailableAfter; negative: never

	mu        sync.Mutex
	interval  time.Duration // 0: closed
	tolerance time.Duration
	linger    time.Duration
	queue     list.List          // of *waiter, FIFO
	pumping   bool               // a pump goroutine runs
	stopPump  context.CancelFunc // ends the pump's store calls and sleeps
	known     bool               // tat and rev are the last state seen
	tat       int64
	rev       uint64
	seen      bool  // a stored state was read or written once
	maxTAT    int64 // the latest TAT seen
	rtt       int64 // a moving average of the pump's write round trips, ns
	// The current run of failed store calls (failSince zero: the last
	// call worked); out once it lasted UnavailableAfter. While out, Wait
	// fails at once until retryAt, when the pump tries the store again.
	failSince time.Time
	lastErr   error
	out       bool
	retryAt   time.Time

	reads, writes, conflicts, errs, granted, dropped atomic.Int64
}

type waiter struct {
	ready chan struct{} // closed when the waiter got its token (or err)
	elem  *list.Element // nil once out of the queue
	at    int64         // when it called Wait, unix ns
	err   error         // set before ready is closed: no token (ErrUnavailable)
}

type state struct {
	TAT int64 `json:"tat"` // theoretical arrival time, unix ns
}

// Stats are a Limiter's counters since New.
type Stats struct {
	Reads     int64 // store reads (Wait, Block and BlockedUntil)
	Writes    int64 // compare-and-set attempts
	Conflicts int64 // writes that lost: the key had moved on
	Errors    int64 // failed store calls other than conflicts
	Granted   int64 // tokens returned by Wait (successful calls)
	Dropped   int64 // tokens taken whose waiter's ctx ended first
}

// New returns a Limiter on key in store. The key is normally the provider
// name; it is logged as "provider".
func New(store Store, key string, cfg Config) *Limiter {
	l := &Limiter{
		store:    store,
		key:      key,
		now:      cfg.Now,
		log:      cfg.Logger,
		errLog:   rate.Sometimes{First: 1, Interval: storeErrLogEvery},
		wake:     make(chan struct{}, 1),
		linger:   max(cfg.Linger, 0),
		onOutage: cfg.OnOutage,
		unavail:  cfg.UnavailableAfter,
	}
	if l.unavail == 0 {
		l.unavail = defaultUnavailable
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.log = l.log.With("component", "ratelimit", "provider", key)
	l.SetRate(cfg.Rate, cfg.Burst)
	return l
}

// SetRate changes the rate and burst at runtime. The next slot already on
// the shared schedule stays where it is; the new interval applies from there
// on. Queued waiters are re-checked at once.
func (l *Limiter) SetRate(r float64, burst int) {
	burst = min(max(burst, 1), maxBurst)
	var iv time.Duration
	if r > 0 {
		iv = max(time.Duration(math.Min(float64(time.Second)/r, float64(maxInterval))), 1)
	}
	l.mu.Lock()
	l.interval, l.tolerance = iv, time.Duration(burst-1)*iv
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Stats returns the Limiter's counters.
func (l *Limiter) Stats() Stats {
	return Stats{
		Reads:     l.reads.Load(),
		Writes:    l.writes.Load(),
		Conflicts: l.conflicts.Load(),
		Errors:    l.errs.Load(),
		Granted:   l.granted.Load(),
		Dropped:   l.dropped.Load(),
	}
}

// TokenTTL is how long a token stays good for a call after Wait returned
// it: a quarter of the interval 1/Rate, between 50 ms and 1 s. A caller
// that could not start its call within it should take another (see Calls
// made late in the package documentation).
func (l *Limiter) TokenTTL() time.Duration {
	l.mu.Lock()
	iv := l.interval
	l.mu.Unlock()
	return tokenTTL(iv)
}

func tokenTTL(interval time.Duration) time.Duration {
	return min(max(interval/4, minTokenTTL), maxTokenTTL)
}

// Outage reports whether the shared state is unavailable now (store calls
// have failed for UnavailableAfter), since when, and the last error.
func (l *Limiter) Outage() (Outage, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Outage{Key: l.key, Since: l.failSince, Err: l.lastErr}, l.out
}

// Wait blocks until it has taken one token from the shared schedule and
// returns how long it waited. Callers are served in the order they called.
// It returns context.Cause(ctx) as soon as ctx ends, and a ctx already done
// takes no token. Store errors are logged and retried with backoff: Wait
// never returns success without a successful compare-and-set. While the
// shared state is unavailable it returns an error wrapping ErrUnavailable
// (see Failures in the package documentation).
func (l *Limiter) Wait(ctx context.Context) (waited time.Duration, err error) {
	start := l.now()
	if ctx.Err() != nil {
		return 0, context.Cause(ctx)
	}
	w := &waiter{ready: make(chan struct{}), at: start.UnixNano()}
	l.mu.Lock()
	if l.out && start.Before(l.retryAt) {
		err := l.unavailableLocked()
		l.mu.Unlock()
		return 0, err
	}
	w.elem = l.queue.PushBack(w)
	if !l.pumping {
		l.pumping = true
		pctx, cancel := context.WithCancel(context.Background())
		l.stopPump = cancel
		go l.pump(pctx)
	}
	l.mu.Unlock()

	select {
	case <-w.ready:
		if w.err != nil {
			return l.now().Sub(start), w.err
		}
		// Enabled first: the argument would be boxed for every token.
		if waited = l.now().Sub(start); waited > 0 && l.log.Enabled(ctx, slog.LevelDebug) {
			l.log.DebugContext(ctx, "ratelimit: token taken", "wait", waited)
		}
		return waited, nil
	case <-ctx.Done():
		l.mu.Lock()
		if w.elem != nil {
			l.queue.Remove(w.elem)
			w.elem = nil
			if l.queue.Len() == 0 {
				l.stopPump() // nobody left to serve: end the pump's sleep or store call
			}
		} else if w.err == nil { // handed over as ctx ended: not granted after all
			l.granted.Add(-1)
			l.dropped.Add(1)
		}
		l.mu.Unlock()
		return l.now().Sub(start), context.Cause(ctx)
	}
}

// pump serves the queue until it is empty; at most one runs per Limiter.
func (l *Limiter) pump(ctx context.Context) {
	failures, conflicts := 0, 0
	for {
		l.mu.Lock()
		queued := int64(l.queue.Len())
		if queued == 0 {
			l.pumping = false
			l.stopPump()
			l.mu.Unlock()
			return
		}
		if ctx.Err() != nil { // stopped when the queue emptied, then refilled
			ctx, l.stopPump = context.WithCancel(context.Background())
		}
		iv, tol := int64(l.interval), int64(l.tolerance)
		known, tat, rev := l.known, l.tat, l.rev
		var oldest int64
		if e := l.queue.Front(); e != nil {
			oldest = e.Value.(*waiter).at
		}
		l.mu.Unlock()

		if iv == 0 { // closed until SetRate
			l.sleep(ctx, -1)
			continue
		}
		if !known {
			var err error
			if tat, rev, err = l.read(ctx); err != nil {
				failures++
				l.storeFailed(ctx, err, failures)
				continue
			}
		}
		now := l.now().UnixNano()
		if rev == 0 {
			tat = l.reseed(tat, now, tol)
		}
		t := max(tat, now)
		if due := t - tol; now < due {
			conflicts = 0 // paced by the schedule, not retrying
			l.sleep(ctx, time.Duration(due-now))
			continue
		}
		due := (now-t+tol)/iv + 1
		if age := now - oldest; l.linger > 0 && queued < due && age < int64(l.linger) && conflicts == 0 {
			// More tokens are due than callers wait: let a few more
			// arrive to share this compare-and-set.
			l.sleep(ctx, time.Duration(int64(l.linger)-age))
			continue
		}
		k := min(due, queued)
		next := t + k*iv
		newRev, err := l.put(ctx, rev, next)
		switch {
		case errors.Is(err, ErrConflict):
			l.forget(rev)
			if conflicts++; conflicts > 1 { // due, lost, read, still due, lost again
				l.sleep(ctx, jitter(conflicts-2, conflictBackoffMin, conflictBackoffMax))
			}
			continue
		case err != nil:
			l.forget(rev)
			failures++
			l.storeFailed(ctx, err, failures)
			continue
		}
		failures, conflicts = 0, 0
		l.mu.Lock()
		l.remember(next, newRev)
		took := l.now().UnixNano() - now
		late := took-l.rtt > int64(tokenTTL(time.Duration(iv)))
		l.rtt += (took - l.rtt) / 4 // the usual round trip, which late answers raise too
		if late {
			// The answer came back late (a request held across a
			// reconnect or a stall): these tokens were for then, and calls
			// made with them now would exceed the bound. Take new ones.
			l.dropped.Add(k)
			l.mu.Unlock()
			l.log.Debug("ratelimit: a grant came back late; its tokens are dropped", "late", time.Duration(took), "tokens", k)
			continue
		}
		for range k {
			e := l.queue.Front()
			if e == nil { // waiters left during the CAS
				l.dropped.Add(1)
				continue
			}
			w := l.queue.Remove(e).(*waiter)
			w.elem = nil
			l.granted.Add(1) // before the waiter can return and Stats be read
			close(w.ready)
		}
		l.mu.Unlock()
	}
}

// storeFailed logs (at most every 10s) and backs off after a store error.
// From the second failure in a row on (or the first of a pump started
// during an outage) it asks a Repairer store to repair
// itself (trying again at once if it did); once the shared state is
// unavailable it hands the queued waiters ErrUnavailable instead of
// holding them.
func (l *Limiter) storeFailed(ctx context.Context, err error, failures int) {
	if ctx.Err() != nil {
		return // stopped: the error is the cancellation
	}
	wait := jitter(failures-1, storeBackoffMin, storeBackoffMax)
	l.errLog.Do(func() {
		l.log.WarnContext(ctx, "ratelimit: shared state unavailable, holding requests",
			"err", err, "retry_after", wait, "failures", failures)
	})
	l.mu.Lock()
	out, since := l.out, l.failSince
	l.mu.Unlock()
	if r, ok := l.store.(Repairer); ok && (failures >= 2 || out) {
		rctx, cancel := context.WithTimeout(ctx, repairTimeout)
		rerr := r.Repair(rctx, since)
		cancel()
		if rerr == nil {
			l.log.InfoContext(ctx, "ratelimit: store repaired; trying again")
			return
		}
		if out {
			l.errLog.Do(func() { l.log.WarnContext(ctx, "ratelimit: the store cannot be repaired yet", "err", rerr) })
		}
	}
	if !out {
		l.sleep(ctx, wait)
		return
	}
	l.mu.Lock()
	l.retryAt = l.now().Add(wait)
	uerr := l.unavailableLocked()
	for e := l.queue.Front(); e != nil; e = l.queue.Front() {
		w := l.queue.Remove(e).(*waiter)
		w.elem, w.err = nil, uerr
		close(w.ready)
	}
	l.mu.Unlock()
}

// unavailableLocked is the error Wait returns while the state is out.
func (l *Limiter) unavailableLocked() error {
	return fmt.Errorf("%w since %s: %w", ErrUnavailable, l.failSince.UTC().Format(time.RFC3339), l.lastErr)
}

// noteStore records the outcome of a store call and reports an outage
// starting or ending. A failed call starts or continues a run of
// failures; only a write the store answered (done, or ErrConflict) ends
// it: a store that reads but cannot write is unavailable all the same.
func (l *Limiter) noteStore(err error, write bool) {
	var report *Outage
	l.mu.Lock()
	now := l.now()
	answered := err == nil || errors.Is(err, ErrNoState) || errors.Is(err, ErrConflict)
	if answered && !write {
		l.mu.Unlock()
		return
	}
	if answered {
		if l.out {
			report = &Outage{Key: l.key, Since: l.failSince}
		}
		l.out, l.failSince, l.lastErr = false, time.Time{}, nil
	} else {
		if l.failSince.IsZero() {
			l.failSince = now
		}
		l.lastErr = err
		if !l.out && l.unavail >= 0 && now.Sub(l.failSince) >= l.unavail {
			l.out = true
			report = &Outage{Key: l.key, Since: l.failSince, Err: err}
		}
	}
	l.mu.Unlock()
	if report == nil {
		return
	}
	if report.Err != nil {
		l.log.Error("ratelimit: shared state unavailable; calls wait until it is back", "since", report.Since, "err", report.Err)
	} else {
		l.log.Info("ratelimit: shared state available again", "unavailable_for", now.Sub(report.Since))
	}
	if l.onOutage != nil {
		l.onOutage(*report)
	}
}

// reseed is the TAT to start from when the key is absent: tat (0) for a
// Limiter that never saw it, else the latest TAT it knew or now + τ,
// whichever is later (a lost schedule allows no extra burst).
func (l *Limiter) reseed(tat, now, tol int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.seen {
		return tat
	}
	return max(tat, l.maxTAT, now+tol)
}

// sleep waits for d (forever if d < 0), SetRate or the pump's stop.
func (l *Limiter) sleep(ctx context.Context, d time.Duration) {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ctx.Done():
	case <-timeout:
	case <-l.wake:
	}
}

// remember records a state just read or written. A state older than the one
// known is ignored; after a conflict (forget) any state is taken.
func (l *Limiter) remember(tat int64, rev uint64) {
	if rev > 0 {
		l.seen = true
		l.maxTAT = max(l.maxTAT, tat)
	}
	if !l.known || rev > l.rev {
		l.known, l.tat, l.rev = true, tat, rev
	}
}

// forget drops the known state if it is still at rev (the CAS on it failed).
func (l *Limiter) forget(rev uint64) {
	l.mu.Lock()
	if l.rev == rev {
		l.known = false
	}
	l.mu.Unlock()
}

// Block pushes the shared schedule so that no replica gets a token before
// until (a provider's 429 with Retry-After, seen by any replica):
// TAT = max(TAT, until + (Burst-1)/Rate). It never moves the schedule earlier.
func (l *Limiter) Block(ctx context.Context, until time.Time) error {
	for n := 0; ; n++ {
		l.mu.Lock()
		tolerance := int64(l.tolerance)
		l.mu.Unlock()
		tat, rev, err := l.read(ctx)
		if err != nil {
			return err
		}
		target := until.UnixNano() + tolerance
		if tat >= target {
			return nil
		}
		newRev, err := l.put(ctx, rev, target)
		if err == nil {
			l.mu.Lock()
			l.remember(target, newRev)
			l.mu.Unlock()
			l.log.InfoContext(ctx, "ratelimit: provider blocked",
				"until", until, "retry_after", until.Sub(l.now()))
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			return err
		}
		if n > 0 {
			t := time.NewTimer(jitter(n-1, conflictBackoffMin, conflictBackoffMax))
			select {
			case <-ctx.Done():
				t.Stop()
				return context.Cause(ctx)
			case <-t.C:
			}
		}
	}
}

// BlockedUntil reports when the next token is available (now if one is),
// from a fresh read of the store. It ignores a zero Rate.
func (l *Limiter) BlockedUntil(ctx context.Context) (time.Time, error) {
	l.mu.Lock()
	tolerance := int64(l.tolerance)
	l.mu.Unlock()
	tat, _, err := l.read(ctx)
	if err != nil {
		return time.Time{}, err
	}
	now := l.now()
	if at := time.Unix(0, tat-tolerance); at.After(now) {
		return at, nil
	}
	return now, nil
}

// read returns the stored TAT (0 if absent) and its revision (0 if absent)
// and remembers them.
func (l *Limiter) read(ctx context.Context) (tat int64, rev uint64, err error) {
	l.reads.Add(1)
	v, rev, err := l.store.Get(ctx, l.key)
	if ctx.Err() == nil { // not the pump's stop
		if err != nil && !errors.Is(err, ErrNoState) {
			l.errs.Add(1)
		}
		l.noteStore(err, false)
	}
	switch {
	case errors.Is(err, ErrNoState):
		tat, rev = 0, 0
	case err != nil:
		return 0, 0, err
	default:
		var s state
		if err := json.Unmarshal(v, &s); err != nil {
			l.errs.Add(1)
			return 0, 0, fmt.Errorf("ratelimit: decode state of %q: %w", l.key, err)
		}
		tat = s.TAT
	}
	l.mu.Lock()
	l.remember(tat, rev)
	l.mu.Unlock()
	return tat, rev, nil
}

// put CASes the state from rev (0: the key must be absent) to tat.
func (l *Limiter) put(ctx context.Context, rev uint64, tat int64) (uint64, error) {
	l.writes.Add(1)
	v, _ := json.Marshal(state{TAT: tat}) // cannot fail
	var err error
	if rev == 0 {
		rev, err = l.store.Create(ctx, l.key, v)
	} else {
		rev, err = l.store.Update(ctx, l.key, v, rev)
	}
	switch {
	case errors.Is(err, ErrConflict):
		l.conflicts.Add(1)
	case err != nil && ctx.Err() == nil: // not the pump's stop
		l.errs.Add(1)
	}
	if ctx.Err() == nil {
		l.noteStore(err, true)
	}
	return rev, err
}

// jitter returns the n-th exponential backoff step in [d/2, d], d = lo·2^n capped at hi.
func jitter(n int, lo, hi time.Duration) time.Duration {
	d := hi
	if n < 30 && lo<<n < hi {
		d = lo << n
	}
	return d/2 + rand.N(d/2+1)
}
