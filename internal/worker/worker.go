// Package worker runs reelq jobs: for every enabled provider it pulls jobs
// from the provider's consumer (one per free slot), submits each to the
// provider once, polls it to completion under the cluster-wide rate limit,
// and publishes exactly one result event before acknowledging the job.
//
// # Error handling
//
// The provider error classes (package providers) decide what happens:
//
//	retryable, timeout, 5xx  attempt++; NakWithDelay(backoff) or, after the
//	                         last attempt, a failed result
//	rate limited (429)       the shared limiter is pushed back for every
//	                         replica; the call is retried, no attempt used
//	credits exhausted        the provider is paused for every replica
//	                         (PauseConsumer + provider state); the job is
//	                         Nak'ed with its attempts untouched; a probe
//	                         resumes the provider when credits return
//	auth                     as credits, but only an operator resumes
//	invalid input, 4xx       a failed result at once; never retried
//	shutdown                 paid calls finish; the job is Nak'ed for
//	                         another replica, no attempt used
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/logging"
	"github.com/reelq/reelq/internal/metrics"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/queue"
)

// ErrShutdown is the cause given to running jobs when the shutdown grace
// period ends.
var ErrShutdown = errors.New("worker shutting down")

// Limiter is the cluster-wide rate limiter for one provider.
type Limiter interface {
	// Wait blocks until a call may be made.
	Wait(ctx context.Context) (time.Duration, error)
	// Block delays every replica's next call until at least until.
	Block(ctx context.Context, until time.Time) error
}

// Runtime is what the worker needs for one provider.
type Runtime struct {
	Provider providers.Provider
	Limiter  Limiter
	// MaxInflight is the consumer's MaxAckPending (cluster-wide cap).
	MaxInflight int
	// Slots is how many of the provider's jobs this replica runs at once;
	// zero means MaxInflight.
	Slots int
	// Poll schedule and task deadline; zero means the adapter's default.
	PollInterval    time.Duration
	MaxPollInterval time.Duration
	JobTimeout      time.Duration
	// RequestTimeout bounds one provider call; zero means 60s.
	RequestTimeout time.Duration
}

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
	// ShutdownTimeout is how long running jobs may continue after intake
	// stops before they are cut short and Nak'ed.
	ShutdownTimeout time.Duration
	// PullWait bounds one pull request; zero means 5s.
	PullWait time.Duration
	Logger   *slog.Logger
	Metrics  *metrics.Metrics
	// Secrets are removed from error messages in results and events.
	Secrets *logging.Secrets
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
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Worker runs jobs for a set of providers.
type Worker struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	states *jobstate.Store
	pstate *providerstate.Store
	rts    map[string]*Runtime
	log    *slog.Logger
	m      *metrics.Metrics

	// probeMu guards probeTaken: per provider, the probe claim (by its
	// ProbeUntil) whose one probe job this replica has already admitted.
	probeMu    sync.Mutex
	probeTaken map[string]time.Time
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
	ps := providerstate.New(js, provKV, queue.StreamJobs)
	ps.MaxProbeInterval = cfg.MaxProbeInterval
	for name, rt := range rts {
		if rt.Provider == nil || rt.Limiter == nil {
			return nil, fmt.Errorf("provider %s: runtime needs a provider and a limiter", name)
		}
		d := rt.Provider.Defaults()
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
		if rt.MaxInflight <= 0 {
			rt.MaxInflight = 1
		}
		if rt.Slots <= 0 {
			rt.Slots = rt.MaxInflight
		}
	}
	return &Worker{
		cfg: cfg, nc: nc, js: js, rts: rts,
		states: jobstate.New(jobsKV), pstate: ps, probeTaken: map[string]time.Time{},
		log: cfg.Logger.With("component", "worker", "worker_id", cfg.WorkerID), m: cfg.Metrics,
	}, nil
}

// ProviderState exposes the provider state store (pause/resume).
func (w *Worker) ProviderState() *providerstate.Store { return w.pstate }

