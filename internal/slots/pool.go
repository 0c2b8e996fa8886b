package slots

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/reelq/reelq/internal/changes"
)

// DefaultTTL is the lease length when Config.TTL is zero.
const DefaultTTL = 60 * time.Second

const (
	coalesceEvery      = 50 * time.Millisecond // at most one demand-only write per interval
	releaseTimeout     = 2 * time.Second       // bound on the release when Run ends
	conflictBackoffMin = time.Millisecond
	conflictBackoffMax = 5 * time.Millisecond
	retryMin           = 100 * time.Millisecond // renewal / watch retry after a failure
	retryMax           = 5 * time.Second
	errLogEvery        = 10 * time.Second
)

var (
	// ErrStopped is returned once the Pool's Run has returned.
	ErrStopped = errors.New("slots: pool stopped")
	// ErrRunning is returned by a second call to Run.
	ErrRunning = errors.New("slots: Run already called")
)

// Config configures a [Pool].
type Config struct {
	// Provider names the provider; it is the key in [Bucket].
	Provider string
	// Worker identifies this worker process. The lease belongs to the
	// Pool, not to the name: the Pool's entry is "<Worker>/<incarnation>",
	// with an incarnation drawn at random by New, so a process restarted
	// under the same id never takes over the slots of its predecessor,
	// whose tasks may still run at the provider until that lease expires.
	Worker string
	// Cap is the provider's cluster-wide concurrency limit; every worker is
	// expected to use the same value (see SetCap).
	Cap int
	// TTL is the lease length; zero means DefaultTTL. The lease is renewed
	// every TTL/4 and treated as lost TTL/8 before it expires.
	TTL time.Duration
	// Logger receives renewal failures (at most one every 10 s) and lease
	// changes. Nil discards.
	Logger *slog.Logger
	// Now is this worker's clock, which times its own lease (it stops
	// using its slots TTL/8 before TTL has passed since the write that
	// renewed them); nil means time.Now. Other holders' leases are judged
	// by the server's clock (see Clocks in the package documentation).
	// Timers use real time.
	Now func() time.Time
}

// Pool is one worker's share of one provider's slots. It is safe for
// concurrent use. Its Run method must run for the Pool's lifetime: it keeps
// the local view current and renews the lease.
//
// A worker uses it like this, per provider:
//
//   - SetDemand(running + waiting, top of the waiting jobs) whenever either
//     changes (free when unchanged; never blocks);
//   - it starts a waiting job only while running < Held; otherwise it takes
//     seen := Version(), calls TryAcquire(ctx, jobs without a slot, top) and,
//     if that granted nothing, waits on Changed(seen) and tries again;
//   - when a job ends and another waits, it reuses the slot unless
//     Yield(top of the waiting jobs) is true, in which case it calls
//     Release(ctx, 1); a slot with no job for it is given back the same
//     way, Yield(PriorityNone) on each change, or released after a linger.
//
// The Pool never gives back slots on its own while Run runs, so want may be
// below Held (idle slots kept for the next job); Held drops only by Release
// or when the lease is lost.
type Pool struct {
	kv     jetstream.KeyValue
	key    string
	me     string
	ttl    time.Duration
	grace  time.Duration // the lease counts as lost this long before until
	now    func() time.Time
	log    *slog.Logger
	errLog rate.Sometimes

	turn      chan struct{} // one compare-and-set at a time from this Pool
	wake      chan struct{} // asks Run to re-check what is due
	started   atomic.Bool
	writes    atomic.Uint64
	conflicts atomic.Uint64

	// skipRelease makes Run return without releasing (tests: a crash).
	skipRelease bool

	mu       sync.Mutex
	capacity int
	// Committed view of the key: revision 0 with known means absent.
	known   bool
	rev     uint64
	holders map[string]entry // replaced, never modified in place
	// The server's clock as last seen: a server timestamp (a message's
	// store time, a stream info's time) and the local time it was seen at
	// (see serverNowLocked).
	srvBase, srvAt time.Time
	// This worker's entry as it last committed it; until is on this
	// worker's clock (TTL after the write was sent).
	n       int
	until   time.Time
	myRev   uint64
	advWant int
	advTop  int
	advKeys []string
	// Local state.
	release     int      // slots given back by Release, not committed yet
	want, top   int      // demand set by SetDemand
	keys        []string // fairness keys set by SetKeys
	weights     map[string]float64
	weightsRev  uint64 // view revision weights were computed at (0: stale)
	lost        bool
	lostLogged  bool
	stopped     bool
	renewNow    bool
	lastWrite   time.Time
	demandNext  time.Time // earliest next demand-only write
	demandDirty bool      // a demand-only write is due at demandNext
	ver         changes.Version
	expiry      *time.Timer
}

