// Command forwarder POSTs reelq's result events to HTTP receivers that do
// not speak NATS, signed in the Standard Webhooks format, retried for a
// day, dead-lettered in HOOKS_DLQ when they never succeed
// (docs/webhooks.md). It is a command of its own, not a worker option:
// it holds no provider key and needs no right on jobs, while the worker
// holds no webhook secret and makes no request to receivers' addresses;
// each runs with its own least-privilege NATS identity.
//
// Configuration is read from the environment (forwarder --help).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/term"

	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/config"
	"github.com/reelq/reelq/internal/forwarder"
	"github.com/reelq/reelq/internal/health"
	"github.com/reelq/reelq/internal/logging"
	"github.com/reelq/reelq/internal/metrics"
	"github.com/reelq/reelq/internal/natsconn"
	"github.com/reelq/reelq/internal/netguard"
	"github.com/reelq/reelq/internal/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "forwarder:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args, environ []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("forwarder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.Bool("version", false, "print the version and exit (also: forwarder version)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: forwarder [--version | version]\n\nPOSTs reelq result events to webhook receivers (docs/webhooks.md), configured by these environment variables:\n\n")
		config.FormatForwarderHelp(stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *version || fs.Arg(0) == "version" {
		buildinfo.Print(stderr, "forwarder")
		return nil
	}
	cfg, err := config.LoadForwarder(environ)
	if err != nil {
		return err
	}
	secrets := &logging.Secrets{}
	secrets.Add(cfg.Secrets...)
	secrets.Add(cfg.NATS.Secrets()...)
	level, _ := config.ParseLevel(cfg.LogLevel)
	log := logging.New(stderr, cfg.LogFormat, level, secrets, !isTerminal(stderr) || os.Getenv("NO_COLOR") != "")
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	signer, err := signingSecrets(cfg.Secrets)
	if err != nil {
		return err
	}
	routes, err := forwarder.ParseRoutes(cfg.URL, cfg.ProviderURLs, cfg.BatchURLs, [3]string{"FORWARDER_URL", "FORWARDER_PROVIDER_URLS", "FORWARDER_BATCH_URLS"})
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	all := routes.All()
	if len(all) == 0 {
		return errors.New("configuration: no receiver: set FORWARDER_URL, FORWARDER_PROVIDER_URLS or FORWARDER_BATCH_URLS")
	}
	for _, u := range all {
		if pu, _ := url.Parse(u); pu != nil && pu.Scheme == "http" && !loopback(pu.Hostname()) {
			log.Warn("a receiver takes plain http: results (and their output links) cross the network in clear; the signature still proves their origin", "url", netguard.RedactURL(u))
		}
	}

	natsURL := cfg.NATS.URL
	if natsURL == "" {
		natsURL = nats.DefaultURL
	}
	nc, err := natsconn.Connect(cfg.NATS, natsURL, "reelq-forwarder", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics.RegisterBuildInfo(reg, buildinfo.Get())
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	f, err := forwarder.New(sctx, js, forwarder.Config{
		Routes: routes, Secrets: signer, Network: netguard.Rules{AllowPrivate: cfg.AllowPrivate, AllowHosts: cfg.AllowHosts},
		Timeout: cfg.Timeout, RetryBase: cfg.RetryBase, RetryMax: cfg.RetryMax, RetryBudget: cfg.RetryBudget,
		Concurrency: cfg.Concurrency, MaxPending: cfg.MaxPending, Durable: cfg.Durable, DeliverAll: cfg.Deliver == "all",
		Layout: forwarder.Layout{Replicas: cfg.Replicas, Retention: cfg.Retention}, Logger: log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	reg.MustRegister(metrics.NewResultsLagCollector(js, cfg.Durable))
	log.Info("forwarding results", "receivers", len(all), "durable", cfg.Durable, "concurrency", cfg.Concurrency, "retry_budget", cfg.RetryBudget.String())
	if cfg.HTTPAddr != "" {
		hs := &health.Server{Gatherer: reg, Logger: log, Ready: func(context.Context) error {
			if nc.Status() != nats.CONNECTED {
				return fmt.Errorf("NATS connection is %s", nc.Status())
			}
			return nil
		}}
		addr, _, err := hs.Serve(ctx, cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("FORWARDER_HTTP_ADDR: %w", err)
		}
		log.Info("serving /healthz, /readyz and /metrics", "addr", addr)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		log.Info("stopping: deliveries in flight finish", "timeout", cfg.ShutdownTimeout.String())
		select {
		case runErr = <-done:
		case <-time.After(cfg.ShutdownTimeout):
			runErr = fmt.Errorf("deliveries still in flight after FORWARDER_SHUTDOWN_TIMEOUT (%s); they come back to the next forwarder", cfg.ShutdownTimeout)
		}
	}
	if err := nc.Drain(); err != nil {
		log.Warn("drain failed", "err", err)
	}
	log.Info("forwarder stopped")
	return runErr
}

// signingSecrets checks each secret's size (Standard Webhooks: 24 to 64
// bytes) and builds the signer; errors name the variable, never a secret.
func signingSecrets(secrets []string) (*webhook.Secrets, error) {
	for i, s := range secrets {
		k, err := webhook.DecodeSecret(s)
		if err != nil {
			return nil, fmt.Errorf("configuration: FORWARDER_SECRET(_FILE): secret %d of %d: %v", i+1, len(secrets), err)
		}
		if len(k) < 24 || len(k) > 64 {
			return nil, fmt.Errorf("configuration: FORWARDER_SECRET(_FILE): secret %d of %d is %d bytes; want 24 to 64 random bytes "+
				"(printf 'whsec_%%s\\n' \"$(head -c 32 /dev/urandom | base64)\")", i+1, len(secrets), len(k))
		}
	}
	return webhook.NewSecrets(secrets...)
}

func loopback(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
