package slots

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/waitfor"
)

// TestCapUnderContention: 5 workers on separate connections, 3 local job
// streams each, share Cap 4. A worker advertises its streams (want 3) and
// the top priority among the waiting ones. Jobs (4-12 ms) run only on
// acquired slots and reuse them until Yield says to give one back (or at
// random, 1 in 20). No committed revision and no moment has more than Cap
// jobs running, and all the slots are used at once. With one priority
// every worker gets slots; with random priorities (strict: low waits while
// higher waits) slots are yielded to higher priorities.
// BenchmarkCapUnderContention reports how busy the slots were and how long
// each priority waited.
func TestCapUnderContention(t *testing.T) {
	t.Parallel()
	t.Run("equal", func(t *testing.T) {
		t.Parallel()
		capUnderContention(t, func() int { return PriorityNormal }, 0)
	})
	t.Run("mixed", func(t *testing.T) {
		t.Parallel()
		capUnderContention(t, func() int { return 1 + rand.N(PriorityHigh) }, 0)
	})
}

func BenchmarkCapUnderContention(b *testing.B) {
	for b.Loop() {
		f := capUnderContention(b, func() int { return 1 + rand.N(PriorityHigh) }, 3*time.Second)
		b.ReportMetric(f.util, "utilisation")
		b.ReportMetric(f.ledgerUtil, "ledger_utilisation")
		b.ReportMetric(f.highWait.Seconds()*1000, "high_wait_ms")
		b.ReportMetric(f.lowWait.Seconds()*1000, "low_wait_ms")
	}
}

// contentionFigures are what a run of capUnderContention measured.
type contentionFigures struct {
	util, ledgerUtil  float64       // slots busy with jobs; held, by the ledger
	highWait, lowWait time.Duration // mean wait for a slot
}

