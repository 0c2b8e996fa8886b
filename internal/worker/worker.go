// Package worker runs reelq jobs. For every enabled provider an engine
// pulls jobs from the provider's three consumers (high, normal and low
// priority) ahead of need, holds them as data (one heartbeat ticker keeps
// them all alive), and starts them, highest priority first and fairness
// keys round-robin, whenever it holds one of the provider's cluster-wide
// slots (package slots). A started job is submitted to the provider once
// (the paid call), then polled on a timer heap by a bounded pool of
// goroutines, every call under the cluster-wide rate limit; its result is
// stored in the job state, published, and only then is the message acked.
//
// # Error handling
//
// The provider error classes (package providers) decide what happens:
//
//	retryable, timeout, 5xx   attempt++; NakWithDelay(backoff), holding no
//	                          slot; after the last attempt, a failed result
//	rate limited (429)        the shared limiter is pushed back for every
//	                          replica; the call is retried, no attempt used
//	credits exhausted         the provider is paused for every replica
//	                          (provider state): no new paid call, while jobs
//	                          whose task runs are still polled; the job waits
//	                          with its attempts untouched; a probe resumes
//	                          the provider when credits return
//	auth (account)            as credits, but only an operator resumes
//	forbidden (one job)       a failed result for that job; the provider runs on
//	unknown submission        a 2xx without a task id: the job fails once,
//	                          is never resubmitted, and the provider pauses
//	no answer to a submit     ambiguous: counted; the next delivery recovers
//	                          the task (Finder), or resubmits or holds it per
//	                          the provider's policy; several within a window
//	                          pause the provider
//	invalid input, 4xx        a failed result at once; never retried
//	shutdown                  no new paid call starts; calls in flight finish
//	                          and are recorded; jobs return to the queue
//	                          without using an attempt
//
// Every delivery ends in exactly one settlement (ack, nak, term, or
// abandon for a stale delivery another replica took over), made in one
// place: engine.settle.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/archive"
	"github.com/reelq/reelq/internal/heartbeat"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/logging"
	"github.com/reelq/reelq/internal/metrics"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/slots"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/tally"
	"github.com/reelq/reelq/internal/wire"
)

// ErrShutdown is the cause given to running jobs when the shutdown grace
// period ends.
var ErrShutdown = errors.New("worker shutting down")

// Limiter is the cluster-wide rate limiter for one provider.
type Limiter interface {
	// Wait blocks until a call may be made. An error wrapping
	// ratelimit.ErrUnavailable means its shared state is unavailable: the
	// caller comes back later.
	Wait(ctx context.Context) (time.Duration, error)
	// Block delays every replica's next call until at least until.
	Block(ctx context.Context, until time.Time) error
	// TokenTTL is how long a token from Wait stays good for a call.
	TokenTTL() time.Duration
}

// Ambiguous-submission policies.
const (
	// AmbiguousResubmit submits again when a paid call's outcome is unknown
	// and the provider cannot be asked: the job may be paid twice.
	AmbiguousResubmit = "resubmit"
	// AmbiguousHold parks the job in phase "held" until an operator checks
	// the provider's dashboard and resolves it: never pays twice.
	AmbiguousHold = "hold"
)

