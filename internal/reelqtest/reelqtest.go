// Package reelqtest assembles the real parts for end-to-end tests: an
// embedded JetStream server, the provider simulator over real HTTP, worker
// replicas with their own connections, and the job producer.
package reelqtest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/archive"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/logging"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/wire"
	"github.com/reelq/reelq/internal/worker"
)

// Env is one test's world.
type Env struct {
	T      testing.TB
	Server *server.Server
	NC     *nats.Conn
	JS     jetstream.JetStream
	Sim    *providersim.Server
	SimURL string
	States *jobstate.Store
	// Client is the public client, as producers use it.
	Client *reelq.Client
	// Inspector is the operator API, as operators use it.
	Inspector *inspect.Inspector
}

// APIKey is the key every simulated provider expects in tests.
func APIKey(provider string) string { return "test-key-" + provider + "-0123456789abcdef" }

// New starts a server and a simulator with knobs (each provider's APIKey
// is filled in).
func New(t testing.TB, knobs map[string]providersim.Knobs) *Env {
	t.Helper()
	s := natstest.Server(t)
	return NewOn(t, s, knobs)
}

// NewOn is New on an existing server.
func NewOn(t testing.TB, s *server.Server, knobs map[string]providersim.Knobs) *Env {
	t.Helper()
	nc, js := natstest.Connect(t, s)
	natstest.Setup(t, js)
	every := map[string]providersim.Knobs{}
	for _, p := range all.Names() {
		k := knobs[p]
		k.APIKey = APIKey(p)
		every[p] = k
	}
	sim := all.Simulator(every, 7)
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	t.Cleanup(sim.Close) // before hs.Close: no callback is sent after it
	kv, err := js.KeyValue(context.Background(), queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	states := jobstate.New(js, kv)
	client, err := reelq.NewClient(context.Background(), nc, reelq.Options{ProviderEnv: map[string]string{}, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ins, err := inspect.New(context.Background(), nc, reelq.Options{ProviderEnv: map[string]string{}, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return &Env{T: t, Server: s, NC: nc, JS: js, Sim: sim, SimURL: hs.URL, States: states, Client: client, Inspector: ins}
}

// BaseURL is provider's base URL on the simulator.
func (e *Env) BaseURL(provider string) string { return e.SimURL + e.Sim.Base(provider) }

// Provider builds provider's real adapter pointed at the simulator.
func (e *Env) Provider(name string) providers.Provider {
	return e.provider(name, APIKey(name), nil)
}

// provider builds name's adapter with key, sending its requests with hc
// (nil: a plain client).
func (e *Env) provider(name, key string, hc *http.Client) providers.Provider {
	p, err := e.spec(name).Build(providers.Config{BaseURL: e.BaseURL(name), APIKey: key, HTTPClient: hc, RequestTimeout: 10 * time.Second, AllowInsecure: true}, nil)
	if err != nil {
		e.T.Fatal(err)
	}
	return p
}

// spec returns the Spec of the provider named name.
func (e *Env) spec(name string) providers.Spec {
	s, ok := all.Lookup(name)
	if !ok {
		e.T.Fatalf("unknown provider %q", name)
	}
	return s
}

// Settings are one provider's settings for a test worker.
type Settings struct {
	Rate         float64 // default 200
	Burst        int     // default 10
	MaxInflight  int     // default 8
	Slots        int     // default MaxInflight
	PollInterval time.Duration
	JobTimeout   time.Duration
	// APIKey overrides the key the worker sends (default APIKey(provider)),
	// e.g. a wrong one.
	APIKey string
	// RequestTimeout bounds one call (default 10s).
	RequestTimeout time.Duration
	// PollErrorBudget is worker.Runtime's (default 5 minutes).
	PollErrorBudget time.Duration
	// Ambiguous, AmbiguousPauseAfter and AmbiguousWindow are the
	// provider's ambiguous-submission policy (worker.Runtime).
	Ambiguous           string
	AmbiguousPauseAfter int
	AmbiguousWindow     time.Duration
	// LimiterUnavailableAfter is the limiter's UnavailableAfter (default
	// ratelimit's 10s).
	LimiterUnavailableAfter time.Duration
	// OutputPolicy and OutputRetries are what a run whose output fails its
	// media check ends as (worker.Runtime).
	OutputPolicy  string
	OutputRetries int
	// MaxPollInterval is the longest wait between polls (default 4 x
	// PollInterval).
	MaxPollInterval time.Duration
	// Callbacks registers each job's URL on WorkerOptions.Callbacks.
	Callbacks bool
}

// WorkerOptions configure a test worker.
type WorkerOptions struct {
	ID        string
	Providers map[string]Settings
	Config    worker.Config
	Logger    *slog.Logger
	// Archive archives outputs into the JetStream object store, fetching
	// from the simulator on loopback.
	Archive bool
	// Callbacks mints the callback URLs of the providers whose Settings
	// turn them on (Env.StartCallbacks).
	Callbacks *Callbacks
}

// Running is a worker replica running in the test.
type Running struct {
	ID     string
	W      *worker.Worker
	NC     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned, with its error in err
	err    error
	once   sync.Once
}

// Stop stops intake and waits for the worker to shut down gracefully. It
// may be called more than once (a test's own Stop and the cleanup).
func (r *Running) Stop() error {
	r.once.Do(func() { r.cancel() })
	<-r.done
	return r.err
}

// StartWorker starts a worker replica with its own NATS connection.
func (e *Env) StartWorker(o WorkerOptions) *Running {
	e.T.Helper()
	if o.ID == "" {
		o.ID = "w1"
	}
	nc, js := natstest.Connect(e.T, e.Server)
	kv, err := js.KeyValue(context.Background(), queue.BucketRateLimit)
	if err != nil {
		e.T.Fatal(err)
	}
	// As in cmd/worker: one store for every limiter, which recreates its
	// bucket when it is gone or cannot be written.
	store := ratelimit.NewKVStore(kv).Repairable(js, func(ctx context.Context) (jetstream.KeyValue, error) {
		return queue.SetupBucket(ctx, js, queue.Layout{}, queue.BucketRateLimit)
	}, 0)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(e.T.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	rts := map[string]*worker.Runtime{}
	outages, onOutage := worker.Outages()
	for name, s := range o.Providers {
		if s.Rate == 0 {
			s.Rate = 200
		}
		if s.Burst == 0 {
			s.Burst = 10
		}
		if s.MaxInflight == 0 {
			s.MaxInflight = 8
		}
		if s.PollInterval == 0 {
			s.PollInterval = 20 * time.Millisecond
		}
		if s.APIKey == "" {
			s.APIKey = APIKey(name)
		}
		if s.RequestTimeout == 0 {
			s.RequestTimeout = 10 * time.Second
		}
		if s.MaxPollInterval == 0 {
			s.MaxPollInterval = 4 * s.PollInterval
		}
		lim := ratelimit.New(store, name, ratelimit.Config{Rate: s.Rate, Burst: s.Burst, Linger: ratelimit.DefaultLinger, OnOutage: onOutage,
			UnavailableAfter: s.LimiterUnavailableAfter})
		rts[name] = &worker.Runtime{
			// As in cmd/worker: every HTTP request takes a token.
			Provider:            e.provider(name, s.APIKey, worker.HTTPClient(lim, s.RequestTimeout, 0)),
			Spec:                e.spec(name),
			Limiter:             lim,
			MaxInflight:         s.MaxInflight,
			Rate:                s.Rate,
			Burst:               s.Burst,
			Slots:               s.Slots,
			PollInterval:        s.PollInterval,
			MaxPollInterval:     s.MaxPollInterval,
			JobTimeout:          s.JobTimeout,
			RequestTimeout:      s.RequestTimeout,
			PollErrorBudget:     s.PollErrorBudget,
			Ambiguous:           s.Ambiguous,
			AmbiguousPauseAfter: s.AmbiguousPauseAfter,
			AmbiguousWindow:     s.AmbiguousWindow,
			OutputPolicy:        s.OutputPolicy,
			OutputRetries:       s.OutputRetries,
		}
		if s.Callbacks && o.Callbacks != nil {
			rts[name].CallbackURL = func(id string) string { return o.Callbacks.Minter.URL(name, id) }
		}
	}
	cfg := o.Config
	cfg.WorkerID = o.ID
	cfg.LimiterOutages = outages
	cfg.Logger = log.With("replica", o.ID)
	if cfg.AckWait == 0 {
		cfg.AckWait = 10 * time.Second
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase = 50 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 500 * time.Millisecond
	}
	if cfg.PullWait == 0 {
		cfg.PullWait = time.Second
	}
	if cfg.Secrets == nil {
		cfg.Secrets = &logging.Secrets{}
		for _, p := range all.Names() {
			cfg.Secrets.Add(APIKey(p))
		}
	}
	if o.Archive && cfg.Archive.Store == nil {
		cfg.Archive = e.ArchiveConfig()
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := worker.New(ctx, nc, js, cfg, rts)
	if err != nil {
		cancel()
		e.T.Fatal(err)
	}
	r := &Running{ID: o.ID, W: w, NC: nc, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = w.Run(ctx)
		close(r.done)
	}()
	e.T.Cleanup(func() { _ = r.Stop() })
	return r
}

// Enqueue publishes jobs through the public client and fails the test on
// any error.
func (e *Env) Enqueue(jobs ...reelq.Job) []reelq.EnqueueResult {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := e.Client.EnqueueBatch(ctx, jobs, reelq.BatchOptions{})
	if err != nil {
		e.T.Fatal(err)
	}
	for _, o := range out {
		if o.Err != nil {
			e.T.Fatalf("enqueue %s: %v", o.ID, o.Err)
		}
	}
	return out
}

// Results waits (up to timeout) for want jobs to have results.
func (e *Env) Results(want int, timeout time.Duration) map[string][]reelq.Result {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return natstest.Results(ctx, e.T, e.JS, want)
}

// SamsarJob is a valid Samsar job whose prompt names it, so simulator
// submission counts can be matched to jobs.
func SamsarJob(id string) reelq.Job {
	return reelq.Job{ID: id, Provider: "samsar", Batch: "test",
		Input: []byte(fmt.Sprintf(`{"prompt":"a lighthouse at dusk, job %s","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`, id))}
}

// SamsarPrompt is the prompt SamsarJob(id) submits.
func SamsarPrompt(id string) string { return "a lighthouse at dusk, job " + id }

// JobMsg is the message that carries j on its subject, as a producer
// that skips the client would publish it.
func JobMsg(j *reelq.Job) *nats.Msg {
	data, err := json.Marshal(j)
	if err != nil {
		panic(err)
	}
	return &nats.Msg{Subject: wire.JobSubject(j.Provider, j.Priority, j.ID), Data: data, Header: nats.Header{}}
}

// SeqResult returns the result published under a seq- id (a message the
// worker could not attribute to a job), or nil.
func SeqResult(results map[string][]reelq.Result) []reelq.Result {
	for id, rs := range results {
		if strings.HasPrefix(id, "seq-") {
			return rs
		}
	}
	return nil
}

// ArchiveConfig is an archive into the test server's object store that may
// download from the simulator on loopback.
func (e *Env) ArchiveConfig() worker.ArchiveConfig {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := archive.NewJetStreamStore(ctx, e.JS, archive.DefaultBucket)
	if err != nil {
		e.T.Fatal(err)
	}
	f, err := archive.NewFetcher(archive.FetchConfig{AllowHosts: []string{"127.0.0.1"}})
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(f.Close)
	return worker.ArchiveConfig{Store: store, Fetcher: f, Concurrency: 4,
		Retry: archive.Retry{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond, Budget: 2 * time.Second}}
}

// WaitAll collects the results c.WaitAll yields, by job id (those so far
// with the error that ended it).
func WaitAll(ctx context.Context, c *reelq.Client, ids []string, o reelq.WaitOptions) (map[string]*reelq.Result, error) {
	out := make(map[string]*reelq.Result, len(ids))
	for r, err := range c.WaitAll(ctx, ids, o) {
		if err != nil {
			return out, err
		}
		out[r.ID] = r
	}
	return out, nil
}
