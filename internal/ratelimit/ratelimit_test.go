package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func sortedTimes(ts []time.Time) []time.Time {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return ts
}

// maxInWindow returns the most grants inside any closed window [t, t+w].
func maxInWindow(grants []time.Time, w time.Duration) int {
	ts := sortedTimes(grants)
	best, i := 0, 0
	for j := range ts {
		for ts[j].Sub(ts[i]) > w {
			i++
		}
		best = max(best, j-i+1)
	}
	return best
}

// countHandler counts records at Warn and above and forwards them to the test log.
type countHandler struct {
	slog.Handler
	warns *atomic.Int64
}

func (h countHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.warns.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countHandler{h.Handler.WithAttrs(as), h.warns}
}

func testLogger(t *testing.T) (*slog.Logger, *atomic.Int64) {
	n := new(atomic.Int64)
	return slog.New(countHandler{slog.NewTextHandler(t.Output(), nil), n}), n
}

// grantLog records grant times from many goroutines.
type grantLog struct {
	mu sync.Mutex
	ts []time.Time
}

func (g *grantLog) add(t time.Time) { g.mu.Lock(); g.ts = append(g.ts, t); g.mu.Unlock() }

func (g *grantLog) times() []time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.ts)
}

// waitLoop calls Wait until ctx ends and records each grant's time.
func waitLoop(ctx context.Context, l *Limiter, g *grantLog) {
	for {
		if _, err := l.Wait(ctx); err != nil {
			return
		}
		g.add(time.Now())
	}
}

func TestWaitManyWaitersFakeTime(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const rate, burst = 5, 2
		log, _ := testLogger(t)
		store := NewMemStore()
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second+100*time.Millisecond)
		defer cancel()
		var g grantLog
		var wg sync.WaitGroup
		for range 20 {
			l := New(store, "segmind", Config{Rate: rate, Burst: burst, Logger: log}) // one per "replica"
			wg.Go(func() { waitLoop(ctx, l, &g) })
		}
		wg.Wait()

		grants := g.times()
		// Grants at 0, 0 (burst), 0.2, 0.4, …, 10.0: Rate·10s + Burst.
		if want := rate*10 + burst; len(grants) != want {
			t.Errorf("grants in 10s = %d, want %d", len(grants), want)
		}
		if m := maxInWindow(grants, time.Second); m > rate+burst {
			t.Errorf("max grants in a 1s window = %d, want <= %d", m, rate+burst)
		}
		if m := maxInWindow(grants, 0); m != burst {
			t.Errorf("max grants at one instant = %d, want burst %d", m, burst)
		}
		if last := grants[len(grants)-1].Sub(start); last != 10*time.Second {
			t.Errorf("last grant at %v, want 10s", last)
		}
	})
}

func TestBlockDelaysEveryWaiter(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"replicas", "shared", "self"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) { testBlockDelaysEveryWaiter(t, mode) })
		})
	}
}

// testBlockDelaysEveryWaiter: 8 waiters, each on its own Limiter
// ("replicas") or all on one ("shared"), and a Block from another Limiter,
// or from the waiters' Limiter ("self").
func testBlockDelaysEveryWaiter(t *testing.T, mode string) {
	const rate, burst = 5, 2
	store := NewMemStore()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 5900*time.Millisecond)
	defer cancel()
	var g grantLog
	var wg sync.WaitGroup
	shared := New(store, "vimmerse", Config{Rate: rate, Burst: burst})
	for range 8 {
		l := shared
		if mode == "replicas" {
			l = New(store, "vimmerse", Config{Rate: rate, Burst: burst})
		}
		wg.Go(func() { waitLoop(ctx, l, &g) })
	}

	time.Sleep(1100 * time.Millisecond) // advance the fake clock
	other, _ := testLogger(t)
	replica := New(store, "vimmerse", Config{Rate: rate, Burst: burst, Logger: other})
	if mode == "self" {
		replica = shared
	}
	blockedAt, until := time.Now(), start.Add(4*time.Second)
	if err := replica.Block(ctx, until); err != nil {
		t.Fatalf("Block: %v", err)
	}
	if err := replica.Block(ctx, start.Add(2*time.Second)); err != nil { // earlier: no effect
		t.Fatalf("Block earlier: %v", err)
	}
	if got, err := replica.BlockedUntil(ctx); err != nil || !got.Equal(until) {
		t.Errorf("BlockedUntil = %v, %v; want %v", got.Sub(start), err, until.Sub(start))
	}
	wg.Wait()

	var after []time.Time
	for _, ts := range g.times() {
		if ts.After(blockedAt) {
			if ts.Before(until) {
				t.Errorf("grant at %v, before until %v", ts.Sub(start), until.Sub(start))
			}
			after = append(after, ts)
		}
	}
	after = sortedTimes(after)
	if len(after) == 0 || !after[0].Equal(until) {
		t.Fatalf("first grants after Block = %v, want the first at %v", after, until.Sub(start))
	}
	// One token at until (no burst), then one per 200ms: 4.0, 4.2, …, 5.8.
	if len(after) != 10 {
		t.Errorf("%d grants after Block, want 10", len(after))
	}
	if m := maxInWindow(after, time.Second); m != rate+1 {
		t.Errorf("max grants in a 1s window after Block = %d, want %d", m, rate+1)
	}
	if m := maxInWindow(after, 0); m != 1 {
		t.Errorf("grants at one instant after Block = %d, want 1", m)
	}
}

