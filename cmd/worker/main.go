// Command worker runs reelq's job workers. With NATS_URL unset it starts an
// embedded JetStream server on REELQ_LISTEN (127.0.0.1:4222), storing data
// under REELQ_DATA_DIR; with NATS_URL set it is a client of that server or
// cluster. Any number of replicas may run against one cluster.
//
// Configuration is read from the environment; see the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/term"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/archive"
	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/config"
	"github.com/reelq/reelq/internal/embedded"
	"github.com/reelq/reelq/internal/health"
	"github.com/reelq/reelq/internal/logging"
	"github.com/reelq/reelq/internal/metrics"
	"github.com/reelq/reelq/internal/natsconn"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/tracing"
	"github.com/reelq/reelq/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args, environ []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.Bool("version", false, "print the version and exit (also: worker version)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: worker [--version | version]\n\nRuns reelq job workers, configured by these environment variables:\n\n")
		config.FormatHelp(stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *version || fs.Arg(0) == "version" {
		buildinfo.Print(stderr, "worker")
		return nil
	}
	cfg, err := config.LoadWorker(environ)
	if err != nil {
		return err
	}
	secrets := &logging.Secrets{}
	for _, p := range cfg.Providers() {
		secrets.Add(p.APIKey)
	}
	secrets.Add(cfg.NATS.Secrets()...)
	cbs, err := loadCallbacks(cfg, environ)
	if err != nil {
		return err
	}
	secrets.Add(cbs.secrets...)
	level, _ := config.ParseLevel(cfg.LogLevel)
	log := logging.New(stderr, cfg.LogFormat, level, secrets, !isTerminal(stderr) || os.Getenv("NO_COLOR") != "")
	bi := buildinfo.Get()
	log.Info("worker starting", "version", bi.Version, "revision", bi.Revision, "go_version", bi.GoVersion, "worker_id", cfg.WorkerID)
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}

	url := cfg.NATS.URL
	var srv *server.Server
	if url == "" {
		srv, err = embedded.Start(embedded.Options{
			Name: "reelq-embedded", Listen: cfg.Listen, StoreDir: filepath.Join(cfg.DataDir, "jetstream"),
			SyncAlways: cfg.SyncAlways, Logger: log,
		})
		if err != nil {
			return fmt.Errorf("REELQ_LISTEN %s: %w", cfg.Listen, err)
		}
		defer embedded.Stop(srv)
		url = srv.ClientURL()
		log.Info("embedded NATS JetStream server started", "url", url, "data_dir", cfg.DataDir, "sync_always", cfg.SyncAlways)
	}
	nc, err := natsconn.Connect(cfg.NATS, url, "reelq-worker/"+cfg.WorkerID, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	log.Info("connected to NATS", "nats", cfg.NATS, "server", nc.ConnectedUrlRedacted())
	// An async publish whose ack never comes (the connection dropped
	// after the message left) fails after 30 s instead of waiting forever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return err
	}
	layout := queue.Layout{Replicas: cfg.StreamReplicas, DedupeWindow: cfg.DedupeWindow, ResultsMaxAge: cfg.ResultsMaxAge, JobStateTTL: cfg.JobStateTTL,
		MaxJobBytes: int32(cfg.MaxJobBytes), JobsMaxBytes: cfg.JobsMaxBytes,
		Outputs: strings.EqualFold(cfg.Archive, archive.KindJetStream) && cfg.ArchiveBucket == "", OutputsRetention: cfg.ArchiveRetention}
	switch cfg.Setup {
	case "skip":
		if err := expectSetup(ctx, js); err != nil {
			return err
		}
	default:
		if err := setup(ctx, js, layout, log); err != nil {
			return err
		}
		if cfg.Setup == "only" {
			log.Info("streams and buckets are set up; exiting (REELQ_SETUP=only)")
			return nil
		}
	}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rlKV, err := js.KeyValue(setupCtx, queue.BucketRateLimit)
	if err != nil {
		return err
	}
	// One store for every provider's limiter: when its bucket is gone or
	// cannot be written, it recreates it as Setup would (the limiters'
	// state is soft; see RELIABILITY.md).
	rlStore := ratelimit.NewKVStore(rlKV).Repairable(js, func(ctx context.Context) (jetstream.KeyValue, error) {
		return queue.SetupBucket(ctx, js, layout, queue.BucketRateLimit)
	}, 0)
	outages, onOutage := worker.Outages()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	metrics.RegisterBuildInfo(reg, bi)

	rts := map[string]*worker.Runtime{}
	budgets := map[string]worker.ProviderBudget{}
	for _, spec := range all.Specs {
		name, pc := spec.Name(), cfg.Providers()[spec.Name()]
		if !pc.Active() {
			log.Info("provider disabled: no API key", "provider", name)
			continue
		}
		// Linger: when tokens are plentiful (a high rate, polls of many
		// jobs arriving one at a time), calls arriving within 5 ms share
		// one compare-and-set.
		lim := ratelimit.New(rlStore, name, ratelimit.Config{Rate: pc.Rate, Burst: pc.Burst, Linger: ratelimit.DefaultLinger,
			Logger: log.With("provider", name), OnOutage: onOutage})
		// Every HTTP request the adapter sends takes a token from lim, not
		// only the first of each call (worker.HTTPClient).
		prov, err := spec.Build(providers.Config{BaseURL: pc.BaseURL, APIKey: pc.APIKey, HTTPClient: worker.HTTPClient(lim, pc.RequestTimeout, pc.Calls),
			RequestTimeout: pc.RequestTimeout, AllowInsecure: pc.AllowInsecureHTTP}, config.Environ(environ))
		if err != nil {
			return err
		}
		rts[name] = &worker.Runtime{
			Provider:        prov,
			Spec:            spec,
			Limiter:         lim,
			MaxInflight:     pc.MaxInflight,
			Rate:            pc.Rate,
			Burst:           pc.Burst,
			Slots:           pc.Slots,
			PollInterval:    pc.PollInterval,
			MaxPollInterval: pc.MaxPollInterval,
			JobTimeout:      pc.JobTimeout,
			RequestTimeout:  pc.RequestTimeout,
			Ambiguous:       pc.Ambiguous,
			Calls:           pc.Calls,
			OutputPolicy:    pc.OutputPolicy,
			OutputRetries:   pc.OutputRetries,
			CallbackURL:     cbs.urlFor(name),
		}
		if pc.Budget != "" {
			c, err := reelq.ParseCost(pc.Budget)
			if err != nil {
				return fmt.Errorf("configuration: %sBUDGET: %w", spec.Kind.Prefix(), err)
			}
			period := pc.BudgetPeriod
			if period <= 0 {
				period = 24 * time.Hour
			}
			budgets[name] = worker.ProviderBudget{Limit: c, Period: period}
		}
		rt := rts[name]
		if pc.HoldAbove != "" {
			c, err := reelq.ParseCost(pc.HoldAbove)
			if err != nil {
				return fmt.Errorf("configuration: %sHOLD_ABOVE: %w", spec.Kind.Prefix(), err)
			}
			if c.Unit != spec.Kind.Unit {
				return fmt.Errorf("configuration: %sHOLD_ABOVE: %s is in %s; %s estimates in %s", spec.Kind.Prefix(), pc.HoldAbove, c.Unit, name, spec.Kind.Unit)
			}
			rt.HoldAbove = c
		}
		if pc.AmbiguousPauseAfter != 0 {
			rt.AmbiguousPauseAfter = pc.AmbiguousPauseAfter
		}
		rt.AmbiguousWindow = pc.AmbiguousWindow
		log.Info("provider enabled", "provider", name, "settings", *pc)
	}
	if len(rts) == 0 {
		var keys []string
		for _, p := range config.ProviderPrefixes() {
			keys = append(keys, p+"API_KEY")
		}
		return fmt.Errorf("no provider enabled: set at least one of %s (or the _FILE forms)", strings.Join(keys, ", "))
	}
	reg.MustRegister(metrics.NewQueueCollector(js, names(rts)))

	arch, err := archiveConfig(ctx, cfg, js)
	if err != nil {
		return err
	}
	if arch.Fetcher != nil {
		defer arch.Fetcher.Close()
		log.Info("archiving outputs", "store", arch.Store.Name(), "bucket", arch.Store.Bucket(), "concurrency", arch.Concurrency, "bandwidth", arch.Bandwidth)
	} else {
		log.Warn("archiving is off: results carry only the providers' links, which expire")
	}
	// OpenTelemetry, off unless the OTEL_* variables ask for it (the
	// exporter reads its own from the process environment).
	tp, stopTracing, err := tracing.Setup(ctx, lookupIn(environ), "reelq-worker", bi.Version)
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(fctx); err != nil {
			log.Warn("flushing traces failed", "err", err)
		}
	}()
	if tp != nil {
		log.Info("tracing on: spans are exported over OTLP/HTTP (OTEL_* variables)")
	}
	w, err := worker.New(ctx, nc, js, worker.Config{
		TracerProvider: tp,
		WorkerID:       cfg.WorkerID, AckWait: cfg.AckWait, MaxAttempts: cfg.MaxAttempts, MaxDeliver: cfg.MaxDeliver,
		RetryBase: cfg.RetryBase, RetryMax: cfg.RetryMax, ProbeInterval: cfg.ProbeInterval, MaxProbeInterval: cfg.MaxProbeInterval,
		ShutdownTimeout: cfg.ShutdownTimeout, FoldInterval: cfg.FoldInterval, Logger: log, Metrics: m, Secrets: secrets,
		Lookahead: cfg.Lookahead, Window: cfg.Window, Archive: arch, ProviderBudgets: budgets, LimiterOutages: outages,
		Limits: reelq.Limits{MaxInputBytes: cfg.MaxInputBytes, MaxMetadataBytes: cfg.MaxMetadataBytes, MaxJobBytes: cfg.MaxJobBytes},
	}, rts)
	if err != nil {
		return err
	}
	reg.MustRegister(metrics.NewHeldCollector(w.HeldJobs))
	if cfg.HTTPAddr != "" {
		hs := &health.Server{Gatherer: reg, Logger: log, Profiling: cfg.Profiling, Ready: func(ctx context.Context) error {
			if nc.Status() != nats.CONNECTED {
				return fmt.Errorf("NATS connection is %s", nc.Status())
			}
			if err := w.Healthy(); err != nil {
				return err
			}
			return queue.Ready(ctx, js)
		}}
		addr, _, err := hs.Serve(ctx, cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("WORKER_HTTP_ADDR: %w", err)
		}
		log.Info("serving /healthz, /readyz and /metrics", "addr", addr)
	}
	if err := cbs.serve(ctx, cfg, nc, js, log); err != nil {
		return err
	}
	runErr := w.Run(ctx)
	if err := nc.Drain(); err != nil {
		log.Warn("drain failed", "err", err)
	}
	log.Info("worker stopped")
	return runErr
}