// New returns a Pool on the key cfg.Provider in kv (normally the bucket
// [Bucket]). Nothing is written until the worker advertises demand or takes
// a slot.
func New(kv jetstream.KeyValue, cfg Config) *Pool {
	ttl := cfg.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	p := &Pool{
		kv:       kv,
		key:      cfg.Provider,
		me:       cfg.Worker + "/" + incarnation(),
		ttl:      ttl,
		grace:    ttl / 8,
		now:      cfg.Now,
		log:      cfg.Logger,
		errLog:   rate.Sometimes{First: 1, Interval: errLogEvery},
		turn:     make(chan struct{}, 1),
		wake:     make(chan struct{}, 1),
		capacity: max(0, cfg.Cap),
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "slots", "provider", cfg.Provider, "worker", cfg.Worker, "holder", p.me)
	return p
}

// incarnation is a random name for one Pool's lease, 8 hex digits.
func incarnation() string {
	var b [4]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Holder is the name of this Pool's entry in the provider's key:
// "<worker>/<incarnation>".
func (p *Pool) Holder() string { return p.me }

// workerOf returns the worker id of a holder name ("<worker>/<incarnation>").
func workerOf(holder string) string {
	if i := strings.LastIndexByte(holder, '/'); i >= 0 {
		return holder[:i]
	}
	return holder
}

// serverNowLocked estimates the server's clock: the latest server
// timestamp seen plus the time elapsed here since it was seen. It lags
// the server by the delivery time of that timestamp, never leads it
// (clock rates alike), so a lease it finds expired has expired on the
// server too. Before any timestamp was seen it is the local clock.
func (p *Pool) serverNowLocked() time.Time {
	if p.srvAt.IsZero() {
		return p.now()
	}
	return p.srvBase.Add(time.Since(p.srvAt))
}

// seenServerTimeLocked records t, a timestamp the server gave, if it is
// later than the estimate.
func (p *Pool) seenServerTimeLocked(t time.Time) {
	if t.IsZero() {
		return
	}
	if p.srvAt.IsZero() || t.After(p.serverNowLocked()) {
		p.srvBase, p.srvAt = t, time.Now()
	}
}

// syncClock reads the server's time from the bucket's info (best effort):
// a fresh timestamp, where the key's value may be hours old.
func (p *Pool) syncClock(ctx context.Context) {
	st, err := p.kv.Status(ctx)
	if err != nil {
		return
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
		p.mu.Lock()
		p.seenServerTimeLocked(bs.StreamInfo().TimeStamp)
		p.mu.Unlock()
	}
}

// Held is the number of slots this worker may use now: the slots it holds,
// or 0 while its lease is lost or about to expire (TTL/8 before until, or
// once another writer removed it), until a renewal succeeds. A worker starts
// a job only while its running jobs are fewer than Held.
func (p *Pool) Held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.heldLocked(p.now())
}

func (p *Pool) heldLocked(now time.Time) int {
	h := p.n - p.release
	if p.stopped || p.lost || h <= 0 || !now.Before(p.until.Add(-p.grace)) {
		return 0
	}
	return h
}

// Version numbers the allocation seen by this worker; it grows at every
// change: a write by any worker, a lease expiring, this worker's holding or
// Cap changing, or the Pool stopping. Take it before TryAcquire (or Yield)
// and, when that gave nothing, wait on Changed(version): no change is
// missed.
func (p *Pool) Version() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ver.Load()
}

