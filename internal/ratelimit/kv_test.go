package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// decisionClock is a per-Limiter clock that remembers its last reading. Wait
// reads the clock last when it decides to grant, so after a successful Wait
// last is the grant's decision time (the time the GCRA bound applies to).
type decisionClock struct{ last time.Time }

func (c *decisionClock) now() time.Time { c.last = time.Now(); return c.last }

func TestKVClusterWideLimit(t *testing.T) {
	t.Parallel()
	const (
		rate, burst = 20, 2
		replicas    = 4
		takers      = 24
		run         = 2500 * time.Millisecond
	)
	s := startNATS(t)
	kvs := []jetstream.KeyValue{createBucket(t, connectJS(t, s), "rl_limit")}
	for range replicas - 1 {
		kvs = append(kvs, openBucket(t, connectJS(t, s), "rl_limit"))
	}
	log, warns := testLogger(t)
	ctx, cancel := context.WithTimeout(t.Context(), run)
	defer cancel()
	var g grantLog
	var wg sync.WaitGroup
	for i := range takers {
		clock := new(decisionClock)
		l := New(NewKVStore(kvs[i%replicas]), "segmind", Config{Rate: rate, Burst: burst, Now: clock.now, Logger: log})
		wg.Go(func() {
			for {
				if _, err := l.Wait(ctx); err != nil {
					return
				}
				g.add(clock.last)
			}
		})
	}
	wg.Wait()

	grants := sortedTimes(g.times())
	m := maxInWindow(grants, time.Second)
	span := grants[len(grants)-1].Sub(grants[0])
	t.Logf("%d grants in %v, max %d in a 1s window", len(grants), span, m)
	if m > rate+burst {
		t.Errorf("max grants in a 1s window = %d, want <= %d", m, rate+burst)
	}
	// n grants need n-Burst intervals after the first: n <= Burst + span·Rate.
	if hi := burst + int(span.Seconds()*rate); len(grants) > hi {
		t.Errorf("%d grants in %v, want <= %d", len(grants), span, hi)
	}
	if lo := int(0.75 * run.Seconds() * rate); len(grants) < lo {
		t.Errorf("%d grants in %v, want >= %d (limiter starves)", len(grants), run, lo)
	}
	if n := warns.Load(); n != 0 {
		t.Errorf("%d store warnings", n)
	}
}

func TestKVBlockAcrossReplicas(t *testing.T) {
	t.Parallel()
	const rate, burst = 20, 2
	s := startNATS(t)
	ctx := t.Context()
	log, _ := testLogger(t)
	a := New(NewKVStore(createBucket(t, connectJS(t, s), "rl_block")), "camb", Config{Rate: rate, Burst: burst, Logger: log})
	clock := new(decisionClock)
	b := New(NewKVStore(openBucket(t, connectJS(t, s), "rl_block")), "camb", Config{Rate: rate, Burst: burst, Now: clock.now})

	if _, err := b.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	until := time.Now().Add(700 * time.Millisecond)
	if err := a.Block(ctx, until); err != nil { // replica a saw a 429
		t.Fatalf("Block: %v", err)
	}
	if err := a.Block(ctx, until.Add(-500*time.Millisecond)); err != nil {
		t.Fatalf("Block earlier: %v", err)
	}
	if got, err := b.BlockedUntil(ctx); err != nil || !got.Equal(until) {
		t.Errorf("BlockedUntil on replica b = %v, %v; want %v", got, err, until)
	}
	if wait, err := b.Take(ctx); err != nil || wait <= 0 {
		t.Errorf("Take during block = %v, %v; want a wait", wait, err)
	}
	for i, earliest := range []time.Time{until, until.Add(time.Second / rate)} { // no burst after a block
		if _, err := b.Wait(ctx); err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if clock.last.Before(earliest) {
			t.Errorf("grant %d after Block at %v, want >= %v", i, clock.last.Sub(until), earliest.Sub(until))
		}
	}
}

func TestKVUnavailableFailsClosed(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	js := connectJS(t, s)
	log, warns := testLogger(t)
	l := New(NewKVStore(createBucket(t, js, "rl_down")), "segmind", Config{Rate: 1, Burst: 1, Logger: log})
	ctx := t.Context()
	if _, err := l.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}

	// A Wait is pending (next token in 1s) when the bucket disappears.
	type result struct {
		at  time.Time
		err error
	}
	done := make(chan result, 1)
	go func() {
		_, err := l.Wait(ctx)
		done <- result{time.Now(), err}
	}()
	if err := js.DeleteKeyValue(ctx, "rl_down"); err != nil {
		t.Fatalf("delete bucket: %v", err)
	}
	if _, err := l.Take(ctx); err == nil {
		t.Error("Take succeeded without a bucket")
	}
	if err := l.Block(ctx, time.Now().Add(time.Second)); err == nil {
		t.Error("Block succeeded without a bucket")
	}
	select {
	case r := <-done:
		t.Fatalf("Wait returned (%v) without a bucket", r.err)
	case <-time.After(2 * time.Second): // well past the 1s slot
	}
	if warns.Load() == 0 {
		t.Error("no warning while the bucket was gone")
	}

	recreated := time.Now()
	createBucket(t, js, "rl_down")
	select {
	case r := <-done:
		if r.err != nil || r.at.Before(recreated) {
			t.Errorf("Wait after recreation = %v at %v", r.err, r.at.Sub(recreated))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not grant after the bucket came back")
	}
}

func BenchmarkTake(b *testing.B) {
	for _, contenders := range []int{1, 8} {
		b.Run(fmt.Sprintf("contenders=%d", contenders), func(b *testing.B) {
			s := startNATS(b)
			name := "rl_bench"
			createBucket(b, connectJS(b, s), name)
			ls := make([]*Limiter, contenders)
			for i := range ls { // one connection per contender
				ls[i] = New(NewKVStore(openBucket(b, connectJS(b, s), name)), "bench", Config{Rate: 1e9, Burst: 1})
			}
			var next atomic.Int64
			var failed atomic.Value
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for _, l := range ls {
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
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "takes/s")
		})
	}
}