// capUnderContention runs the scenario for run, or (run 0) until what the
// test checks has happened (all slots busy at once, every worker served or
// slots yielded, 100 jobs), however long a loaded host takes.
func capUnderContention(t testing.TB, priority func() int, run time.Duration) contentionFigures {
	const (
		capacity = 4
		workers  = 5
		local    = 3
	)
	e := newEnv(t)
	stopWatch := invariantWatch(t, e.kv, "segmind", capacity)

	var (
		runningNow, maxRunning atomic.Int64
		busy                   atomic.Int64 // slot-nanoseconds of jobs
		perWorker              [workers]atomic.Int64
		highWait, lowWait      [workers]atomic.Int64 // total wait for a slot by priority, ns
		highN, lowN            [workers]atomic.Int64
		yields, releases       atomic.Int64
	)
	ctx, cancel := context.WithTimeout(t.Context(), cmp.Or(run, 2*time.Minute))
	defer cancel()

	// demand is one worker's waiting streams by priority.
	type demand struct {
		mu      sync.Mutex
		waiting [PriorityHigh + 1]int
	}
	advertise := func(p *running, d *demand, prio, delta int) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.waiting[prio] += delta
		top := PriorityNone
		for q := PriorityHigh; q > PriorityNone; q-- {
			if d.waiting[q] > 0 {
				top = q
				break
			}
		}
		if err := p.SetDemand(context.Background(), local, top); err != nil {
			t.Errorf("SetDemand: %v", err)
		}
	}
	pools := make([]*running, workers)
	for i := range pools {
		pools[i] = e.start(t, Config{Worker: fmt.Sprintf("w%d", i), Cap: capacity})
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range pools {
		d := new(demand)
		for range local {
			wg.Go(func() {
				for ctx.Err() == nil {
					prio := priority()
					advertise(p, d, prio, +1)
					began := time.Now()
					got := 0
					for got == 0 && ctx.Err() == nil {
						seen := p.Version()
						var err error
						if got, err = p.TryAcquire(ctx, 1, prio); err != nil {
							if ctx.Err() == nil {
								t.Errorf("TryAcquire: %v", err)
							}
							break
						}
						if got == 0 {
							select {
							case <-p.Changed(seen):
							case <-ctx.Done():
							}
						}
					}
					advertise(p, d, prio, -1)
					if got == 0 {
						return
					}
					switch waited := int64(time.Since(began)); prio {
					case PriorityHigh:
						highWait[i].Add(waited)
						highN[i].Add(1)
					case PriorityLow:
						lowWait[i].Add(waited)
						lowN[i].Add(1)
					}
					for { // jobs on this slot until it is given back
						n := runningNow.Add(1)
						for m := maxRunning.Load(); n > m && !maxRunning.CompareAndSwap(m, n); m = maxRunning.Load() {
						}
						began := time.Now()
						time.Sleep(4*time.Millisecond + rand.N(8*time.Millisecond))
						busy.Add(int64(time.Since(began)))
						runningNow.Add(-1)
						perWorker[i].Add(1)
						if ctx.Err() != nil {
							break
						}
						if p.Yield(priority()) { // the next job's priority
							yields.Add(1)
							break
						}
						if rand.N(20) == 0 {
							releases.Add(1)
							break
						}
					}
					if err := p.Release(context.Background(), 1); err != nil {
						t.Errorf("Release: %v", err)
					}
				}
			})
		}
	}
	if run == 0 {
		go func() {
			defer cancel()
			_ = waitfor.Poll(2*time.Minute, func() bool {
				total, served, mixed := int64(0), 0, [2]bool{}
				for i := range perWorker {
					total += perWorker[i].Load()
					if perWorker[i].Load() > 0 {
						served++
					}
					mixed[0] = mixed[0] || highN[i].Load() > 0
					mixed[1] = mixed[1] || lowN[i].Load() > 0
				}
				return ctx.Err() != nil || maxRunning.Load() == capacity && total >= 100 && served == workers &&
					(yields.Load() > 0 || !(mixed[0] && mixed[1]))
			})
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, p := range pools {
		if err := p.stop(t); err != nil {
			t.Errorf("stop: %v", err)
		}
	}
	led := stopWatch()

	util := float64(busy.Load()) / float64(capacity*elapsed)
	var jobs []int64
	var writes, conflicts uint64
	var hw, hn, lw, ln int64
	for i := range perWorker {
		jobs = append(jobs, perWorker[i].Load())
		a := pools[i].Snapshot()
		writes += a.Writes
		conflicts += a.Conflicts
		hw, hn, lw, ln = hw+highWait[i].Load(), hn+highN[i].Load(), lw+lowWait[i].Load(), ln+lowN[i].Load()
	}
	t.Logf("max running %d, utilisation %.2f (ledger %.2f), jobs per worker %v, yields %d, random releases %d, %d writes, %d conflicts, %d revisions checked (max sum %d); mean wait for a slot: high %v (%d), low %v (%d)",
		maxRunning.Load(), util, led.util, jobs, yields.Load(), releases.Load(), writes, conflicts, led.seen, led.maxSum,
		time.Duration(hw/max(1, hn)), hn, time.Duration(lw/max(1, ln)), ln)
	if m := maxRunning.Load(); m > capacity {
		t.Errorf("max running = %d, want <= %d", m, capacity)
	}
	if m := maxRunning.Load(); m < capacity {
		t.Errorf("max running = %d, want the %d slots used at once", m, capacity)
	}
	if hn > 0 && ln > 0 { // mixed
		if yields.Load() == 0 {
			t.Error("no yields")
		}
	} else {
		for i, n := range jobs {
			if n == 0 {
				t.Errorf("worker %d ran no job", i)
			}
		}
	}
	if led.seen < 10 || led.maxSum != capacity {
		t.Errorf("watched %d revisions with max %d slots; want many, reaching %d", led.seen, led.maxSum, capacity)
	}
	return contentionFigures{util: util, ledgerUtil: led.util, highWait: time.Duration(hw / max(1, hn)), lowWait: time.Duration(lw / max(1, ln))}
}

// TestCrashedHolderExpires: a worker killed while holding every slot (no
// release) frees them when its lease expires, and not before; the other
// worker learns it from a change of its view (the expiry).
func TestCrashedHolderExpires(t *testing.T) {
	t.Parallel()
	const ttl = time.Second
	e := newEnv(t)
	a := e.start(t, Config{Worker: "a", Cap: 3, TTL: ttl}, crash)
	b := e.start(t, Config{Worker: "b", Cap: 3, TTL: ttl})
	acquire(t, a.Pool, 3, PriorityNormal, 30*time.Second)
	if err := a.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}
	a.mu.Lock()
	until := a.until
	a.mu.Unlock()

	await(t, b.Pool, 30*time.Second, "b sees a's slots", func() bool { h, ok := holderOf(b.Pool, "a"); return ok && h.N == 3 })
	got, err := b.TryAcquire(t.Context(), 1, PriorityHigh)
	if err != nil {
		t.Fatal(err)
	}
	if now := time.Now(); got != 0 && now.Before(until) {
		t.Fatalf("b got %d of a's slots %v before a's lease expired", got, until.Sub(now))
	}
	acquire(t, b.Pool, 3-got, PriorityNormal, 30*time.Second)
	if now := time.Now(); now.Before(until) {
		t.Errorf("b got a's slots %v before a's lease expired", until.Sub(now))
	}
}

// TestStopReleases: Run releases the slots when its ctx ends, at once.
func TestStopReleases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.start(t, Config{Worker: "a", Cap: 2})
	b := e.start(t, Config{Worker: "b", Cap: 2})
	acquire(t, a.Pool, 2, PriorityNormal, 5*time.Second)
	if err := a.SetDemand(t.Context(), 2, PriorityNone); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := a.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}
	acquire(t, b.Pool, 2, PriorityNormal, 5*time.Second) // TTL is 60 s
	t.Logf("slots moved %v after stop", time.Since(began))
	if _, ok := holderOf(b.Pool, "a"); ok {
		t.Error("a's entry is still there")
	}
	if _, err := a.TryAcquire(t.Context(), 1, PriorityNormal); !errors.Is(err, ErrStopped) {
		t.Errorf("TryAcquire after stop = %v, want ErrStopped", err)
	}
	if a.Held() != 0 {
		t.Errorf("Held after stop = %d", a.Held())
	}
}