// Changed returns a channel closed once the allocation changed after
// Version returned seen: at once if it has already.
func (p *Pool) Changed(seen uint64) <-chan struct{} { return p.ver.Changed(seen) }

// SetCap changes Cap. All workers are expected to use the same Cap; when
// they disagree each one grants and yields by its own (a worker with a
// larger Cap may grant up to its Cap in total), and a worker whose view
// holds more than its Cap (for instance after Cap was lowered) yields every
// slot at its jobs' end until the total is within its Cap again.
func (p *Pool) SetCap(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.capacity = max(0, n)
	p.notifyLocked(p.now())
}

// Snapshot returns the allocation as this worker sees it (for stats and
// metrics); it does no I/O.
func (p *Pool) Snapshot() Allocation {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := allocation(p.holders, p.serverNowLocked(), p.capacity)
	a.Provider, a.Worker, a.Revision = p.key, p.me, p.rev
	a.Held = p.heldLocked(p.now())
	a.Writes, a.Conflicts = p.writes.Load(), p.conflicts.Load()
	return a
}

// Yield reports whether this worker should give back the slot of a job
// that just ended instead of reusing it for a waiting job of priority
// myTop (PriorityNone: no waiting job, the slot would stay idle). It is true
// when another live holder comes first and free slots do not cover it: one
// with unmet demand and a higher top, or the same top while it holds fewer
// than its fair share and this worker more; or when the live holders hold
// more than Cap. The worker then calls Release(ctx, 1). Yield is a pure
// function of the local view (no I/O).
func (p *Pool) Yield(myTop int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return shouldYield(p.holders, p.me, p.serverNowLocked(), p.capacity, p.heldLocked(p.now()), p.want, myTop, p.keys)
}

// SetKeys advertises the fairness keys of this worker's jobs at its top
// priority (waiting or running), as KeyHash values; at most MaxKeys are
// kept. Like SetDemand it never blocks and costs nothing when unchanged.
// Workers use the keys to share the provider's slots equally among keys
// cluster-wide (see KeyWeights).
func (p *Pool) SetKeys(keys []string) {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if len(keys) > MaxKeys {
		keys = keys[:MaxKeys]
	}
	p.mu.Lock()
	if p.stopped || slices.Equal(keys, p.keys) {
		p.mu.Unlock()
		return
	}
	p.keys = keys
	p.weightsRev = 0
	dirty := !slices.Equal(keys, p.advKeys)
	p.demandDirty = p.demandDirty || dirty
	p.mu.Unlock()
	if dirty {
		p.poke()
	}
}

// KeyWeights is how this worker should divide the slots it holds among its
// fairness keys (KeyHash to planned slots) so that every key advertised by
// the live holders gets an equal part of the provider: a key only this
// worker has gets its part here, a key every worker has is served by all.
// Every worker computes it from the same view. Nil means no plan (no slot
// held, or no keys): serve the keys equally. No I/O; cached per view.
func (p *Pool) KeyWeights() map[string]float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.weightsRev != 0 && p.weightsRev == p.rev {
		return p.weights
	}
	mine := entry{N: p.heldLocked(p.now()), Want: p.want, Top: p.top, Keys: p.keys}
	p.weights = keyWeights(wanting(p.holders, p.me, mine, p.serverNowLocked()), p.me)
	p.weightsRev = p.rev
	return p.weights
}

