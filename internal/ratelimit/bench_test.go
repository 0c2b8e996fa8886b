package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
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

// TestKVReadsPerToken counts store reads per granted token with 1 to 1000
// goroutines waiting on one Limiter (one process) on a real KV bucket.
func TestKVReadsPerToken(t *testing.T) {
	const rate, burst, run = 200, 2, time.Second
	s := startNATS(t)
	kv := createBucket(t, connectJS(t, s), "rl_reads")
	for _, waiters := range []int{1, 10, 100, 1000} {
		t.Run(fmt.Sprintf("waiters=%d", waiters), func(t *testing.T) {
			st := &countingStore{Store: NewKVStore(kv)}
			l := New(st, fmt.Sprintf("w%d", waiters), Config{Rate: rate, Burst: burst})
			ctx, cancel := context.WithTimeout(t.Context(), run)
			defer cancel()
			var grants atomic.Int64
			var wg sync.WaitGroup
			for range waiters {
				wg.Go(func() {
					for {
						if _, err := l.Wait(ctx); err != nil {
							return
						}
						grants.Add(1)
					}
				})
			}
			wg.Wait()
			n, reads := grants.Load(), st.reads.Load()
			perToken := float64(reads) / float64(n)
			t.Logf("%d waiters: %d tokens, %d reads (%.3f/token), %d writes, %d conflicts",
				waiters, n, reads, perToken, st.writes.Load(), st.conflicts.Load())
			if lo := int64(0.9 * rate * run.Seconds()); n < lo {
				t.Errorf("%d tokens in %v, want >= %d", n, run, lo)
			}
			if perToken > 1.1 {
				t.Errorf("%.3f reads per token, want <= 1.1", perToken)
			}
		})
	}
}

// TestLingerSharesWrites: at a rate far above the demand, callers that
// arrive one at a time each cost a compare-and-set; with Linger the ones
// arriving within it share one, and the rate is unchanged.
func TestLingerSharesWrites(t *testing.T) {
	s := startNATS(t)
	kv := createBucket(t, connectJS(t, s), "rl_linger")
	const callers, spacing = 40, time.Millisecond
	run := func(name string, linger time.Duration) (writes int64, worst time.Duration) {
		st := &countingStore{Store: NewKVStore(kv)}
		l := New(st, name, Config{Rate: 10000, Burst: 100, Linger: linger})
		var wg sync.WaitGroup
		var mu sync.Mutex
		tick := time.NewTicker(spacing)
		defer tick.Stop()
		for range callers {
			<-tick.C // callers one at a time, as polls of many jobs arrive
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
		return st.writes.Load(), worst
	}
	plain, _ := run("plain", 0)
	lingered, worst := run("linger", 10*time.Millisecond)
	t.Logf("%d callers %v apart: %d writes without Linger, %d with 10ms (longest wait %v)", callers, spacing, plain, lingered, worst)
	if lingered*3 > plain {
		t.Errorf("Linger saved too little: %d writes vs %d", lingered, plain)
	}
	if worst > 100*time.Millisecond {
		t.Errorf("a caller waited %v with Linger 10ms", worst)
	}
}