// TestPriority: a holder waiting with a higher top makes the holder of
// every slot yield, the freed slot is not taken back by it, and the
// waiting holder gets it.
func TestPriority(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t)
	a := e.start(t, Config{Worker: "a", Cap: 2})
	b := e.start(t, Config{Worker: "b", Cap: 2})
	if err := a.SetDemand(ctx, 3, PriorityNormal); err != nil {
		t.Fatal(err)
	}
	acquire(t, a.Pool, 2, PriorityNormal, 5*time.Second)
	if a.Yield(PriorityNormal) {
		t.Fatal("Yield with nobody waiting")
	}
	if err := b.SetDemand(ctx, 1, PriorityHigh); err != nil {
		t.Fatal(err)
	}
	await(t, a.Pool, 5*time.Second, "a sees b's demand", func() bool { h, ok := holderOf(a.Pool, "b"); return ok && h.Want == 1 })
	if !a.Yield(PriorityNormal) {
		t.Fatal("Yield(normal) = false with a high-priority holder waiting")
	}
	if err := a.Release(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got, err := a.TryAcquire(ctx, 1, PriorityNormal); err != nil || got != 0 {
		t.Fatalf("a's TryAcquire(normal) took the slot freed for b: %d, %v", got, err)
	}
	acquire(t, b.Pool, 1, PriorityHigh, 5*time.Second)
	if err := b.SetDemand(ctx, 1, PriorityNone); err != nil {
		t.Fatal(err)
	}
	await(t, a.Pool, 5*time.Second, "a sees b served", func() bool { h, ok := holderOf(a.Pool, "b"); return ok && h.N == 1 })
	if a.Yield(PriorityNormal) {
		t.Error("Yield = true once b is served")
	}
	if a.Held() != 1 || b.Held() != 1 {
		t.Errorf("held a=%d b=%d, want 1 and 1", a.Held(), b.Held())
	}
}

