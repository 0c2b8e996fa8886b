// Package ratelimit is a cluster-wide request rate limiter: every worker
// replica that calls one paid provider account draws from one budget, kept
// in a shared [Store] (a JetStream KV bucket in production, see [KVStore]).
//
// # Algorithm
//
// GCRA (the generic cell rate algorithm). The only state is the theoretical
// arrival time TAT, stored as JSON {"tat": <unix ns>}. With interval
// T = 1/Rate and tolerance τ = (Burst-1)·T, a request at time now is allowed
// when now >= max(TAT, now) - τ, and then TAT becomes max(TAT, now) + T. Every
// grant is one compare-and-set on the key; a lost CAS is retried after a small
// jittered backoff. Because each grant moves TAT forward by at least T, any
// closed window of length W holds at most Rate·W + Burst grants, whatever
// the number of replicas.
//
// [Limiter.Block] records a provider's 429 ("retry after until") in the same
// state: TAT = max(TAT, until + τ). The next grant is then no earlier than
// until, only one token is available at until (no burst), and since Block
// only ever raises TAT the window bound above still holds.
//
// # Failures
//
// The limiter fails closed: no token is granted without a successful CAS. If
// the store is unavailable (KV bucket missing, no quorum, connection down),
// [Limiter.Wait] keeps retrying with exponential backoff and stays blocked
// until the store answers or ctx ends. A lost or reset key (bucket
// recreated) restarts the schedule, which allows one burst.
//
// # Clocks
//
// TAT is an absolute time written and compared with each replica's own clock
// (Config.Now), so replicas share the schedule through their clocks: a
// replica whose clock runs s ahead can take a token up to s early. NTP-synced
// hosts (skew of milliseconds) are assumed; keep the skew well below the
// interval 1/Rate.
package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	conflictBackoffMin = time.Millisecond      // first retry after a lost CAS
	conflictBackoffMax = 50 * time.Millisecond // cap under heavy contention
	storeBackoffMin    = 100 * time.Millisecond
	storeBackoffMax    = 5 * time.Second
	closedPoll         = time.Second    // re-check interval while Rate <= 0
	maxInterval        = 24 * time.Hour // rates below one per day are clamped
	maxBurst           = 1000
	storeErrLogEvery   = 10 * time.Second
)

// Config configures a [Limiter].
type Config struct {
	// Rate is the number of requests per second across all replicas, e.g.
	// 2 or 0.5. Zero, negative or NaN grants nothing (the provider is closed)
	// until SetRate sets a positive rate.
	Rate float64
	// Burst is how many requests may go at once after an idle period;
	// values below 1 mean 1. Keep it small.
	Burst int
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Logger receives store errors (at most one every 10s) and blocks.
	// Nil discards.
	Logger *slog.Logger
}

// Limiter takes tokens from the schedule stored under one key. It is safe for
// concurrent use and starts no goroutines; every replica creates its own
// Limiter on the same key.
type Limiter struct {
	store  Store
	key    string
	now    func() time.Time
	log    *slog.Logger
	errLog rate.Sometimes

	// turn lets one goroutine of this process at a time run the
	// read-compare-set: waiters in one replica would otherwise mostly lose
	// the CAS to each other and retry, multiplying KV writes; with it only
	// replicas contend.
	turn chan struct{}

	mu        sync.Mutex
	interval  time.Duration // 0: closed
	tolerance time.Duration
	changed   chan struct{} // closed and replaced by SetRate
}

type state struct {
	TAT int64 `json:"tat"` // theoretical arrival time, unix ns
}