// Runtime is what the worker needs for one provider.
type Runtime struct {
	Provider providers.Provider
	// Spec is the provider's Spec: the default timings (for zero
	// PollInterval, MaxPollInterval, JobTimeout), whether credits show up
	// on the poll, its Recovery and HoldAbove.
	Spec    providers.Spec
	Limiter Limiter
	// MaxInflight is the provider's cluster-wide concurrency cap.
	MaxInflight int
	// Rate and Burst are the limiter's settings, recorded in the
	// consumers' metadata for stats (the Limiter enforces them).
	Rate  float64
	Burst int
	// Slots is how many of the provider's jobs this replica runs at once;
	// zero means MaxInflight.
	Slots int
	// Poll schedule and task deadline; zero means the Spec's default.
	PollInterval    time.Duration
	MaxPollInterval time.Duration
	JobTimeout      time.Duration
	// RequestTimeout bounds one provider call; zero means 60s.
	RequestTimeout time.Duration
	// PollErrorBudget is how long a submitted job's polls may keep failing
	// with transient errors before it counts as a failed attempt; zero
	// means 5 minutes.
	PollErrorBudget time.Duration
	// Ambiguous is the policy for a submission whose outcome is unknown:
	// AmbiguousResubmit, AmbiguousHold, or empty for the provider's
	// default: resubmit where Spec.Recovery can recover the submission
	// (an idempotency key, or a lookup that found nothing), else hold a
	// job whose estimate is above HoldAbove and resubmit the others.
	Ambiguous string
	// HoldAbove is the estimate above which the default policy holds a
	// job; zero means Spec.HoldAbove (and without a Spec, never).
	HoldAbove reelq.Cost
	// AmbiguousPauseAfter pauses the provider (for an operator) after this
	// many ambiguous submissions within AmbiguousWindow, cluster-wide;
	// zero means 3 in 10 minutes; negative never pauses.
	AmbiguousPauseAfter int
	AmbiguousWindow     time.Duration
	// Calls bounds the provider calls (and their state writes) this
	// replica makes at once; zero means min(max(Slots, 16), 256).
	Calls int
	// OutputPolicy is what a run whose output fails its media check ends
	// as: OutputFail (also when empty), OutputRetry or OutputAccept.
	OutputPolicy string
	// OutputRetries bounds OutputRetry's new submissions per run; zero
	// means 1.
	OutputRetries int
	// CallbackURL, when set, turns callbacks on for the provider: it
	// mints job id's callback URL, which the adapter registers at submit;
	// the replica then subscribes to the provider's wakes
	// (wire.WakeSubject) and polls a woken job at once. Polling stays
	// the safety net: PollInterval may then be minutes.
	CallbackURL func(jobID string) string
}

// Output policies: what a run whose output failed its media check ends as.
const (
	// OutputFail fails the run with code invalid_output; the archived
	// bytes are kept for inspection.
	OutputFail = "fail"
	// OutputRetry submits the job again (paid again), only within its
	// budgets and at most Runtime.OutputRetries times, then fails it.
	OutputRetry = "retry"
	// OutputAccept records the validation error and succeeds.
	OutputAccept = "accept"
)

// Config tunes the worker.
type Config struct {
	// WorkerID names this replica in job state and events.
	WorkerID string
	// AckWait is the consumers' AckWait; heartbeats go every AckWait/4.
	AckWait time.Duration
	// MaxAttempts is how many retryable failures a job may have.
	MaxAttempts int
	// MaxDeliver is the consumers' MaxDeliver (crash-loop guard).
	MaxDeliver int
	// RetryBase and RetryMax shape the NakWithDelay back-off.
	RetryBase, RetryMax time.Duration
	// ProbeInterval is the first wait before probing a provider paused for
	// credits; it doubles while probes fail, up to MaxProbeInterval.
	ProbeInterval    time.Duration
	MaxProbeInterval time.Duration
	// ShutdownTimeout is how long paid calls in flight at shutdown may take
	// to finish and be recorded before the worker gives up on them.
	ShutdownTimeout time.Duration
	// PullWait bounds one pull request; zero means 5s.
	PullWait time.Duration
	// RateLimitBackoff is how long every replica backs off after a 429
	// that says nothing of when to come back; zero means 2s.
	RateLimitBackoff time.Duration
	// Lookahead is how many jobs of each priority an engine pulls ahead of
	// need, to schedule them by priority and fairness key. Zero means
	// 10,000.
	Lookahead int
	// Window is each consumer's MaxAckPending: running, pulled-ahead and
	// retrying jobs together. Zero means 100,000.
	Window int
	// Limits are the job size limits.
	Limits reelq.Limits
	// Archive, when its Store is set, archives every succeeded job's
	// outputs before the result is published.
	Archive ArchiveConfig
	// ProviderBudgets are per-provider spending limits per period (an
	// operator's limit in the reelq_budgets bucket overrides them).
	ProviderBudgets map[string]ProviderBudget
	Logger          *slog.Logger
	Metrics         *metrics.Metrics
	// Secrets are removed from error messages in results and events.
	Secrets *logging.Secrets
	// LimiterOutages carries the providers' limiters' outage reports (see
	// Outages): the worker raises and clears each provider's alarm.
	LimiterOutages <-chan ratelimit.Outage
	// HeartbeatEvery is how often the worker publishes its record on
	// WORKERS; zero means heartbeat.Interval (15s).
	HeartbeatEvery time.Duration
	// FoldInterval is how often the replica holding the fold's lease
	// counts new results into the tallies (package tally); zero means
	// tally.DefaultInterval (1s). Done and spend counts lag the results by
	// about this much.
	FoldInterval time.Duration
	// TracerProvider makes the spans of deliveries, provider calls,
	// archiving and result publishing; nil means none (a no-op tracer).
	TracerProvider trace.TracerProvider
}