// lookupIn is os.Getenv over environ (KEY=VALUE lines).
func lookupIn(environ []string) func(string) string {
	return func(key string) string {
		for _, kv := range environ {
			if k, v, ok := strings.Cut(kv, "="); ok && k == key {
				return v
			}
		}
		return ""
	}
}

// setup creates the streams and buckets, retrying for up to two minutes:
// replicas starting together against a new cluster race to create the
// replicated streams, and a cluster still electing leaders answers late.
func setup(ctx context.Context, js jetstream.JetStream, l queue.Layout, log *slog.Logger) error {
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(500*time.Millisecond),
		backoff.WithMaxInterval(10*time.Second), backoff.WithMaxElapsedTime(2*time.Minute)), ctx)
	return backoff.RetryNotify(func() error {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := queue.Setup(actx, js, l); err != nil {
			// The server answers a denied JetStream API request with an
			// asynchronous error only, so the request times out: name the
			// denied subject and the way out, and stop retrying.
			if denied := js.Conn().LastError(); errors.Is(denied, nats.ErrPermissionViolation) && strings.Contains(denied.Error(), "$JS.API.STREAM.") {
				return backoff.Permanent(fmt.Errorf("set up streams: %w (%w): this NATS user may not create or update reelq's streams; "+
					"run the worker once with REELQ_SETUP=only as a user that may (the admin identity), and the workers with REELQ_SETUP=skip", err, denied))
			}
			return fmt.Errorf("set up streams: %w", err)
		}
		return nil
	}, b, func(err error, d time.Duration) {
		log.Warn("stream setup failed; retrying", "err", err, "retry_in", d)
	})
}