// TestFairShare: two holders with the same top converge to Cap/2 each as
// jobs end, and then stop moving slots.
func TestFairShare(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t)
	a := e.start(t, Config{Worker: "a", Cap: 4})
	b := e.start(t, Config{Worker: "b", Cap: 4})
	if err := a.SetDemand(ctx, 6, PriorityNormal); err != nil {
		t.Fatal(err)
	}
	acquire(t, a.Pool, 4, PriorityNormal, 5*time.Second)
	if err := b.SetDemand(ctx, 3, PriorityNormal); err != nil {
		t.Fatal(err)
	}
	await(t, a.Pool, 5*time.Second, "a sees b's demand", func() bool { _, ok := holderOf(a.Pool, "b"); return ok })
	for moved := 0; a.Held() > 2; moved++ {
		if moved > 2 {
			t.Fatalf("more than 2 slots moved; a=%d b=%d", a.Held(), b.Held())
		}
		if !a.Yield(PriorityNormal) { // a job of a ended
			t.Fatalf("a (%d slots) does not yield to b (%d) below its fair share", a.Held(), b.Held())
		}
		if err := a.Release(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if got, err := a.TryAcquire(ctx, 1, PriorityNormal); err != nil || got != 0 {
			t.Fatalf("a took back the slot it yielded: %d, %v", got, err)
		}
		want := b.Held() + 1
		acquire(t, b.Pool, 1, PriorityNormal, 5*time.Second)
		await(t, a.Pool, 5*time.Second, "a sees b's slot", func() bool { h, _ := holderOf(a.Pool, "b"); return h.N == want })
	}
	if a.Held() != 2 || b.Held() != 2 {
		t.Errorf("held a=%d b=%d, want 2 and 2", a.Held(), b.Held())
	}
	if a.Yield(PriorityNormal) || b.Yield(PriorityNormal) {
		t.Error("a holder at its fair share yields")
	}
	await(t, b.Pool, 5*time.Second, "b sees a", func() bool { h, _ := holderOf(b.Pool, "a"); return h.N == 2 })
	if got, err := b.TryAcquire(ctx, 1, PriorityNormal); err != nil || got != 0 {
		t.Errorf("TryAcquire with no free slot = %d, %v", got, err)
	}
}

// TestSetDemandCoalesced: repeated calls with the same values write once;
// changing values write at most once per 50 ms and the last value wins.
func TestSetDemandCoalesced(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t)
	a := e.start(t, Config{Worker: "a", Cap: 4})
	b := e.start(t, Config{Worker: "b", Cap: 4})
	rev0 := revision(t, e.kv, "segmind")
	for range 1000 {
		if err := a.SetDemand(ctx, 2, PriorityLow); err != nil {
			t.Fatal(err)
		}
	}
	await(t, a.Pool, 5*time.Second, "a's demand written, none pending", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.advWant == 2 && a.advTop == PriorityLow && !a.demandDirty
	})
	if d := revision(t, e.kv, "segmind") - rev0; d != 1 {
		t.Errorf("1000 SetDemand calls with the same values made %d revisions, want 1", d)
	}

	rev1 := revision(t, e.kv, "segmind")
	began := time.Now()
	for i := range 2000 {
		if err := a.SetDemand(ctx, 3+i%2, PriorityHigh); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if err := a.SetDemand(ctx, 7, PriorityNormal); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(began)
	await(t, b.Pool, 5*time.Second, "b sees a's last demand", func() bool {
		h, _ := holderOf(b.Pool, "a")
		return h.Want == 7 && h.Top == PriorityNormal
	})
	d := revision(t, e.kv, "segmind") - rev1
	t.Logf("2001 changing SetDemand calls over %v: %d writes", elapsed, d)
	if hi := uint64(time.Since(began)/coalesceEvery) + 2; d > hi {
		t.Errorf("%d writes in %v, want <= %d", d, time.Since(began), hi)
	}
}

// TestKVUnavailable: without the bucket nothing is granted, the worker's
// own lease runs out and Held reports 0; when the bucket is back the
// renewal claims the slots again.
func TestKVUnavailable(t *testing.T) {
	t.Parallel()
	const ttl = 800 * time.Millisecond
	ctx := t.Context()
	e := newEnv(t)
	a := e.start(t, Config{Worker: "a", Cap: 4, TTL: ttl})
	if err := a.SetDemand(ctx, 2, PriorityNormal); err != nil {
		t.Fatal(err)
	}
	acquire(t, a.Pool, 2, PriorityNormal, 5*time.Second)

	js := connect(t, e.s)
	if err := js.DeleteKeyValue(ctx, Bucket); err != nil {
		t.Fatalf("delete bucket: %v", err)
	}
	if got, err := a.TryAcquire(ctx, 1, PriorityNormal); err == nil || got != 0 {
		t.Errorf("TryAcquire without the bucket = %d, %v; want an error", got, err)
	}
	await(t, a.Pool, 5*ttl, "the lease to run out", func() bool { return a.Held() == 0 })

	createBucket(t, js)
	await(t, a.Pool, 20*time.Second, "the renewal to claim the slots", func() bool { return a.Held() == 2 })
	if got, err := a.TryAcquire(ctx, 1, PriorityNormal); err != nil || got != 1 {
		t.Errorf("TryAcquire after the bucket is back = %d, %v; want 1", got, err)
	}
}