// TestWaitFIFO queues waiters one after the other on a closed limiter, then
// opens it: the first Burst get the first batch, the others one per
// interval in the order they called Wait; one that gives up is skipped.
func TestWaitFIFO(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const n, gaveUp = 12, 5
		l := New(NewMemStore(), "kling", Config{Rate: 0, Burst: 3})
		start := time.Now()
		got := make([]time.Duration, n)
		var wg sync.WaitGroup
		for i := range n {
			ctx := t.Context()
			if i == gaveUp {
				c, cancel := context.WithTimeout(ctx, 11500*time.Millisecond)
				defer cancel()
				ctx = c
			}
			wg.Go(func() {
				if _, err := l.Wait(ctx); err != nil {
					got[i] = -time.Since(start)
					return
				}
				got[i] = time.Since(start)
			})
			synctest.Wait() // waiter i is queued before waiter i+1 calls Wait
		}
		time.Sleep(10 * time.Second)
		l.SetRate(1, 3)
		wg.Wait()

		s := time.Second
		want := []time.Duration{10 * s, 10 * s, 10 * s, 11 * s, 12 * s, -11500 * time.Millisecond,
			13 * s, 14 * s, 15 * s, 16 * s, 17 * s, 18 * s}
		if !slices.Equal(got, want) {
			t.Errorf("grants at %v, want %v (negative: gave up)", got, want)
		}
		// One read; one write for the batch of 3, then one per token.
		if st := l.Stats(); st != (Stats{Reads: 1, Writes: 9, Granted: n - 1}) {
			t.Errorf("stats = %+v", st)
		}
	})
}

// TestWaitersShareFairly: any number of goroutines looping on one Limiter
// get equal shares (FIFO: round robin), and the Limiter reads the store
// once, however many wait.
func TestWaitersShareFairly(t *testing.T) {
	t.Parallel()
	for _, waiters := range []int{1, 10, 100, 1000} {
		t.Run(fmt.Sprintf("waiters=%d", waiters), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				const rate, burst, run = 100, 2, 10 * time.Second
				store := &countingStore{Store: NewMemStore()}
				l := New(store, "samsar", Config{Rate: 0, Burst: burst}) // closed until all wait
				ctx, cancel := context.WithTimeout(t.Context(), run+time.Millisecond)
				defer cancel()
				counts := make([]int, waiters)
				var wg sync.WaitGroup
				for i := range waiters {
					wg.Go(func() {
						for {
							if _, err := l.Wait(ctx); err != nil {
								return
							}
							counts[i]++
						}
					})
				}
				synctest.Wait()
				l.SetRate(rate, burst)
				wg.Wait()
				total := 0
				for _, c := range counts {
					total += c
				}
				if want := rate*int(run/time.Second) + burst; total != want {
					t.Errorf("%d grants in %v, want %d", total, run, want)
				}
				if lo, hi := slices.Min(counts), slices.Max(counts); hi-lo > 1 {
					t.Errorf("grants per waiter from %d to %d, want equal shares (±1)", lo, hi)
				}
				if r := store.reads.Load(); r != 1 {
					t.Errorf("%d reads for %d grants, want 1", r, total)
				}
				if w := store.writes.Load(); w > int64(total) {
					t.Errorf("%d writes for %d grants", w, total)
				}
				if st := l.Stats(); st.Reads != 1 || st.Granted != int64(total) || st.Conflicts != 0 {
					t.Errorf("stats = %+v", st)
				}
			})
		})
	}
}