// Run consumes jobs until ctx ends, then shuts down gracefully: it stops
// pulling, lets running jobs finish for up to ShutdownTimeout, then cuts
// the rest short (they are Nak'ed for redelivery) and returns.
func (w *Worker) Run(ctx context.Context) error {
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	if err := w.pstate.Watch(watchCtx); err != nil {
		return err
	}
	work, cutShort := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cutShort(ErrShutdown)

	var wg sync.WaitGroup
	for name, rt := range w.rts {
		cons, err := queue.EnsureConsumer(ctx, w.js, name, queue.ConsumerSettings{
			MaxInflight: rt.MaxInflight, AckWait: w.cfg.AckWait, MaxDeliver: w.cfg.MaxDeliver,
		})
		if err != nil {
			return err
		}
		st, err := w.pstate.Enforce(ctx, name)
		if err != nil {
			return err
		}
		w.m.SetPaused(name, st.Code, st.Paused)
		if st.Paused {
			w.log.Warn("provider is paused", "provider", name, "code", st.Code, "reason", st.Reason, "since", st.Since)
		}
		p := &queue.Puller{
			Consumer:  cons,
			Slots:     rt.Slots,
			Heartbeat: w.cfg.AckWait / 4,
			PullWait:  w.cfg.PullWait,
			Gate:      w.gate(name, rt),
			Handle:    func(ctx context.Context, m queue.Msg) { w.handle(ctx, name, rt, m) },
			Logger:    w.log.With("provider", name),
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.Run(ctx, work)
		}()
		w.log.Info("consuming", "provider", name, "max_inflight", rt.MaxInflight, "slots", rt.Slots)
	}
	sweeper := &sweeper{w: w}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sweeper.run(ctx)
	}()

	<-ctx.Done()
	w.log.Info("shutting down: no new jobs; waiting for running jobs", "timeout", w.cfg.ShutdownTimeout)
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(w.cfg.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
		w.log.Info("all jobs settled")
		return nil
	case <-t.C:
	}
	w.log.Warn("shutdown timeout: leaving running jobs for redelivery")
	cutShort(ErrShutdown)
	<-done
	return nil
}

// gate holds a provider's puller while the provider is paused, and lets
// one probe through when an automatic pause is due to be checked.
func (w *Worker) gate(name string, rt *Runtime) func(ctx context.Context) (int, error) {
	var lastPaused bool
	probeBackoff := backoff.NewExponentialBackOff(backoff.WithInitialInterval(time.Second), backoff.WithMaxInterval(30*time.Second), backoff.WithMaxElapsedTime(0))
	return func(ctx context.Context) (int, error) {
		for {
			st, changed := w.pstate.View(name)
			if st.Paused != lastPaused {
				lastPaused = st.Paused
				w.m.SetPaused(name, st.Code, st.Paused)
			}
			if !st.Paused {
				return 0, nil
			}
			now := time.Now()
			var wake <-chan time.Time
			if st.Auto() {
				if st.ProbeOwner == w.cfg.WorkerID {
					return 1, nil // our probe job runs alone
				}
				probeDue := !st.NextProbeAt.After(now) && (st.ProbeOwner == "" || st.ProbeUntil == nil || !st.ProbeUntil.After(now))
				if probeDue {
					if ok, d := w.probe(ctx, name, rt); ok {
						probeBackoff.Reset()
						continue
					} else if d > 0 {
						wake = time.After(d)
					}
				}
				if wake == nil {
					next := *st.NextProbeAt
					if st.ProbeUntil != nil && st.ProbeUntil.After(next) {
						next = *st.ProbeUntil
					}
					wake = time.After(max(time.Until(next), 50*time.Millisecond))
				}
			}
			select {
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			case <-changed:
			case <-wake:
			}
		}
	}
}