// TestLeaseRenewed: a holder keeps its slots across several TTLs without
// acquiring again, renewing at most once per TTL/4. (A process kept from
// running for 5/8 of a TTL loses its lease by design: the TTL leaves a
// loaded host room.)
func TestLeaseRenewed(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	e := newEnv(t)
	a := e.start(t, Config{Worker: "a", Cap: 2, TTL: ttl})
	b := e.start(t, Config{Worker: "b", Cap: 2, TTL: ttl})
	acquire(t, a.Pool, 2, PriorityNormal, 5*time.Second)
	w0 := a.Snapshot().Writes
	began := time.Now()
	deadline := time.After(2 * ttl)
	for done := false; !done; {
		seen := b.Version()
		if got, err := b.TryAcquire(t.Context(), 1, PriorityNormal); err != nil || got != 0 {
			t.Fatalf("b got %d, %v while a holds its renewed slots", got, err)
		}
		if a.Held() != 2 {
			t.Fatalf("a's Held = %d during renewals", a.Held())
		}
		select {
		case <-b.Changed(seen):
		case <-deadline:
			done = true
		}
	}
	writes := a.Snapshot().Writes - w0
	t.Logf("%d renewals in %v (TTL %v)", writes, time.Since(began), ttl)
	if n := uint64(time.Since(began) / (ttl / 4)); writes < 2 || writes > n+2 {
		t.Errorf("%d renewals in %v, want 2 to %d", writes, time.Since(began), n+2)
	}
}

// TestRemovedEntryLosesLease: when another writer removes this worker's
// entry (a writer of an older release, which judged leases by its own
// clock, found it expired), Held drops to 0 at once; the renewal that
// follows claims the slots back only within free (none here), and later
// acquisitions work as usual.
func TestRemovedEntryLosesLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	kv := e.conn(t)
	a := e.start(t, Config{Worker: "a", Cap: 3})
	acquire(t, a.Pool, 2, PriorityNormal, 5*time.Second)
	put := func(n int) uint64 {
		t.Helper()
		rev, err := kv.Put(t.Context(), "segmind", fmt.Appendf(nil, `{"holders":{"old/1":{"n":%d,"until":%q,"want":0,"top":0}}}`,
			n, time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)))
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	rev := put(3) // a's entry gone, every slot taken
	await(t, a.Pool, 5*time.Second, "a to see its entry gone", func() bool { return a.Snapshot().Revision >= rev })
	if h := a.Held(); h != 0 {
		t.Errorf("Held = %d after the entry was removed", h)
	}
	put(1)
	// Claimed back by a renewal if it comes after the release, or by an
	// acquisition (which claims the lost slots first, then new ones).
	await(t, a.Pool, 5*time.Second, "a to hold 2 slots again", func() bool {
		if h := a.Held(); h < 2 {
			if _, err := a.TryAcquire(t.Context(), 2-h, PriorityNormal); err != nil {
				t.Fatal(err)
			}
		}
		return a.Held() == 2
	})
	if s := a.Snapshot(); s.Free != 0 {
		t.Errorf("free = %d, want 0 (a 2, old 1)", s.Free)
	}
}

// TestSkewedClockCannotPrune: a writer whose clock runs two minutes ahead
// (past a's 60 s lease) does not see a's lease expired: leases are judged
// by the server's clock, so it gets only the free slot.
func TestSkewedClockCannotPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.start(t, Config{Worker: "a", Cap: 3})
	acquire(t, a.Pool, 2, PriorityNormal, 5*time.Second)
	ahead := e.start(t, Config{Worker: "ahead", Cap: 3, Now: func() time.Time { return time.Now().Add(2 * time.Minute) }})
	acquire(t, ahead.Pool, 1, PriorityNormal, 5*time.Second)
	if n, err := ahead.TryAcquire(t.Context(), 2, PriorityNormal); err != nil || n != 0 {
		t.Errorf("TryAcquire beyond free = %d, %v; want 0 (a's lease is live)", n, err)
	}
	if h := a.Held(); h != 2 {
		t.Errorf("a holds %d, want 2", h)
	}
}