// SetDemand advertises how many slots this worker could use now (want: its
// running and waiting jobs, capped by its local limit) and the highest
// priority among its waiting jobs (top, PriorityNone to PriorityResume).
// Other workers' Yield and TryAcquire act on it. SetDemand never blocks on
// I/O (ctx is not used): Run writes the values when they differ from the
// advertised ones, at once if its last demand write is at least 50 ms old
// or this worker's holding changed since, otherwise at the end of that
// interval with the values current then. Every other write of this worker
// carries its demand too. Unchanged values cost nothing. The error reports
// invalid values or a stopped Pool.
func (p *Pool) SetDemand(_ context.Context, want, top int) error {
	if want < 0 || top < PriorityNone || top > PriorityResume {
		return fmt.Errorf("slots: demand want=%d top=%d out of range", want, top)
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return ErrStopped
	}
	if want != p.want || top != p.top {
		p.weightsRev = 0
	}
	p.want, p.top = want, top
	dirty := want != p.advWant || top != p.advTop || !slices.Equal(p.keys, p.advKeys)
	p.demandDirty = dirty
	p.mu.Unlock()
	if dirty {
		p.poke()
	}
	return nil
}

// TryAcquire takes up to k more slots for jobs of priority top and returns
// how many it got: min(k, free), less the unmet demand of holders that come
// first (a higher top; or the same top below their fair share once this
// worker holds its own), so a slot given up for them is left to them. A
// grant is one compare-and-set (retried on conflict); when the local view
// shows nothing to grant it returns 0 without I/O, and the caller waits on
// Changed(Version() taken before the call) and tries again. An error means nothing
// was granted (fail closed). Every grant renews the lease.
func (p *Pool) TryAcquire(ctx context.Context, k, top int) (int, error) {
	if k <= 0 {
		return 0, nil
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return 0, ErrStopped
	}
	if p.known && !p.lost {
		if p.heldLocked(p.now()) == p.n-p.release { // lease valid (or nothing held)
			srv := p.serverNowLocked()
			out := decide(p.holders, srv, p.requestLocked(srv, k, top))
			if out.granted == 0 {
				p.mu.Unlock()
				return 0, nil
			}
		}
	}
	p.mu.Unlock()
	out, err := p.commit(ctx, opAcquire, k, top)
	if err != nil {
		return 0, fmt.Errorf("slots: acquire %d on %s: %w", k, p.key, err)
	}
	return out.granted, nil
}

// Release gives back k of the slots this worker holds (at most Held). Held
// drops at once; the write follows, and if it fails Run retries it with
// the next renewal (the error is returned for logging only).
func (p *Pool) Release(ctx context.Context, k int) error {
	if k <= 0 {
		return nil
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil // Run released everything
	}
	k = min(k, p.n-p.release)
	if k <= 0 {
		p.mu.Unlock()
		return nil
	}
	p.release += k
	p.notifyLocked(p.now())
	p.mu.Unlock()
	if _, err := p.commit(ctx, opRelease, 0, 0); err != nil {
		p.mu.Lock()
		p.renewNow = true
		p.mu.Unlock()
		p.poke()
		return fmt.Errorf("slots: release %d on %s: %w", k, p.key, err)
	}
	return nil
}