// TestConflictReads: Limiters on one key read the store only after losing
// a CAS to each other (plus once at the start).
func TestConflictReads(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const rate, burst, replicas = 10, 2, 3
		store := NewMemStore()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second+time.Millisecond)
		defer cancel()
		var g grantLog
		var wg sync.WaitGroup
		ls := make([]*Limiter, replicas)
		for i := range ls {
			ls[i] = New(store, "segmind", Config{Rate: rate, Burst: burst})
			for range 4 {
				wg.Go(func() { waitLoop(ctx, ls[i], &g) })
			}
		}
		wg.Wait()
		if n, want := len(g.times()), rate*10+burst; n != want {
			t.Errorf("%d grants, want %d", n, want)
		}
		conflicts := int64(0)
		for i, l := range ls {
			st := l.Stats()
			t.Logf("replica %d: %+v", i, st)
			if st.Reads > st.Conflicts+1 {
				t.Errorf("replica %d: %d reads, %d conflicts: want reads <= conflicts+1", i, st.Reads, st.Conflicts)
			}
			conflicts += st.Conflicts
		}
		if conflicts == 0 {
			t.Error("no conflicts between replicas: the test does not test")
		}
	})
}

// TestPumpStops: when the last waiter gives up, the Limiter's goroutine
// ends (synctest would report it blocked otherwise), and a later Wait
// starts a new one.
func TestPumpStops(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := New(NewMemStore(), "camb", Config{Rate: 0, Burst: 1}) // closed
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				if _, err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Wait = %v, want deadline exceeded", err)
				}
			})
		}
		wg.Wait()
		cancel()
		synctest.Wait()
		l.mu.Lock()
		pumping, queued := l.pumping, l.queue.Len()
		l.mu.Unlock()
		if pumping || queued != 0 {
			t.Errorf("after every waiter left: pumping %v, %d queued", pumping, queued)
		}
		l.SetRate(1, 1)
		if waited, err := l.Wait(t.Context()); err != nil || waited != 0 {
			t.Errorf("Wait after reopening = %v, %v", waited, err)
		}
	})
}

func TestWaitReturnsCauseOnCancel(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		errStop := errors.New("shutting down")
		l := New(NewMemStore(), "camb", Config{Rate: 0.1, Burst: 1})
		if _, err := l.Wait(t.Context()); err != nil {
			t.Fatalf("first Wait: %v", err)
		}
		ctx, cancel := context.WithCancelCause(t.Context())
		time.AfterFunc(time.Second, func() { cancel(errStop) })
		start := time.Now()
		waited, err := l.Wait(ctx) // next token only at 10s
		if !errors.Is(err, errStop) {
			t.Errorf("Wait error = %v, want %v", err, errStop)
		}
		if d := time.Since(start); d != time.Second || waited != time.Second {
			t.Errorf("Wait returned after %v (waited %v), want 1s", d, waited)
		}

		if st := l.Stats(); st.Granted != 1 || st.Writes != 1 || st.Dropped != 0 {
			t.Errorf("stats = %+v, want 1 grant, 1 write, nothing dropped", st)
		}

		// A done ctx takes no token.
		fresh := New(NewMemStore(), "camb", Config{Rate: 0.1, Burst: 1})
		if _, err := fresh.Wait(ctx); !errors.Is(err, errStop) {
			t.Errorf("Wait on done ctx = %v, want %v", err, errStop)
		}
		if waited, err := fresh.Wait(t.Context()); err != nil || waited != 0 {
			t.Errorf("Wait after cancelled Wait = %v, %v; want the token still there", waited, err)
		}
	})
}