func (c *Config) defaults() {
	if c.WorkerID == "" {
		c.WorkerID = "worker"
	}
	if c.AckWait <= 0 {
		c.AckWait = time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 10 * time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 10 * time.Minute
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = time.Minute
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 70 * time.Second
	}
	if c.PullWait <= 0 {
		c.PullWait = 5 * time.Second
	}
	if c.RateLimitBackoff <= 0 {
		c.RateLimitBackoff = 2 * time.Second
	}
	if c.HeartbeatEvery <= 0 {
		c.HeartbeatEvery = heartbeat.Interval
	}
	if c.Lookahead <= 0 {
		c.Lookahead = 10_000
	}
	if c.Window <= 0 {
		c.Window = 100_000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Worker runs jobs for a set of providers.
type Worker struct {
	cfg     Config
	tracer  trace.Tracer
	nc      *nats.Conn
	js      jetstream.JetStream
	states  *jobstate.Store
	pstate  *providerstate.Store
	slotsKV jetstream.KeyValue
	rts     map[string]*Runtime
	log     *slog.Logger
	m       *metrics.Metrics
	cancels *cancelSet
	budgets *budgeter
	beat    *beat
	folder  *tally.Folder // counts results into the tallies, when it holds the lease

	archiver    *archive.Archiver
	archivePool *slots.Pool

	mu        sync.Mutex
	engines   map[string]*engine
	overBatch map[string]bool // batches seen over budget (events once)
	// watchers reports the health of the background watchers (provider
	// state, cancel requests) for readiness.
	watchErr map[string]error
	// afterReserve, when set (tests), runs after a budget reservation and
	// before the state write that records it: where a crash leaves a
	// reservation no state names.
	afterReserve atomic.Pointer[func(jobID string)]
}

// New returns a worker. The streams and buckets must exist (queue.Setup).
func New(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, cfg Config, rts map[string]*Runtime) (*Worker, error) {
	cfg.defaults()
	jobsKV, err := js.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		return nil, fmt.Errorf("job state bucket: %w", err)
	}
	provKV, err := js.KeyValue(ctx, queue.BucketProviders)
	if err != nil {
		return nil, fmt.Errorf("provider state bucket: %w", err)
	}
	slotsKV, err := js.KeyValue(ctx, queue.BucketSlots)
	if err != nil {
		return nil, fmt.Errorf("slots bucket: %w", err)
	}
	cancelKV, err := js.KeyValue(ctx, queue.BucketCancel)
	if err != nil {
		return nil, fmt.Errorf("cancel bucket: %w", err)
	}
	ps := providerstate.New(js, provKV, queue.StreamJobs, queue.ConsumerNames)
	ps.MaxProbeInterval = cfg.MaxProbeInterval
	for name, rt := range rts {
		if err := rt.setDefaults(name); err != nil {
			return nil, err
		}
	}
	w := &Worker{
		cfg: cfg, nc: nc, js: js, rts: rts, slotsKV: slotsKV,
		states: jobstate.New(js, jobsKV), pstate: ps,
		log: cfg.Logger.With("component", "worker", "worker_id", cfg.WorkerID), m: cfg.Metrics,
		engines: map[string]*engine{}, watchErr: map[string]error{}, overBatch: map[string]bool{},
		tracer: tracerOf(cfg.TracerProvider),
	}
	budgetKV, err := js.KeyValue(ctx, wire.BucketBudgets)
	if err != nil {
		return nil, fmt.Errorf("budgets bucket: %w", err)
	}
	w.budgets = newBudgeter(js, budgetKV, w.log, cfg.Metrics, cfg.ProviderBudgets)
	talliesKV, err := js.KeyValue(ctx, wire.BucketTallies)
	if err != nil {
		return nil, fmt.Errorf("tallies bucket: %w", err)
	}
	w.folder = &tally.Folder{
		Store: &store.Store{NC: nc, JS: js, Timeout: 10 * time.Second}, KV: talliesKV,
		Holder: cfg.WorkerID + "/" + nuid.Next(), Interval: cfg.FoldInterval, Log: w.log,
	}
	w.budgets.onLost = w.budgetsLost
	w.cancels = newCancelSet(cancelKV, w.log)
	w.beat = newBeat(w)
	if err := w.setupArchive(ctx, slotsKV); err != nil {
		return nil, err
	}
	return w, nil
}

// setDefaults checks the runtime of provider name and fills its unset
// fields from the provider's spec and reelq's defaults.
func (rt *Runtime) setDefaults(name string) error {
	if rt.Provider == nil || rt.Limiter == nil {
		return fmt.Errorf("provider %s: runtime needs a provider and a limiter", name)
	}
	d := rt.Spec.Timings
	if rt.PollInterval <= 0 {
		rt.PollInterval = d.PollInterval
	}
	if rt.MaxPollInterval < rt.PollInterval {
		rt.MaxPollInterval = max(d.MaxPollInterval, rt.PollInterval)
	}
	if rt.JobTimeout <= 0 {
		rt.JobTimeout = d.JobTimeout
	}
	if rt.RequestTimeout <= 0 {
		rt.RequestTimeout = 60 * time.Second
	}
	if rt.PollErrorBudget <= 0 {
		rt.PollErrorBudget = defaultPollErrorBudget
	}
	if rt.MaxInflight <= 0 {
		rt.MaxInflight = 1
	}
	if rt.Slots <= 0 || rt.Slots > rt.MaxInflight {
		rt.Slots = rt.MaxInflight
	}
	if rt.Calls <= 0 {
		rt.Calls = min(max(rt.Slots, 16), 256)
	}
	if rt.HoldAbove.Unit == "" {
		rt.HoldAbove = reelq.Cost{Amount: rt.Spec.HoldAbove.Amount, Unit: rt.Spec.HoldAbove.Unit}
	}
	switch rt.Ambiguous {
	case "", AmbiguousResubmit, AmbiguousHold:
	default:
		return fmt.Errorf("provider %s: ambiguous-submission policy %q (want %s or %s)", name, rt.Ambiguous, AmbiguousResubmit, AmbiguousHold)
	}
	switch rt.OutputPolicy {
	case "":
		rt.OutputPolicy = OutputFail
	case OutputFail, OutputRetry, OutputAccept:
	default:
		return fmt.Errorf("provider %s: output policy %q (want %s, %s or %s)", name, rt.OutputPolicy, OutputFail, OutputRetry, OutputAccept)
	}
	if rt.OutputRetries <= 0 {
		rt.OutputRetries = 1
	}
	if rt.AmbiguousPauseAfter == 0 {
		rt.AmbiguousPauseAfter = 3
	}
	if rt.AmbiguousWindow <= 0 {
		rt.AmbiguousWindow = 10 * time.Minute
	}
	return nil
}

// setupArchive makes the archiver when the config has a store: its
// cluster-wide download slots, and its cluster-wide bandwidth if set.
func (w *Worker) setupArchive(ctx context.Context, slotsKV jetstream.KeyValue) error {
	a := w.cfg.Archive
	if a.Store == nil {
		return nil
	}
	if a.Fetcher == nil {
		return errors.New("archive: a store needs a fetcher")
	}
	if a.Concurrency <= 0 {
		a.Concurrency = 4
	}
	w.archivePool = slots.New(slotsKV, slots.Config{Provider: "archive", Worker: w.cfg.WorkerID, Cap: a.Concurrency, TTL: w.cfg.AckWait, Logger: w.log})
	opts := archive.Options{Fetcher: a.Fetcher, Slots: clusterSlots{w.archivePool}, Retry: a.Retry, Logger: w.log.With("component", "archive")}
	if a.Bandwidth > 0 {
		rlKV, err := w.js.KeyValue(ctx, queue.BucketRateLimit)
		if err != nil {
			return fmt.Errorf("rate limit bucket: %w", err)
		}
		// A download waits for bandwidth however long the store is
		// unavailable (UnavailableAfter -1): its retries would not help.
		opts.Bandwidth = clusterBandwidth{ratelimit.New(ratelimit.NewKVStore(rlKV), "archive-bandwidth",
			ratelimit.Config{Rate: float64(a.Bandwidth) / archive.BandwidthChunk, Burst: 16, Logger: w.log, UnavailableAfter: -1})}
	}
	var err error
	if w.archiver, err = archive.NewArchiver(a.Store, opts); err != nil {
		return err
	}
	w.cfg.Archive = a
	return nil
}

// archiveWorkers is how many downloads one engine runs at once (the
// cluster-wide bound is the archive slots).
func (w *Worker) archiveWorkers() int {
	if w.archiver == nil {
		return 0
	}
	return w.cfg.Archive.Concurrency
}

// ProviderState exposes the provider state store (pause/resume).
func (w *Worker) ProviderState() *providerstate.Store { return w.pstate }

// Healthy reports an error when a background watcher the worker depends
// on has stopped and could not be restarted yet, or a provider's rate
// limiter cannot use its shared state (for /readyz).
func (w *Worker) Healthy() error {
	w.mu.Lock()
	for name, err := range w.watchErr {
		if err != nil {
			w.mu.Unlock()
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	w.mu.Unlock()
	return w.limiterHealth()
}

func (w *Worker) setWatchErr(name string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.watchErr[name] = err
}

// Run consumes jobs until ctx ends, then shuts down: from that moment no
// new paid call starts; jobs not in a paid call return to the queue at
// once (no attempt used); paid calls in flight finish and are recorded,
// for up to ShutdownTimeout. If a provider's engine cannot start, the
// engines already started are stopped and Run returns the error.
func (w *Worker) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var bgWG sync.WaitGroup
	defer bgWG.Wait()
	defer stopBG() // runs before the Wait above

	if err := w.startWatcher(bg, &bgWG, "provider state watch", w.pstate.Watch); err != nil {
		return err
	}
	if err := w.startWatcher(bg, &bgWG, "cancel watch", w.cancels.watch); err != nil {
		return err
	}
	if err := w.startWatcher(bg, &bgWG, "budget watch", w.budgets.watch); err != nil {
		return err
	}

	intake, stopIntake := context.WithCancel(ctx)
	defer stopIntake()
	work, cutShort := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cutShort(ErrShutdown)

	var wg sync.WaitGroup
	if err := w.startEngines(ctx, intake, work, &wg); err != nil {
		stopIntake()
		wg.Wait()
		return err
	}
	w.cancels.setSink(w.onCancel)
	unsubscribe, err := w.subscribeWakes()
	if err != nil {
		stopIntake()
		wg.Wait()
		return fmt.Errorf("wake subscription: %w", err)
	}
	defer unsubscribe() // before the engines' last jobs settle: a wake then has nothing to wake
	if w.archivePool != nil {
		// The archive slots outlive the engines' last downloads.
		apCtx, stopAP := context.WithCancel(context.WithoutCancel(ctx))
		defer stopAP()
		bgWG.Add(1)
		go func() {
			defer bgWG.Done()
			_ = w.archivePool.Run(apCtx)
		}()
		defer func() { stopAP() }()
	}
	bgWG.Add(4)
	go func() {
		defer bgWG.Done()
		(&sweeper{w: w}).run(bg)
	}()
	go func() {
		defer bgWG.Done()
		w.folder.Run(bg)
	}()
	go func() {
		defer bgWG.Done()
		w.beat.run(bg) // its last record says the replica stopped
	}()
	go func() {
		defer bgWG.Done()
		w.runControl(bg)
	}()
	bgWG.Add(1)
	go func() {
		defer bgWG.Done()
		w.runCanceller(intake)
	}()
	if w.cfg.LimiterOutages != nil {
		bgWG.Add(1)
		go func() {
			defer bgWG.Done()
			w.watchLimiters(bg)
		}()
	}

	<-ctx.Done()
	w.shutdown(&wg, cutShort)
	return nil
}

// startEngines starts an engine per provider, each on its goroutine
// (counted in wg), which returns once intake ended and its jobs are
// settled; work ends the steps still running.
func (w *Worker) startEngines(ctx, intake, work context.Context, wg *sync.WaitGroup) error {
	for name, rt := range w.rts {
		e, err := w.newEngine(ctx, name, rt)
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.engines[name] = e
		w.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.run(intake, work)
		}()
		w.log.Info("consuming", "provider", name, "max_inflight", rt.MaxInflight, "slots", rt.Slots, "lookahead", w.cfg.Lookahead)
	}
	return nil
}

// shutdown waits for the engines (engines) to settle their jobs once
// intake ended, up to ShutdownTimeout; then it cuts the paid calls still
// running short (cutShort), and their jobs are redelivered.
func (w *Worker) shutdown(engines *sync.WaitGroup, cutShort context.CancelCauseFunc) {
	w.log.Info("shutting down: no new paid calls; returning waiting jobs to the queue", "timeout", w.cfg.ShutdownTimeout)
	done := make(chan struct{})
	go func() {
		engines.Wait()
		close(done)
	}()
	t := time.NewTimer(w.cfg.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
		w.log.Info("all jobs settled")
		return
	case <-t.C:
	}
	w.log.Warn("shutdown timeout: leaving the jobs still in a paid call for redelivery")
	cutShort(ErrShutdown)
	<-done
}

// startWatcher runs watch (which returns once its initial values are
// loaded, and keeps watching until ctx ends) under a supervisor that
// restarts it with back-off when it stops on its own, reporting the gap
// in Healthy.
func (w *Worker) startWatcher(ctx context.Context, wg *sync.WaitGroup, name string, watch func(context.Context) (<-chan struct{}, error)) error {
	stopped, err := watch(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(200*time.Millisecond), backoff.WithMaxInterval(10*time.Second), backoff.WithMaxElapsedTime(0))
		for {
			select {
			case <-ctx.Done():
				return
			case <-stopped:
			}
			if ctx.Err() != nil {
				return
			}
			w.setWatchErr(name, errors.New("stopped; restarting"))
			w.log.Warn("watcher stopped; restarting it", "watcher", name)
			for {
				if !sleepCtx(ctx, b.NextBackOff()) {
					return
				}
				s, err := watch(ctx)
				if err == nil {
					stopped = s
					b.Reset()
					w.setWatchErr(name, nil)
					w.log.Info("watcher restarted", "watcher", name)
					break
				}
				w.setWatchErr(name, err)
				w.log.Warn("restarting watcher failed", "watcher", name, "err", err)
			}
		}
	}()
	return nil
}