// expectSetup checks, for REELQ_SETUP=skip, that the streams exist.
func expectSetup(ctx context.Context, js jetstream.JetStream) error {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, name := range []string{queue.StreamJobs, queue.StreamResults, queue.StreamEvents, queue.StreamDLQ} {
		if _, err := js.Stream(sctx, name); err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("REELQ_SETUP=skip: stream %s does not exist: run the worker once with REELQ_SETUP=only (and credentials allowed to create streams)", name)
			}
			return fmt.Errorf("REELQ_SETUP=skip: stream %s: %w", name, err)
		}
	}
	return nil
}

// archiveConfig builds the output archive the configuration asks for
// (REELQ_ARCHIVE and friends); its zero value means off.
func archiveConfig(ctx context.Context, cfg *config.Worker, js jetstream.JetStream) (worker.ArchiveConfig, error) {
	ac := archive.Config{Kind: cfg.Archive, Bucket: cfg.ArchiveBucket, S3: archive.S3Config{
		Endpoint: cfg.ArchiveS3Endpoint, Region: cfg.ArchiveS3Region, PathStyle: cfg.ArchiveS3PathStyle, DisableTLS: cfg.ArchiveS3DisableTLS}}
	var store archive.Store
	switch {
	case !ac.Enabled() && !cfg.Validate:
		return worker.ArchiveConfig{}, nil
	case !ac.Enabled():
		// Outputs are still downloaded, under the same limits, inspected
		// and dropped: validation runs with archiving off.
		store = archive.Discard()
	default:
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var err error
		if store, err = archive.NewStore(sctx, ac, js); err != nil {
			return worker.ArchiveConfig{}, fmt.Errorf("REELQ_ARCHIVE: %w", err)
		}
		if err := store.Check(sctx); err != nil {
			return worker.ArchiveConfig{}, fmt.Errorf("REELQ_ARCHIVE: %w", err)
		}
	}
	minRate := cfg.ArchiveMinRate
	if minRate == 0 {
		minRate = -1 // no minimum
	}
	f, err := archive.NewFetcher(archive.FetchConfig{AllowPrivate: cfg.ArchiveAllowPrivate, AllowHosts: cfg.ArchiveAllowHosts,
		MaxSize: cfg.ArchiveMaxBytes, Timeout: cfg.ArchiveTimeout, MinRate: minRate})
	if err != nil {
		return worker.ArchiveConfig{}, fmt.Errorf("REELQ_ARCHIVE_ALLOW_HOSTS: %w", err)
	}
	return worker.ArchiveConfig{Store: store, Fetcher: f, Concurrency: cfg.ArchiveConcurrency, Bandwidth: cfg.ArchiveBandwidth,
		Retry: archive.Retry{Budget: cfg.ArchiveRetryBudget}, NoValidate: !cfg.Validate}, nil
}

func names(rts map[string]*worker.Runtime) []string {
	out := make([]string, 0, len(rts))
	for n := range rts {
		out = append(out, n)
	}
	return out
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