func TestSetRateTakesEffect(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		l := New(NewMemStore(), "samsar", Config{Rate: 10, Burst: 1})
		start := time.Now()
		at := func() time.Duration { // may run on another goroutine: no Fatal
			if _, err := l.Wait(ctx); err != nil {
				t.Errorf("Wait: %v", err)
			}
			return time.Since(start)
		}
		var got []time.Duration
		for range 3 {
			got = append(got, at())
		}
		l.SetRate(1, 1) // the slot at 0.3s stays, then one per second
		for range 3 {
			got = append(got, at())
		}
		ms := time.Millisecond
		if want := []time.Duration{0, 100 * ms, 200 * ms, 300 * ms, 1300 * ms, 2300 * ms}; !slices.Equal(got, want) {
			t.Errorf("grants at %v, want %v", got, want)
		}

		// A larger burst wakes a blocked waiter at once (TAT 3.3s - 2s tolerance).
		done := make(chan time.Duration)
		go func() { done <- at() }()
		time.Sleep(500 * time.Millisecond)
		l.SetRate(1, 3)
		if d := <-done; d != 2800*ms {
			t.Errorf("grant after burst raise at %v, want 2.8s", d)
		}

		// Rate 0 closes the limiter until a positive rate is set.
		l.SetRate(0, 1)
		go func() { done <- at() }()
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case d := <-done:
			t.Fatalf("granted at %v with rate 0", d)
		default:
		}
		l.SetRate(1, 1)
		if d := <-done; d != 62800*ms {
			t.Errorf("grant after reopening at %v, want 62.8s", d)
		}
	})
}

// flakyStore is a MemStore that can be switched off.
type flakyStore struct {
	*MemStore
	down   atomic.Bool
	writes atomic.Int64
}

var errUnavailable = errors.New("kv unavailable")

func (s *flakyStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if s.down.Load() {
		return nil, 0, errUnavailable
	}
	return s.MemStore.Get(ctx, key)
}

func (s *flakyStore) Create(ctx context.Context, key string, v []byte) (uint64, error) {
	return s.Update(ctx, key, v, 0)
}

func (s *flakyStore) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if s.down.Load() {
		return 0, errUnavailable
	}
	r, err := s.MemStore.Update(ctx, key, v, rev)
	if err == nil {
		s.writes.Add(1)
	}
	return r, err
}

// A store that stops answering fails the Limiter closed: nothing is
// granted. Once the failures have lasted UnavailableAfter the Limiter
// reports an outage and its waiters return ErrUnavailable (they come back
// later) instead of waiting forever; Waits that come meanwhile fail at
// once until the next try. The first store call that works ends it.
func TestWaitFailsClosed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		log, warns := testLogger(t)
		store := &flakyStore{MemStore: NewMemStore()}
		var mu sync.Mutex
		var outages []Outage
		l := New(store, "segmind", Config{Rate: 1, Burst: 1, Logger: log, OnOutage: func(o Outage) {
			mu.Lock()
			outages = append(outages, o)
			mu.Unlock()
		}})
		store.down.Store(true)

		if err := l.Block(t.Context(), time.Now().Add(time.Second)); !errors.Is(err, errUnavailable) {
			t.Errorf("Block with store down = %v, want %v", err, errUnavailable)
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		_, err := l.Wait(ctx)
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errUnavailable) {
			t.Errorf("Wait with store down = %v, want ErrUnavailable naming the store's error", err)
		}
		if d := time.Since(start); d < defaultUnavailable || d > defaultUnavailable+storeBackoffMax {
			t.Errorf("Wait gave up after %v, want after %v (and one back-off)", d, defaultUnavailable)
		}
		if _, err := l.Wait(ctx); !errors.Is(err, ErrUnavailable) || time.Since(start) > defaultUnavailable+storeBackoffMax {
			t.Errorf("Wait during the outage = %v after %v, want ErrUnavailable at once", err, time.Since(start))
		}
		if o, out := l.Outage(); !out || !errors.Is(o.Err, errUnavailable) || o.Since.After(start) {
			t.Errorf("Outage() = %+v, %v; want out since the first failure", o, out)
		}
		if n := store.writes.Load(); n != 0 {
			t.Errorf("%d writes while down", n)
		}
		if n := warns.Load(); n < 1 || n > 3 {
			t.Errorf("%d warnings in a 10s outage, want 1..3", n)
		}

		store.down.Store(false)
		time.Sleep(storeBackoffMax) // past the next try
		up := time.Now()
		if _, err := l.Wait(t.Context()); err != nil || time.Since(up) > 0 {
			t.Errorf("Wait after recovery = %v after %v, want a token at once", err, time.Since(up))
		}
		if _, out := l.Outage(); out {
			t.Error("still out after a store call worked")
		}
		mu.Lock()
		defer mu.Unlock()
		if len(outages) != 2 || outages[0].Err == nil || outages[1].Err != nil || !outages[0].Since.Equal(outages[1].Since) {
			t.Errorf("OnOutage calls %+v, want the outage's start then its end", outages)
		}
	})
}