// Run keeps the local view current (a KV watch on the provider's key),
// renews this worker's lease every TTL/4 while it holds slots or has
// demand, writes coalesced demand updates, and bumps Version when a lease
// expires. It returns when ctx ends, after releasing every slot this worker
// holds (best effort, within 2 s); the release error, if any, is returned.
// Cancel ctx only once this worker's jobs on the provider have ended:
// after it, other workers may use the slots. Callers run it in a goroutine
// they own.
func (p *Pool) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	var (
		updates     <-chan jetstream.KeyValueEntry
		stopWatch   = func() {}
		watchAt     time.Time // (re)create the watch from then on
		watchWait   = retryMin
		failAt      time.Time // earliest next write after a failed one
		failWait    = retryMin
		failed      bool      // the last renewal failed: retry at failAt
		lastAttempt time.Time // last renewal attempt
		initial     bool      // the watch has not delivered the current value yet
	)
	defer func() { stopWatch() }()
	p.syncClock(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	fail := func(msg string, err error) {
		d := failWait
		failAt, failWait = p.now().Add(d), min(2*failWait, retryMax)
		p.errLog.Do(func() { p.log.Warn(msg, "err", err, "retry_in", d) })
	}
	for ctx.Err() == nil {
		now := p.now()
		if updates == nil && !now.Before(watchAt) {
			wctx, cancel := context.WithCancel(ctx)
			w, err := p.kv.Watch(wctx, p.key)
			if err != nil {
				cancel()
				if ctx.Err() != nil {
					break
				}
				p.errLog.Do(func() { p.log.Warn("slots watch failed", "err", err, "retry_in", watchWait) })
				watchAt, watchWait = now.Add(watchWait), min(2*watchWait, retryMax)
			} else {
				updates, stopWatch, watchWait = w.Updates(), cancel, retryMin
				initial = true
			}
		}

		renewAt, renew := p.renewDue(lastAttempt, failed)
		if renew && failAt.After(renewAt) {
			renewAt = failAt
		}
		if renew && !now.Before(renewAt) {
			lastAttempt = now
			p.mu.Lock()
			p.renewNow = false
			p.mu.Unlock()
			if _, err := p.commit(ctx, opRenew, 0, 0); err != nil {
				if ctx.Err() != nil {
					break
				}
				failed = true
				fail("slots lease renewal failed", err)
			} else {
				failed, failAt, failWait = false, time.Time{}, retryMin
			}
			continue
		}
		demandAt, demand := p.demandDue()
		if demand && failAt.After(demandAt) {
			demandAt = failAt
		}
		if demand && !now.Before(demandAt) {
			p.mu.Lock()
			p.demandNext, p.demandDirty = now.Add(coalesceEvery), false
			p.mu.Unlock()
			if _, err := p.commit(ctx, opDemand, 0, 0); err != nil {
				p.mu.Lock()
				p.demandDirty = true
				p.mu.Unlock()
				if ctx.Err() != nil {
					break
				}
				fail("slots demand write failed", err)
			}
			continue
		}

		var next time.Time
		for _, c := range []struct {
			on bool
			at time.Time
		}{{renew, renewAt}, {demand, demandAt}, {updates == nil, watchAt}} {
			if c.on && (next.IsZero() || c.at.Before(next)) {
				next = c.at
			}
		}
		d := time.Hour
		if !next.IsZero() {
			d = max(0, next.Sub(now))
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-p.wake:
		case e, ok := <-updates:
			switch {
			case !ok: // subscription closed (connection closed): watch again
				stopWatch()
				updates, stopWatch = nil, func() {}
				watchAt = p.now().Add(watchWait)
			case e == nil: // the end of the initial values
				if initial { // the key does not exist
					p.observe(nil, true)
				}
				initial = false
			default:
				p.observe(e, initial)
				initial = false
			}
		}
	}
	stopWatch()
	return p.stop(ctx)
}

// stop ends the Pool and releases its slots unless skipRelease.
func (p *Pool) stop(ctx context.Context) error {
	p.mu.Lock()
	p.stopped = true
	p.notifyLocked(p.now())
	p.mu.Unlock()
	if p.skipRelease {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if _, err := p.commit(rctx, opStop, 0, 0); err != nil {
		p.log.Warn("slots release on stop failed; they free when the lease expires", "err", err, "ttl", p.ttl)
		return fmt.Errorf("slots: release on stop: %w", err)
	}
	return nil
}

// renewDue says whether this worker's entry needs a write for its lease
// (it holds slots, has demand, has uncommitted releases or a stale entry)
// and from when: TTL/4 after its last write (or attempt), at once when the
// entry was lost, a release failed or the last renewal failed (the caller
// applies the back-off).
func (p *Pool) renewDue(lastAttempt time.Time, failed bool) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, present := p.holders[p.me]
	if !(p.n > 0 || p.want > 0 || p.release > 0 || present || p.renewNow) {
		return time.Time{}, false
	}
	if p.renewNow || (failed && !p.lastWrite.After(lastAttempt)) {
		return time.Time{}, true
	}
	last := p.lastWrite
	if lastAttempt.After(last) {
		last = lastAttempt
	}
	return last.Add(p.ttl / 4), true
}

func (p *Pool) demandDue() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.demandNext, p.demandDirty
}

