package ratelimit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestKVClusterWideLimit: replicas (Limiters on their own connections)
// sharing one key never take more than Burst + Rate·T tokens in a span T
// between them, however loaded the machine. The span runs from before the
// first Wait to after the last returned: a grant is decided within it,
// and the schedule holds at most Rate·W + Burst decisions in any W. (The
// most grants seen returned within 1 s is a figure, logged: on a busy
// host grants decided apart can return together.)
func TestKVClusterWideLimit(t *testing.T) {
	t.Parallel()
	const (
		rate, burst = 20, 2
		replicas    = 4
		waiters     = 6 // per replica
		tokens      = 30
	)
	s := startNATS(t)
	kvs := []jetstream.KeyValue{createBucket(t, connectJS(t, s), "rl_limit")}
	for range replicas - 1 {
		kvs = append(kvs, openBucket(t, connectJS(t, s), "rl_limit"))
	}
	log, warns := testLogger(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var g grantLog
	var n atomic.Int64
	var wg sync.WaitGroup
	begin := time.Now()
	for _, kv := range kvs {
		l := New(NewKVStore(kv), "segmind", Config{Rate: rate, Burst: burst, Logger: log})
		for range waiters {
			wg.Go(func() {
				for {
					if _, err := l.Wait(ctx); err != nil {
						return
					}
					g.add(time.Now())
					if n.Add(1) >= tokens {
						cancel()
					}
				}
			})
		}
	}
	wg.Wait()
	span := time.Since(begin)

	grants := sortedTimes(g.times())
	t.Logf("%d grants in %v, max %d returned within 1s", len(grants), span, maxInWindow(grants, time.Second))
	if hi := burst + int(span.Seconds()*rate); len(grants) > hi {
		t.Errorf("%d grants in %v, want <= %d (Burst + Rate·T)", len(grants), span, hi)
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
	b := New(NewKVStore(openBucket(t, connectJS(t, s), "rl_block")), "camb", Config{Rate: rate, Burst: burst})

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
	for i, earliest := range []time.Time{until, until.Add(time.Second / rate)} { // no burst after a block
		if _, err := b.Wait(ctx); err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if at := time.Now(); at.Before(earliest) {
			t.Errorf("grant %d after Block at %v, want >= %v", i, at.Sub(until), earliest.Sub(until))
		}
	}
}

// errTap is a Store that reports its failed calls (not ErrNoState or
// ErrConflict) on errs, dropping them when errs is full.
type errTap struct {
	Store
	errs chan error
}

func (s errTap) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	v, rev, err := s.Store.Get(ctx, key)
	return v, rev, s.tap(err)
}

func (s errTap) Create(ctx context.Context, key string, v []byte) (uint64, error) {
	rev, err := s.Store.Create(ctx, key, v)
	return rev, s.tap(err)
}

func (s errTap) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	rev, err := s.Store.Update(ctx, key, v, rev)
	return rev, s.tap(err)
}

func (s errTap) tap(err error) error {
	if err != nil && !errors.Is(err, ErrNoState) && !errors.Is(err, ErrConflict) {
		select {
		case s.errs <- err:
		default:
		}
	}
	return err
}

func TestKVUnavailableFailsClosed(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	js := connectJS(t, s)
	log, warns := testLogger(t)
	store := errTap{NewKVStore(createBucket(t, js, "rl_down")), make(chan error, 100)}
	l := New(store, "segmind", Config{Rate: 1, Burst: 1, Logger: log})
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
	if err := l.Block(ctx, time.Now().Add(time.Second)); err == nil {
		t.Error("Block succeeded without a bucket")
	}
	<-store.errs // Block's
	// The pump reaches the 1s slot, fails, backs off and fails again.
	for range 2 {
		select {
		case <-store.errs:
		case <-time.After(10 * time.Second):
			t.Fatal("no store error from the pending Wait")
		}
	}
	select {
	case r := <-done:
		t.Fatalf("Wait returned (%v) without a bucket", r.err)
	default:
	}
	if warns.Load() == 0 {
		t.Error("no warning while the bucket was gone")
	}
	// Three errors were tapped; the third one's count may still be on its
	// way (the tap sees an error before the Limiter counts it), the first
	// two were counted before the third call was made.
	if st := l.Stats(); st.Granted != 1 || st.Errors < 2 {
		t.Errorf("stats while down = %+v, want 1 grant and >= 2 errors", st)
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

// A Repairable KVStore brings its bucket back when the Limiter finds it
// unwritable: deleted under the workers (created again at once), or there
// but refusing every write (a sealed stream here, as a file store's
// critical write error makes it: deleted and created again once it
// refused writes for brokenAfter; the Limiter reports the outage's start
// and end). The Limiter grants again. Without the repair it kept failing
// until an operator acted.
func TestKVRepairBringsBucketBack(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"deleted", "unwritable"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			s := startNATS(t)
			js := connectJS(t, s)
			ctx := t.Context()
			cfg := jetstream.KeyValueConfig{Bucket: "rl_repair", History: 1, Storage: jetstream.MemoryStorage}
			kv, err := js.CreateKeyValue(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			outages := make(chan Outage, 16)
			log, _ := testLogger(t)
			create := func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, cfg) }
			l := New(NewKVStore(kv).Repairable(js, create, 500*time.Millisecond), "segmind", Config{Rate: 50, Burst: 1, Logger: log,
				UnavailableAfter: 300 * time.Millisecond, OnOutage: func(o Outage) { outages <- o }})
			if _, err := l.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "deleted":
				err = js.DeleteKeyValue(ctx, cfg.Bucket)
			case "unwritable":
				var st jetstream.Stream
				if st, err = js.Stream(ctx, "KV_"+cfg.Bucket); err == nil {
					c := st.CachedInfo().Config
					c.Sealed = true
					_, err = js.UpdateStream(ctx, c)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			var lastErr error
			for {
				_, err := l.Wait(wctx)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Wait = %v (last: %v), want a token or ErrUnavailable", err, lastErr)
				}
				lastErr = err
				select {
				case <-wctx.Done():
					t.Fatalf("no token after the bucket was %s: %v", how, err)
				case <-time.After(100 * time.Millisecond):
				}
			}
			// A bucket gone is created again at the second failure, before
			// it makes an outage; one that refuses writes is recreated only
			// after brokenAfter, past UnavailableAfter: an outage, reported
			// when it starts and when it ends.
			var reports []Outage
			for len(outages) > 0 {
				reports = append(reports, <-outages)
			}
			switch {
			case how == "deleted" && len(reports) == 0:
			case len(reports) != 2 || reports[0].Err == nil || reports[1].Err != nil:
				t.Errorf("outage reports %+v, want its start and its end", reports)
			case !strings.Contains(reports[0].Err.Error(), cfg.Bucket):
				t.Errorf("outage error %q does not name the bucket", reports[0].Err)
			}
			info, err := js.Stream(ctx, "KV_"+cfg.Bucket)
			if err != nil || info.CachedInfo().Config.Sealed || info.CachedInfo().Config.Storage != jetstream.MemoryStorage {
				t.Errorf("bucket after the repair: %v, %+v", err, info)
			}
		})
	}
}