// lossyStore is a MemStore whose keys can be lost (a bucket recreated, a
// memory-stored bucket after a server restart) and whose writes can be
// delayed (a request held across a reconnect).
type lossyStore struct {
	*MemStore
	delayNext atomic.Int64 // the next Update takes this long
}

func (s *lossyStore) lose(key string) {
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

func (s *lossyStore) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if d := s.delayNext.Swap(0); d > 0 {
		time.Sleep(time.Duration(d))
	}
	return s.MemStore.Update(ctx, key, v, rev)
}

// A schedule lost right after a burst (the key deleted before the next
// grant) is written again from the last TAT the Limiter knew: the window
// bound holds across the loss. Before, the Limiter started a fresh
// schedule and let a second burst through: 10 grants in the first second
// against 5/s and a burst of 3.
func TestLostStateAllowsNoExtraBurst(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const rate, burst = 5, 3
		store := &lossyStore{MemStore: NewMemStore()}
		l := New(store, "samsar", Config{Rate: rate, Burst: burst})
		ctx, cancel := context.WithCancel(t.Context())
		var g grantLog
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { waitLoop(ctx, l, &g) })
		}
		time.Sleep(100 * time.Millisecond) // after the first burst
		store.lose("samsar")
		time.Sleep(2 * time.Second)
		cancel()
		wg.Wait()
		if m := maxInWindow(g.times(), time.Second); m > rate+burst {
			t.Errorf("max grants in a 1s window = %d across the loss, want <= %d", m, rate+burst)
		}
	})
}

// A compare-and-set whose answer comes back late (held across a
// reconnect: 2 s here) grants nothing: its tokens were for 2 s ago, and
// with them and the burst due now, twice the burst would go out at once.
func TestLateGrantIsDropped(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const rate, burst = 5, 2
		store := &lossyStore{MemStore: NewMemStore()}
		l := New(store, "samsar", Config{Rate: rate, Burst: burst})
		if _, err := l.Wait(t.Context()); err != nil { // the key exists: the next write is an Update
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		store.delayNext.Store(int64(2 * time.Second))
		ctx, cancel := context.WithCancel(t.Context())
		var g grantLog
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { waitLoop(ctx, l, &g) })
		}
		time.Sleep(3 * time.Second)
		cancel()
		wg.Wait()
		if m := maxInWindow(g.times(), 0); m > burst {
			t.Errorf("%d grants at one instant, want at most the burst %d", m, burst)
		}
		if m := maxInWindow(g.times(), time.Second); m > rate+burst {
			t.Errorf("max grants in a 1s window = %d, want <= %d", m, rate+burst)
		}
		if st := l.Stats(); st.Dropped < 1 {
			t.Errorf("stats %+v: want the late grant's tokens dropped", st)
		}
	})
}

func TestStoreContract(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	stores := map[string]Store{
		"mem": NewMemStore(),
		"kv":  NewKVStore(createBucket(t, connectJS(t, s), "contract")),
	}
	for name, st := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			if _, _, err := st.Get(ctx, "k"); !errors.Is(err, ErrNoState) {
				t.Errorf("Get absent = %v, want ErrNoState", err)
			}
			r1, err := st.Create(ctx, "k", []byte("a"))
			if err != nil || r1 == 0 {
				t.Fatalf("Create = %d, %v", r1, err)
			}
			if _, err := st.Create(ctx, "k", []byte("b")); !errors.Is(err, ErrConflict) {
				t.Errorf("second Create = %v, want ErrConflict", err)
			}
			r2, err := st.Update(ctx, "k", []byte("c"), r1)
			if err != nil || r2 == r1 {
				t.Fatalf("Update = %d, %v", r2, err)
			}
			if _, err := st.Update(ctx, "k", []byte("d"), r1); !errors.Is(err, ErrConflict) {
				t.Errorf("stale Update = %v, want ErrConflict", err)
			}
			if v, rev, err := st.Get(ctx, "k"); err != nil || string(v) != "c" || rev != r2 {
				t.Errorf("Get = %q, %d, %v; want c, %d", v, rev, err, r2)
			}
		})
	}
}
