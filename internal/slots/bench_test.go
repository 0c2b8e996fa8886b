package slots

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAcquireRelease: one TryAcquire(1) + Release(1) cycle per op, by
// 1 or 4 workers on separate connections (Cap = workers, so only the key
// is contended, not the slots). Reports writes and conflicts per cycle and
// the mean TryAcquire latency.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			e := newEnv(b)
			pools := make([]*running, workers)
			for i := range pools {
				pools[i] = e.start(b, Config{Worker: fmt.Sprintf("w%d", i), Cap: workers, Logger: discard})
			}
			ctx := context.Background()
			var next, acquireNs atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for _, p := range pools {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						began := time.Now()
						for {
							seen := p.Version()
							got, err := p.TryAcquire(ctx, 1, PriorityNormal)
							if err != nil {
								b.Error(err)
								return
							}
							if got == 1 {
								break
							}
							<-p.Changed(seen)
						}
						acquireNs.Add(int64(time.Since(began)))
						if err := p.Release(ctx, 1); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			var writes, conflicts uint64
			for _, p := range pools {
				a := p.Snapshot()
				writes, conflicts = writes+a.Writes, conflicts+a.Conflicts
			}
			b.ReportMetric(float64(writes)/float64(b.N), "writes/cycle")
			b.ReportMetric(float64(conflicts)/float64(b.N), "conflicts/cycle")
			b.ReportMetric(float64(acquireNs.Load())/float64(b.N)/1e3, "acquire-µs")
		})
	}
}

// BenchmarkSteadyState: Cap 256 on one provider, 1 or 2 workers each
// saturated (want 256). One goroutine per held slot runs jobs back to back
// (a job is empty: this measures the Pool's cost per job); at each job's end
// the worker advertises its demand and asks Yield whether to give the slot
// away, as the worker loop does. Reports KV writes per job and per second
// after the slots are taken. "fluctuating" changes want by one at every job
// (a backlog that drains and refills).
func BenchmarkSteadyState(b *testing.B) {
	const capacity = 256
	for _, workers := range []int{1, 2} {
		for _, fluctuating := range []bool{false, true} {
			b.Run(fmt.Sprintf("workers=%d/fluctuating=%v", workers, fluctuating), func(b *testing.B) {
				benchSteadyState(b, capacity, workers, fluctuating)
			})
		}
	}
}

func benchSteadyState(b *testing.B, capacity, workers int, fluctuating bool) {
	e := newEnv(b)
	ctx := context.Background()
	share := capacity / workers
	pools := make([]*running, workers)
	for i := range pools {
		pools[i] = e.start(b, Config{Worker: fmt.Sprintf("w%d", i), Cap: capacity, Logger: discard})
		if err := pools[i].SetDemand(ctx, capacity, PriorityNormal); err != nil {
			b.Fatal(err)
		}
	}
	for i, p := range pools { // every worker sees the others' demand, then takes its share
		for j := range pools {
			if j != i {
				await(b, p.Pool, 10*time.Second, "demand", func() bool { h, _ := holderOf(p.Pool, fmt.Sprintf("w%d", j)); return h.Want == capacity })
			}
		}
	}
	for _, p := range pools {
		acquire(b, p.Pool, share, PriorityNormal, 10*time.Second)
	}
	var w0 uint64
	for _, p := range pools {
		w0 += p.Snapshot().Writes
	}
	var next, yields atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	began := time.Now()
	for _, p := range pools {
		for range share {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
					// A job ran on this slot and ended; the next one waits.
					want := capacity
					if fluctuating {
						want -= int(i % 2)
					}
					if err := p.SetDemand(ctx, want, PriorityNormal); err != nil {
						b.Error(err)
						return
					}
					if p.Yield(PriorityNormal) {
						yields.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(began)
	b.StopTimer()
	var w uint64
	for _, p := range pools {
		w += p.Snapshot().Writes
		if h := p.Held(); h != share {
			b.Errorf("%s holds %d, want %d", p.me, h, share)
		}
	}
	w -= w0
	b.ReportMetric(float64(w)/float64(b.N), "writes/job")
	b.ReportMetric(float64(w)/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	if yields.Load() > 0 {
		b.Errorf("%d yields at a fair steady state", yields.Load())
	}
}