func (p *Pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

type op int

const (
	opAcquire op = iota
	opRelease
	opDemand
	opRenew
	opStop
)

// requestLocked is this worker's request at srv (the server's clock): keep
// what it holds (minus pending releases), add k for jobs of priority top,
// advertise its demand.
func (p *Pool) requestLocked(srv time.Time, k, top int) request {
	return request{
		me:       p.me,
		capacity: p.capacity,
		keep:     p.n - p.release,
		add:      k,
		addTop:   top,
		want:     p.want,
		top:      p.top,
		keys:     p.keys,
		until:    srv.Add(p.ttl).UTC(),
		ttl:      p.ttl,
	}
}

// commit runs one compare-and-set of this worker's entry, retried on
// conflict: the next value is computed by decide from the latest revision
// known. Ops other than opRenew write only when the entry changes.
func (p *Pool) commit(ctx context.Context, kind op, k, top int) (outcome, error) {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return outcome{}, ctx.Err()
	}
	defer func() { <-p.turn }()
	wait := conflictBackoffMin
	for attempt := 0; ; attempt++ {
		p.mu.Lock()
		if p.stopped && kind != opStop {
			p.mu.Unlock()
			return outcome{}, ErrStopped
		}
		known, rev, cur := p.known, p.rev, p.holders
		now, srv := p.now(), p.serverNowLocked()
		r := p.requestLocked(srv, k, top)
		released := p.release
		if kind == opStop {
			r.keep, r.want, r.top = 0, 0, 0
		}
		p.mu.Unlock()
		if !known {
			if err := p.fetch(ctx); err != nil {
				return outcome{}, err
			}
			continue
		}
		out := decide(cur, srv, r)
		if !out.changed && !(kind == opRenew && (out.n > 0 || r.want > 0)) {
			// Nothing to write. Pending releases are settled all the same:
			// an unchanged entry with a grant means the grant took the
			// released slots back (keep + granted = n).
			// The view already holds this worker's entry as decided
			// (or no entry, for n 0): take its n as committed, or a
			// release that reached the server without an answer would be
			// claimed back by the next renewal.
			p.mu.Lock()
			p.release = max(0, p.release-released)
			p.n = out.n
			if out.n == 0 {
				p.lost = false
			}
			p.mu.Unlock()
			return out, nil
		}
		data, err := json.Marshal(value{Holders: out.next})
		if err != nil {
			return outcome{}, fmt.Errorf("slots: encode: %w", err)
		}
		var newRev uint64
		if rev == 0 {
			newRev, err = p.kv.Create(ctx, p.key, data)
		} else {
			newRev, err = p.kv.Update(ctx, p.key, data, rev)
		}
		if err == nil {
			p.writes.Add(1)
			p.committed(now, newRev, out, r, released)
			return out, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return outcome{}, fmt.Errorf("slots: write %s: %w", p.key, err)
		}
		p.conflicts.Add(1)
		if err := p.fetch(ctx); err != nil {
			return outcome{}, err
		}
		if attempt > 0 { // the first retry goes at once, then jittered back-off
			t := time.NewTimer(rand.N(wait) + wait/2)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return outcome{}, ctx.Err()
			}
			wait = min(2*wait, conflictBackoffMax)
		}
	}
}

// committed records this worker's successful write.
func (p *Pool) committed(now time.Time, rev uint64, out outcome, r request, released int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	wasLost := p.lostLogged
	p.n, p.until, p.myRev = out.n, now.Add(r.ttl), rev
	p.release = max(0, p.release-released)
	if p.stopped {
		p.release = 0
	}
	p.advWant, p.advTop, p.advKeys = r.want, r.top, r.keys
	if p.want == r.want && p.top == r.top && slices.Equal(p.keys, r.keys) {
		p.demandDirty = false
	}
	p.lost, p.lostLogged = false, false
	p.lastWrite = now
	if out.granted > 0 || released > 0 {
		// A worker's demand changes right after its holding does (a
		// waiting job starts, or a job ended): that one update goes at
		// once, so a stale top does not keep slots reserved for it.
		p.demandNext = time.Time{}
	}
	if rev > p.rev || !p.known {
		p.known, p.rev, p.holders = true, rev, out.next
	}
	if wasLost {
		p.log.Info("slots lease renewed", "held", out.n, "revision", rev)
	}
	p.notifyLocked(now)
}

