package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// countingStore counts the calls made to a real Store.
type countingStore struct {
	Store
	reads, writes, conflicts atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	s.reads.Add(1)
	return s.Store.Get(ctx, key)
}

func (s *countingStore) Create(ctx context.Context, key string, v []byte) (uint64, error) {
	return s.count(s.Store.Create(ctx, key, v))
}

func (s *countingStore) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	return s.count(s.Store.Update(ctx, key, v, rev))
}

func (s *countingStore) count(rev uint64, err error) (uint64, error) {
	s.writes.Add(1)
	if errors.Is(err, ErrConflict) {
		s.conflicts.Add(1)
	}
	return rev, err
}

// BenchmarkWaitHighRate measures one process's throughput when the limit is
// far above what the store can do one CAS per token: Rate 1e6, Burst 1000,
// 256 goroutines calling Wait on one Limiter over a loopback connection.
func BenchmarkWaitHighRate(b *testing.B) {
	const callers = 256
	s := startNATS(b)
	st := &countingStore{Store: NewKVStore(createBucket(b, connectJS(b, s), "rl_bench"))}
	l := New(st, "bench", Config{Rate: 1e6, Burst: 1000})
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := l.Wait(context.Background()); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tokens/s")
	b.ReportMetric(float64(st.reads.Load())/float64(b.N), "reads/token")
	b.ReportMetric(float64(st.writes.Load())/float64(b.N), "writes/token")
}

// TestKVReadsPerToken: one process alone on its key reads the store once,
// whatever the number of goroutines waiting on its Limiter (1 to 1000)
// and the tokens they take (200 here), on a real KV bucket: it compares
// and sets against the state it wrote last. A read more per store error
// (a timed-out CAS is read again). The reads per token are the figure
// README reports.
func TestKVReadsPerToken(t *testing.T) {
	const rate, burst, tokens = 2000, 2, 200
	s := startNATS(t)
	kv := createBucket(t, connectJS(t, s), "rl_reads")
	for _, waiters := range []int{1, 10, 100, 1000} {
		t.Run(fmt.Sprintf("waiters=%d", waiters), func(t *testing.T) {
			st := &countingStore{Store: NewKVStore(kv)}
			l := New(st, fmt.Sprintf("w%d", waiters), Config{Rate: rate, Burst: burst})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var grants atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range waiters {
				wg.Go(func() {
					for {
						if _, err := l.Wait(ctx); err != nil {
							return
						}
						if grants.Add(1) >= tokens {
							cancel()
						}
					}
				})
			}
			wg.Wait()
			n, reads, errs := grants.Load(), st.reads.Load(), l.Stats().Errors
			t.Logf("%d waiters: %d tokens in %v, %d reads (%.3f/token), %d writes, %d conflicts, %d store errors",
				waiters, n, time.Since(start).Round(time.Millisecond), reads, float64(reads)/float64(n), st.writes.Load(), st.conflicts.Load(), errs)
			if reads > 1+errs {
				t.Errorf("%d reads for %d tokens with %d store errors, want 1 (+1 per error)", reads, n, errs)
			}
		})
	}
}

// TestLingerSharesWrites: at a rate far above the demand, callers that
// arrive one at a time each cost a compare-and-set; with Linger the ones
// arriving within it share one, and none waits more than Linger.
func TestLingerSharesWrites(t *testing.T) {
	t.Parallel()
	const callers, spacing, linger = 40, time.Millisecond, 10 * time.Millisecond
	run := func(name string, linger time.Duration) (writes int64, worst time.Duration) {
		synctest.Test(t, func(t *testing.T) {
			st := &countingStore{Store: NewMemStore()}
			l := New(st, name, Config{Rate: 10000, Burst: 100, Linger: linger})
			var wg sync.WaitGroup
			var mu sync.Mutex
			for range callers {
				time.Sleep(spacing) // callers one at a time, as polls of many jobs arrive
				wg.Go(func() {
					d, err := l.Wait(t.Context())
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					worst = max(worst, d)
					mu.Unlock()
				})
			}
			wg.Wait()
			writes = st.writes.Load()
		})
		return writes, worst
	}
	plain, _ := run("plain", 0)
	lingered, worst := run("linger", linger)
	t.Logf("%d callers %v apart: %d writes without Linger, %d with %v (longest wait %v)", callers, spacing, plain, lingered, linger, worst)
	if plain != callers {
		t.Errorf("%d writes for %d callers one at a time without Linger, want one each", plain, callers)
	}
	if lingered*3 > plain {
		t.Errorf("Linger saved too little: %d writes vs %d", lingered, plain)
	}
	if worst > linger {
		t.Errorf("a caller waited %v with Linger %v", worst, linger)
	}
}