func (w *Worker) newEngine(ctx context.Context, name string, rt *Runtime) (*engine, error) {
	cons, err := queue.EnsureConsumers(ctx, w.js, name, queue.ConsumerSettings{
		Window: w.cfg.Window, AckWait: w.cfg.AckWait, MaxDeliver: w.cfg.MaxDeliver, Cap: rt.MaxInflight, Rate: rt.Rate, Burst: rt.Burst,
	})
	if err != nil {
		return nil, err
	}
	st, err := w.pstate.Enforce(ctx, name)
	if err != nil {
		return nil, err
	}
	w.m.SetPaused(name, st.Code, st.Paused)
	if st.Paused {
		w.log.Warn("provider is paused", "provider", name, "code", st.Code, "reason", st.Reason, "since", st.Since)
	}
	// The lease outlives a dead replica's deliveries by an AckWait: its
	// tasks still run at the provider until their redeliveries (after
	// AckWait) take the slots back, first in line (resumeLevel).
	pool := slots.New(w.slotsKV, slots.Config{Provider: name, Worker: w.cfg.WorkerID, Cap: rt.MaxInflight, TTL: 2 * w.cfg.AckWait,
		Logger: w.log.With("provider", name)})
	return newEngine(w, name, rt, cons, pool), nil
}