// probe checks whether an automatically paused provider can work again.
// With a credit endpoint it asks it; otherwise it claims the probe so the
// next job pulled (alone) is the test. It reports whether the caller
// should re-read the state at once, or else how long to wait.
func (w *Worker) probe(ctx context.Context, name string, rt *Runtime) (bool, time.Duration) {
	ok, err := w.pstate.ClaimProbe(ctx, name, w.cfg.WorkerID, w.cfg.AckWait)
	if err != nil {
		w.log.Warn("claim probe failed", "provider", name, "err", err)
		return false, time.Second
	}
	if !ok {
		return false, 0
	}
	cc, hasCheck := rt.Provider.(providers.CreditChecker)
	if !hasCheck {
		// Let one job through as the probe: with the probe due, the record
		// asks for deliveries on the server. Enforce applies the record as
		// it is now, so an operator's pause that replaced ours since the
		// claim is kept rather than undone by a bare ResumeConsumer.
		if _, err := w.pstate.Enforce(ctx, name); err != nil {
			w.log.Warn("resume consumer for probe failed", "provider", name, "err", err)
		}
		w.log.Info("probing paused provider with one job", "provider", name)
		return true, 0
	}
	if _, err := rt.Limiter.Wait(ctx); err != nil {
		return false, 0
	}
	cctx, cancel := context.WithTimeout(ctx, rt.RequestTimeout)
	start := time.Now()
	err = cc.CheckCredits(prepaid(cctx))
	cancel()
	w.observeCall(name, "credits", err, time.Since(start))
	switch {
	case err == nil:
		w.log.Info("credit probe succeeded; resuming provider", "provider", name)
		w.resume(ctx, name)
	case errors.Is(err, providers.ErrCreditsExhausted), errors.Is(err, providers.ErrAuth):
		w.log.Info("credit probe: still paused", "provider", name, "err", err)
		w.pause(ctx, name, err)
	default:
		w.log.Warn("credit probe failed", "provider", name, "err", err)
		if errors.Is(err, providers.ErrRateLimited) {
			// A 429 on the credit endpoint counts against the same account:
			// share its Retry-After like any other call's.
			wait := providers.RetryAfter(err)
			if wait <= 0 {
				wait = 2 * time.Second
			}
			if berr := rt.Limiter.Block(ctx, time.Now().Add(wait)); berr != nil && ctx.Err() == nil {
				w.log.Warn("could not share the rate-limit back-off", "provider", name, "err", berr)
			}
		}
		_ = w.pstate.ReleaseProbe(ctx, name, w.cfg.WorkerID)
		return false, 5 * time.Second
	}
	return true, 0
}

// takeProbe reports whether a job just delivered for provider is the
// probe: this replica holds the probe claim of an automatic pause and has
// not yet admitted a job under that claim. Exactly one job per claim is
// the probe. Others that reach the handler meanwhile (delivered before the
// pause, or still running from before it) behave as under any pause, and
// only the probe job releases the claim: before, every job of the
// claiming replica counted as the probe, and whichever finished first
// released the claim while the real probe was still running.
func (w *Worker) takeProbe(name string) bool {
	v, _ := w.pstate.View(name)
	if !v.Auto() || v.ProbeOwner != w.cfg.WorkerID || v.ProbeUntil == nil {
		return false
	}
	w.probeMu.Lock()
	defer w.probeMu.Unlock()
	if t, ok := w.probeTaken[name]; ok && t.Equal(*v.ProbeUntil) {
		return false
	}
	w.probeTaken[name] = *v.ProbeUntil
	return true
}

// pause records err (credits or auth) as the reason provider is paused.
func (w *Worker) pause(ctx context.Context, name string, err error) {
	code, probe := providerstate.CodeCredits, w.cfg.ProbeInterval
	if errors.Is(err, providers.ErrAuth) {
		code, probe = providerstate.CodeAuth, 0
	}
	st, changed, perr := w.pstate.Pause(context.WithoutCancel(ctx), name, code, w.redact(err.Error()), w.cfg.WorkerID, probe)
	if perr != nil {
		w.log.Error("pause provider failed", "provider", name, "err", perr)
		return
	}
	w.m.SetPaused(name, st.Code, true)
	if changed {
		w.log.Warn("provider paused for every replica", "provider", name, "code", st.Code, "reason", st.Reason, "next_probe_at", st.NextProbeAt)
		w.event(queue.Event{Kind: queue.EventProviderPaused, Provider: name, Code: st.Code, Reason: st.Reason, Until: st.NextProbeAt})
	}
}

// resume ends an automatic pause after a successful probe. A manual or
// auth pause (which may have replaced it since we looked) stays.
func (w *Worker) resume(ctx context.Context, name string) {
	changed, err := w.pstate.EndAuto(context.WithoutCancel(ctx), name, w.cfg.WorkerID)
	if err != nil {
		w.log.Error("resume provider failed", "provider", name, "err", err)
		return
	}
	if !changed {
		return // not paused, or not automatically: the metric stays as it is
	}
	w.m.SetPaused(name, "", false)
	w.log.Info("provider resumed", "provider", name)
	w.event(queue.Event{Kind: queue.EventProviderResumed, Provider: name, Reason: "probe succeeded"})
}

func (w *Worker) event(e queue.Event) {
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