// New returns a Limiter on key in store. The key is normally the provider
// name; it is logged as "provider".
func New(store Store, key string, cfg Config) *Limiter {
	l := &Limiter{
		store:   store,
		key:     key,
		now:     cfg.Now,
		log:     cfg.Logger,
		errLog:  rate.Sometimes{First: 1, Interval: storeErrLogEvery},
		changed: make(chan struct{}),
		turn:    make(chan struct{}, 1),
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
// on. Goroutines blocked in Wait re-check at once.
func (l *Limiter) SetRate(r float64, burst int) {
	burst = min(max(burst, 1), maxBurst)
	var iv time.Duration
	if r > 0 {
		iv = max(time.Duration(math.Min(float64(time.Second)/r, float64(maxInterval))), 1)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.interval, l.tolerance = iv, time.Duration(burst-1)*iv
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *Limiter) params() (interval, tolerance time.Duration, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.interval, l.tolerance, l.changed
}

// Wait blocks until it has taken one token from the shared schedule and
// returns how long it waited. It returns context.Cause(ctx) as soon as ctx
// ends. Store errors are logged and retried with backoff: Wait never
// returns success without a successful compare-and-set.
func (l *Limiter) Wait(ctx context.Context) (waited time.Duration, err error) {
	start := l.now()
	conflicts, failures := 0, 0
	for {
		_, _, changed := l.params()
		if ctx.Err() != nil {
			return l.now().Sub(start), context.Cause(ctx)
		}
		select {
		case l.turn <- struct{}{}:
		case <-ctx.Done():
			return l.now().Sub(start), context.Cause(ctx)
		}
		now, wait, conflict, err := l.take(ctx)
		<-l.turn
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return now.Sub(start), context.Cause(ctx)
			}
			wait = jitter(failures, storeBackoffMin, storeBackoffMax)
			failures++
			l.errLog.Do(func() {
				l.log.WarnContext(ctx, "ratelimit: shared state unavailable, holding requests",
					"err", err, "retry_after", wait, "failures", failures)
			})
		case conflict:
			wait = jitter(conflicts, conflictBackoffMin, conflictBackoffMax)
			conflicts++
		case wait == 0:
			if waited = now.Sub(start); waited > 0 {
				l.log.DebugContext(ctx, "ratelimit: token taken", "wait", waited)
			}
			return waited, nil
		default:
			conflicts, failures = 0, 0
		}
		if err := sleep(ctx, wait, changed); err != nil {
			return l.now().Sub(start), err
		}
	}
}

// Take makes one attempt. It returns 0 if a token was taken, otherwise how
// long until one may be (after a lost CAS, a short jittered delay). On error
// no token was taken.
func (l *Limiter) Take(ctx context.Context) (wait time.Duration, err error) {
	select {
	case l.turn <- struct{}{}:
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
	_, wait, conflict, err := l.take(ctx)
	<-l.turn
	if conflict {
		wait = jitter(0, conflictBackoffMin, conflictBackoffMax)
	}
	return wait, err
}

// take reads the state and, if a token is due at now, CASes TAT forward.
func (l *Limiter) take(ctx context.Context) (now time.Time, wait time.Duration, conflict bool, err error) {
	interval, tolerance, _ := l.params()
	if interval == 0 {
		return l.now(), closedPoll, false, nil
	}
	tat, rev, err := l.get(ctx)
	now = l.now()
	if err != nil {
		return now, 0, false, err
	}
	t := max(tat, now.UnixNano())
	if allow := t - int64(tolerance); now.UnixNano() < allow {
		return now, time.Duration(allow - now.UnixNano()), false, nil
	}
	err = l.put(ctx, rev, t+int64(interval))
	if errors.Is(err, ErrConflict) {
		return now, 0, true, nil
	}
	return now, 0, false, err
}

// Block pushes the shared schedule so that no replica gets a token before
// until (a provider's 429 with Retry-After, seen by any replica):
// TAT = max(TAT, until + (Burst-1)/Rate). It never moves the schedule earlier.
func (l *Limiter) Block(ctx context.Context, until time.Time) error {
	for n := 0; ; n++ {
		_, tolerance, _ := l.params()
		tat, rev, err := l.get(ctx)
		if err != nil {
			return err
		}
		target := until.UnixNano() + int64(tolerance)
		if tat >= target {
			return nil
		}
		err = l.put(ctx, rev, target)
		if err == nil {
			l.log.InfoContext(ctx, "ratelimit: provider blocked",
				"until", until, "retry_after", until.Sub(l.now()))
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			return err
		}
		if err := sleep(ctx, jitter(n, conflictBackoffMin, conflictBackoffMax), nil); err != nil {
			return err
		}
	}
}

// BlockedUntil reports when the next token is available (now if one is). It
// ignores a zero Rate.
func (l *Limiter) BlockedUntil(ctx context.Context) (time.Time, error) {
	_, tolerance, _ := l.params()
	tat, _, err := l.get(ctx)
	if err != nil {
		return time.Time{}, err
	}
	now := l.now()
	if at := time.Unix(0, tat-int64(tolerance)); at.After(now) {
		return at, nil
	}
	return now, nil
}

// get returns the stored TAT (0 if absent) and its revision (0 if absent).
func (l *Limiter) get(ctx context.Context) (tat int64, rev uint64, err error) {
	v, rev, err := l.store.Get(ctx, l.key)
	if errors.Is(err, ErrNoState) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	var s state
	if err := json.Unmarshal(v, &s); err != nil {
		return 0, 0, fmt.Errorf("ratelimit: decode state of %q: %w", l.key, err)
	}
	return s.TAT, rev, nil
}

func (l *Limiter) put(ctx context.Context, rev uint64, tat int64) error {
	v, _ := json.Marshal(state{TAT: tat}) // cannot fail
	var err error
	if rev == 0 {
		_, err = l.store.Create(ctx, l.key, v)
	} else {
		_, err = l.store.Update(ctx, l.key, v, rev)
	}
	return err
}

// sleep waits for d, ctx's end (returning its cause) or a wake-up.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
	case <-wake:
	}
	return nil
}

// jitter returns the n-th exponential backoff step in [d/2, d], d = lo·2^n capped at hi.
func jitter(n int, lo, hi time.Duration) time.Duration {
	d := hi
	if n < 30 && lo<<n < hi {
		d = lo << n
	}
	return d/2 + rand.N(d/2+1)
}