// onCancel hands a cancel request to the engine holding the job, if any.
func (w *Worker) onCancel(id, provider string) {
	w.mu.Lock()
	e := w.engines[provider]
	w.mu.Unlock()
	if e != nil {
		e.post(evCancel{id: id})
	}
}

func (w *Worker) event(e reelq.Event) {
	e.Worker = w.cfg.WorkerID
	if err := queue.PublishEvent(w.nc, e); err != nil {
		w.log.Debug("event not published", "kind", e.Kind, "err", err)
	}
}

func (w *Worker) redact(s string) string { return w.cfg.Secrets.Redact(s) }

// observeCall records a provider call's latency and status.
func (w *Worker) observeCall(provider, op string, err error, d time.Duration) {
	status := 200
	var pe *providers.Error
	switch {
	case errors.As(err, &pe):
		status = pe.StatusCode
	case err != nil:
		status = 0
	}
	w.m.Call(provider, op, status, d)
}

// retryDelay is the NakWithDelay before attempt+1, from a backoff/v4
// exponential schedule.
func (w *Worker) retryDelay(attempt int) time.Duration {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(w.cfg.RetryBase), backoff.WithMultiplier(2),
		backoff.WithMaxInterval(w.cfg.RetryMax), backoff.WithRandomizationFactor(0.2), backoff.WithMaxElapsedTime(0))
	d := b.NextBackOff()
	for i := 1; i < attempt; i++ {
		d = b.NextBackOff()
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// recovery is provider's Recovery, "" for a provider this replica does
// not run.
func (w *Worker) recovery(provider string) providers.Recovery {
	if rt := w.rts[provider]; rt != nil {
		return rt.Spec.Recovery
	}
	return ""
}
