package slots

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/reelq/reelq/internal/embedded"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is one embedded JetStream server with the slots bucket.
type env struct {
	s  *server.Server
	kv jetstream.KeyValue // on the first connection
}

// newEnv starts the embedded server every reelq test uses (as
// natstest.Server does, without importing natstest: it pulls in
// internal/queue and the root package, which this package does not need).
func newEnv(tb testing.TB) *env {
	tb.Helper()
	s, err := embedded.Start(embedded.Options{Name: "slots-test", Listen: "127.0.0.1:-1", StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(func() { embedded.Stop(s) })
	return &env{s: s, kv: createBucket(tb, connect(tb, s))}
}

// connect opens a client connection to s, closed when the test ends.
func connect(tb testing.TB, s *server.Server) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return js
}

func createBucket(tb testing.TB, js jetstream.JetStream) jetstream.KeyValue {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, BucketConfig(1))
	if err != nil {
		tb.Fatalf("create bucket: %v", err)
	}
	return kv
}

// conn opens the bucket on a new connection, as another worker process
// would.
func (e *env) conn(tb testing.TB) jetstream.KeyValue {
	tb.Helper()
	js := connect(tb, e.s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		tb.Fatalf("open bucket: %v", err)
	}
	return kv
}

// running is a Pool whose Run goroutine the test owns.
type running struct {
	*Pool
	cancel context.CancelFunc
	done   chan error
}

// start creates a Pool on its own connection and runs it until stop or the
// end of the test.
func (e *env) start(tb testing.TB, cfg Config, hooks ...func(*Pool)) *running {
	tb.Helper()
	if cfg.Provider == "" {
		cfg.Provider = "segmind"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(tb)
	}
	p := New(e.conn(tb), cfg)
	for _, h := range hooks {
		h(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Pool: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	tb.Cleanup(func() { r.stop(tb) })
	return r
}

// stop cancels Run and waits for it (idempotent).
func (r *running) stop(tb testing.TB) error {
	tb.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
			return err
		}
		return nil
	case <-time.After(10 * time.Second):
		tb.Fatal("Run did not return")
		return nil
	}
}

// crash makes Run return without releasing (a killed process).
func crash(p *Pool) { p.skipRelease = true }

// discard drops log records (benchmarks).
var discard = slog.New(slog.DiscardHandler)

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ tb testing.TB }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(string(b))
	return len(b), nil
}

// await waits on p's changes until cond holds.
func await(tb testing.TB, p *Pool, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		seen := p.Version()
		if cond() {
			return
		}
		select {
		case <-p.Changed(seen):
		case <-deadline.C:
			tb.Fatalf("timed out after %v waiting for %s; allocation %+v", timeout, what, p.Snapshot())
		}
	}
}

// acquire takes exactly k slots, waiting on Changed between attempts.
func acquire(tb testing.TB, p *Pool, k, top int, timeout time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for got := 0; got < k; {
		seen := p.Version()
		n, err := p.TryAcquire(ctx, k-got, top)
		if err != nil {
			tb.Fatalf("TryAcquire: %v (got %d of %d)", err, got, k)
		}
		got += n
		if got < k {
			select {
			case <-p.Changed(seen):
			case <-ctx.Done():
				tb.Fatalf("acquired %d of %d slots in %v; allocation %+v", got, k, timeout, p.Snapshot())
			}
		}
	}
}

// holderOf returns the entry of worker w (any incarnation) in p's view.
func holderOf(p *Pool, w string) (Holder, bool) {
	for _, h := range p.Snapshot().Holders {
		if workerOf(h.Worker) == w {
			return h, true
		}
	}
	return Holder{}, false
}

// revision is the key's current revision (0 if absent).
func revision(tb testing.TB, kv jetstream.KeyValue, key string) uint64 {
	tb.Helper()
	e, err := kv.Get(context.Background(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0
	}
	if err != nil {
		tb.Fatalf("get %s: %v", key, err)
	}
	return e.Revision()
}

// ledger summarises the revisions an invariantWatch saw.
type ledger struct {
	seen   int     // revisions
	maxSum int     // most slots held in one revision
	util   float64 // time-weighted slots held / capacity, by server timestamps
}

// invariantWatch checks every revision of key it sees: the slots of all
// holders in a committed value never exceed capacity. Stop it to get a
// summary.
func invariantWatch(tb testing.TB, kv jetstream.KeyValue, key string, capacity int) (stop func() ledger) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := kv.Watch(ctx, key)
	if err != nil {
		cancel()
		tb.Fatalf("watch: %v", err)
	}
	var (
		l       ledger
		first   time.Time
		last    time.Time
		lastSum int
		weight  float64 // slot-seconds
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var v value
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				tb.Errorf("revision %d: %v", e.Revision(), err)
				continue
			}
			sum := 0
			for _, h := range v.Holders {
				sum += h.N
			}
			if l.seen == 0 {
				first = e.Created()
			} else {
				weight += float64(lastSum) * e.Created().Sub(last).Seconds()
			}
			l.seen++
			l.maxSum = max(l.maxSum, sum)
			last, lastSum = e.Created(), sum
			if sum > capacity {
				tb.Errorf("revision %d holds %d slots > Cap %d: %s", e.Revision(), sum, capacity, e.Value())
			}
		}
	}()
	return func() ledger {
		cancel()
		<-done
		if span := last.Sub(first).Seconds(); span > 0 {
			l.util = weight / span / float64(capacity)
		}
		return l
	}
}