// fetch reads the key after a conflict (or before the first write) and
// takes it as the view, whatever its revision.
func (p *Pool) fetch(ctx context.Context) error {
	var (
		rev     uint64
		holders map[string]entry
		stamp   time.Time
	)
	e, err := p.kv.Get(ctx, p.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("slots: read %s: %w", p.key, err)
	default:
		if holders, err = decodeValue(e.Value()); err != nil {
			return fmt.Errorf("slots: read %s revision %d: %w", p.key, e.Revision(), err)
		}
		rev, stamp = e.Revision(), e.Created()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seenServerTimeLocked(stamp)
	p.setViewLocked(rev, normalize(holders, stamp))
	return nil
}

// observe applies a watched entry (nil: the key is absent) newer than the
// view, or whatever its revision if it is the value a new watch started
// from (the bucket may have been recreated, restarting revisions).
func (p *Pool) observe(e jetstream.KeyValueEntry, current bool) {
	var (
		holders map[string]entry
		rev     uint64
		stamp   time.Time
	)
	if e != nil {
		rev, stamp = e.Revision(), e.Created()
		if e.Operation() == jetstream.KeyValuePut {
			var err error
			if holders, err = decodeValue(e.Value()); err != nil {
				// Fail closed: the next write reads the key again and fails.
				p.log.Error("slots value unreadable", "err", err, "revision", rev)
				p.mu.Lock()
				p.known = false
				p.mu.Unlock()
				return
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seenServerTimeLocked(stamp)
	if p.known && rev <= p.rev && !current {
		return // this worker's own write, or older than a read
	}
	p.setViewLocked(rev, normalize(holders, stamp))
}

func decodeValue(b []byte) (map[string]entry, error) {
	var v value
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("decode slots value: %w", err)
	}
	return v.Holders, nil
}

// setViewLocked installs a committed value (normalized: leases on the
// server's clock). A value newer than this
// worker's last write without its entry means another writer found its
// lease expired and removed it: the slots are lost until a renewal claims
// them back.
func (p *Pool) setViewLocked(rev uint64, holders map[string]entry) {
	p.known, p.rev, p.holders = true, rev, holders
	now := p.now()
	if _, ok := holders[p.me]; !ok && rev > p.myRev && (p.n > 0 || p.advWant > 0) {
		if p.n > 0 {
			p.lost = true
		}
		p.advWant, p.advTop = 0, 0
		p.renewNow = true
		p.poke()
	}
	p.notifyLocked(now)
}

// notifyLocked bumps Version, logs a lost lease and arms the timer for
// the next lease expiry.
func (p *Pool) notifyLocked(now time.Time) {
	p.ver.Bump()
	if !p.stopped && !p.lostLogged && p.n-p.release > 0 && p.heldLocked(now) == 0 {
		p.lostLogged = true
		p.log.Warn("slots lease lost; no new jobs until it is renewed", "held", p.n-p.release, "until", p.until)
	}
	// The next lease to expire: another holder's on the server's clock,
	// or this worker's own on its clock.
	wait := time.Duration(-1)
	if !p.stopped {
		srv := p.serverNowLocked()
		if at := nextExpiry(p.holders, p.me, srv); !at.IsZero() {
			wait = at.Sub(srv)
		}
		if p.heldLocked(now) > 0 {
			if own := p.until.Add(-p.grace).Sub(now); wait < 0 || own < wait {
				wait = own
			}
		}
	}
	switch {
	case wait < 0:
		if p.expiry != nil {
			p.expiry.Stop()
		}
	case p.expiry == nil:
		p.expiry = time.AfterFunc(wait, p.expired)
	default:
		p.expiry.Reset(wait)
	}
}

func (p *Pool) expired() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		p.notifyLocked(p.now())
	}
}