// TestSkewedCrashExpiresOnServerClock: a worker whose clock runs two
// minutes ahead crashes holding every slot. Its lease ends TTL after its
// last write by the server's clock, not TTL plus its skew: another worker
// gets the slots within a few TTLs (before, it waited two minutes more).
func TestSkewedCrashExpiresOnServerClock(t *testing.T) {
	t.Parallel()
	const ttl = time.Second
	e := newEnv(t)
	ahead := e.start(t, Config{Worker: "ahead", Cap: 2, TTL: ttl, Now: func() time.Time { return time.Now().Add(2 * time.Minute) }}, crash)
	b := e.start(t, Config{Worker: "b", Cap: 2, TTL: ttl})
	acquire(t, ahead.Pool, 2, PriorityNormal, 5*time.Second)
	await(t, b.Pool, 5*time.Second, "b sees ahead's slots", func() bool { h, ok := holderOf(b.Pool, "ahead"); return ok && h.N == 2 })
	if err := ahead.stop(t); err != nil {
		t.Fatal(err)
	}
	acquire(t, b.Pool, 2, PriorityNormal, 10*ttl)
}

// TestRestartSameWorkerID: a worker restarted under the same id (a new
// Pool: a new incarnation) while its predecessor's lease is live does not
// take that lease over. Its slots come out of free, so the two together
// never hold more than Cap: the predecessor's tasks may still run at the
// provider. Before, the new Pool found "its" entry, treated it as its own
// and granted itself Cap more.
func TestRestartSameWorkerID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	old := e.start(t, Config{Worker: "a", Cap: 3}, crash)
	acquire(t, old.Pool, 2, PriorityNormal, 5*time.Second)
	if err := old.stop(t); err != nil {
		t.Fatal(err)
	}
	restarted := e.start(t, Config{Worker: "a", Cap: 3})
	if restarted.Holder() == old.Holder() {
		t.Errorf("two incarnations share the holder name %q", old.Holder())
	}
	acquire(t, restarted.Pool, 1, PriorityNormal, 5*time.Second)
	if n, err := restarted.TryAcquire(t.Context(), 3, PriorityNormal); err != nil || n != 0 {
		t.Errorf("TryAcquire with the predecessor's lease live = %d, %v; want 0", n, err)
	}
	s := restarted.Snapshot()
	if s.Free != 0 || len(s.Holders) != 2 {
		t.Errorf("allocation %+v: want both incarnations, 2 + 1 slots", s)
	}
}

// TestRunTwice: Run is the Pool's only owner, and a stopped Pool grants
// nothing.
func TestRunTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := New(e.conn(t), Config{Provider: "segmind", Worker: "a", Cap: 1})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Errorf("Run with a cancelled ctx = %v", err)
	}
	if err := p.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	if _, err := p.TryAcquire(t.Context(), 1, PriorityNormal); !errors.Is(err, ErrStopped) {
		t.Errorf("TryAcquire after Run = %v, want ErrStopped", err)
	}
}

// TestReleaseAppliedAfterTimeout: a Release whose write timed out on the
// client but reached the server (a request buffered across a reconnect)
// leaves the view without this worker's entry and the release pending.
// The renewal that follows must settle the release, not claim the slots
// back: before, the no-change path forgot to lower n, so the next renewal
// re-took every released slot and the worker held them with no job (its
// engine, told they were released, waited for slots forever).
func TestReleaseAppliedAfterTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	kv := e.conn(t)
	p := New(kv, Config{Provider: "segmind", Worker: "a", Cap: 3, Logger: testLogger(t)})
	ctx := t.Context()
	if n, err := p.TryAcquire(ctx, 2, PriorityNormal); err != nil || n != 2 {
		t.Fatalf("TryAcquire = %d, %v", n, err)
	}
	// Release: Held drops at once, the write is pending...
	p.mu.Lock()
	p.release += 2
	p.mu.Unlock()
	// ...and lands on the server without this Pool hearing the answer.
	if _, err := kv.Put(ctx, "segmind", []byte(`{"holders":{}}`)); err != nil {
		t.Fatal(err)
	}
	if err := p.fetch(ctx); err != nil {
		t.Fatal(err)
	}
	// The renewals that follow (no demand).
	for range 2 {
		if _, err := p.commit(ctx, opRenew, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if h, ok := holderOf(p, "a"); ok {
		t.Fatalf("a holds %+v after releasing everything", h)
	}
	p.mu.Lock()
	n, rel := p.n, p.release
	p.mu.Unlock()
	if n != 0 || rel != 0 || p.Held() != 0 {
		t.Fatalf("n=%d release=%d Held=%d, want 0 0 0", n, rel, p.Held())
	}
}
