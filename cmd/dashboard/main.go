// Command dashboard serves reelq's web dashboard: providers (queues per
// priority, in flight against the cap, pauses with their reason and
// probe, the rate limit's next call), batches (progress, outcomes, spend
// against budget, throughput), jobs (state, runs, events timeline, the
// outputs played from their archived copy) and dead letters, updated live.
//
// It is a client of the queue like enqueue, built on the public package
// (github.com/reelq/reelq), with a NATS identity of its own. It listens on
// 127.0.0.1:8090 by default and is read-only unless given a token file or
// a basic-auth file. docs/dashboard.md documents it.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/config"
	"github.com/reelq/reelq/internal/dashboard"
	"github.com/reelq/reelq/internal/logging"
	"github.com/reelq/reelq/internal/natsconn"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Environ(), os.Stderr, nil)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "dashboard: "+err.Error())
		os.Exit(1)
	}
}

// options are the command's settings, from flags over the environment.
type options struct {
	nats, listen            string
	tokenFile, basicFile    string
	authRead, secureCookies bool
	allowedHosts            string
	tlsCert, tlsKey         string
	consumerPrefix          string
	logFormat, logLevel     string
	s3                      *inspect.S3Options
	minInterval             time.Duration
	shutdownTimeout         time.Duration
	env                     map[string]string
	natsCfg                 *config.NATS
	stderr                  io.Writer
	version                 bool
}

func parse(args, environ []string, stderr io.Writer) (*options, error) {
	env := config.Environ(environ)
	get := func(k, def string) string {
		if v, ok := env[k]; ok && v != "" {
			return v
		}
		return def
	}
	o := &options{env: env, stderr: stderr}
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: dashboard [flags]
       dashboard version

reelq's web dashboard. Every flag has an environment variable (in brackets);
NATS credentials and TLS come from NATS_CREDS, NATS_NKEY, NATS_USER,
NATS_PASSWORD(_FILE), NATS_TOKEN(_FILE), NATS_CA, NATS_CERT, NATS_KEY and
NATS_INBOX_PREFIX, as for enqueue. Without --token-file or --basic-auth-file
the dashboard is read-only.

`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.nats, "nats", get("NATS_URL", "nats://127.0.0.1:4222"), "NATS server list, comma-separated [NATS_URL]")
	fs.StringVar(&o.listen, "listen", get("DASHBOARD_LISTEN", "127.0.0.1:8090"), "address to serve on; loopback by default [DASHBOARD_LISTEN]")
	fs.StringVar(&o.tokenFile, "token-file", get("DASHBOARD_TOKEN_FILE", ""), "file holding the token that signs in to act (16+ characters) [DASHBOARD_TOKEN_FILE]")
	fs.StringVar(&o.basicFile, "basic-auth-file", get("DASHBOARD_BASIC_AUTH_FILE", ""), "file of user:password (or user:bcrypt-hash) lines that sign in to act [DASHBOARD_BASIC_AUTH_FILE]")
	authRead, _ := strconv.ParseBool(get("DASHBOARD_AUTH_READ", "false"))
	fs.BoolVar(&o.authRead, "auth-read", authRead, "require signing in to see anything, too [DASHBOARD_AUTH_READ]")
	fs.StringVar(&o.allowedHosts, "allowed-hosts", get("DASHBOARD_ALLOWED_HOSTS", ""), "host names the dashboard answers to, comma-separated (default: loopback names when listening on loopback, any otherwise) [DASHBOARD_ALLOWED_HOSTS]")
	fs.StringVar(&o.tlsCert, "tls-cert", get("DASHBOARD_TLS_CERT", ""), "serve HTTPS with this certificate [DASHBOARD_TLS_CERT]")
	fs.StringVar(&o.tlsKey, "tls-key", get("DASHBOARD_TLS_KEY", ""), "and this key [DASHBOARD_TLS_KEY]")
	secure, _ := strconv.ParseBool(get("DASHBOARD_SECURE_COOKIES", "false"))
	fs.BoolVar(&o.secureCookies, "secure-cookies", secure, "mark cookies Secure (behind a TLS proxy; implied by --tls-cert) [DASHBOARD_SECURE_COOKIES]")
	fs.StringVar(&o.consumerPrefix, "consumer-prefix", get("REELQ_CONSUMER_PREFIX", "dashboard"), "first part of every consumer name the dashboard creates (its NATS user name) [REELQ_CONSUMER_PREFIX]")
	fs.StringVar(&o.logFormat, "log-format", get("LOG_FORMAT", "text"), "text or json [LOG_FORMAT]")
	fs.StringVar(&o.logLevel, "log-level", get("LOG_LEVEL", "info"), "debug, info, warn or error [LOG_LEVEL]")
	minInterval, err := time.ParseDuration(get("DASHBOARD_MIN_INTERVAL", "500ms"))
	if err != nil {
		return nil, fmt.Errorf("DASHBOARD_MIN_INTERVAL: %w", err)
	}
	fs.DurationVar(&o.minInterval, "min-interval", minInterval, "shortest time between two updates of a live page [DASHBOARD_MIN_INTERVAL]")
	fs.BoolVar(&o.version, "version", false, "print the version and exit (also: dashboard version)")
	o.shutdownTimeout = 5 * time.Second
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.version || fs.NArg() == 1 && fs.Arg(0) == "version" {
		o.version = true
		return o, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if env["REELQ_ARCHIVE_S3_ENDPOINT"] != "" || env["REELQ_ARCHIVE_S3_REGION"] != "" {
		o.s3 = &inspect.S3Options{Endpoint: env["REELQ_ARCHIVE_S3_ENDPOINT"], Region: env["REELQ_ARCHIVE_S3_REGION"]}
		o.s3.PathStyle, _ = strconv.ParseBool(env["REELQ_ARCHIVE_S3_PATH_STYLE"])
		o.s3.DisableTLS, _ = strconv.ParseBool(env["REELQ_ARCHIVE_S3_DISABLE_TLS"])
	}
	if o.natsCfg, err = config.LoadNATS(environ); err != nil {
		return nil, err
	}
	return o, nil
}

// run serves the dashboard until ctx ends. ready, if set, is called with
// the address it listens on (tests listen on port 0).
func run(ctx context.Context, args, environ []string, stderr io.Writer, ready func(addr string)) error {
	o, err := parse(args, environ, stderr)
	if err == nil && o.version {
		buildinfo.Print(stderr, "dashboard")
		return nil
	}
	if err != nil {
		return err
	}
	auth, err := dashboard.LoadAuth(o.tokenFile, o.basicFile)
	if err != nil {
		return err
	}
	secrets := &logging.Secrets{}
	secrets.Add(o.natsCfg.Secrets()...)
	secrets.Add(config.NATS{URL: o.nats}.Secrets()...)
	secrets.Add(auth.Secrets()...)
	level, err := config.ParseLevel(o.logLevel)
	if err != nil {
		return err
	}
	log := logging.New(stderr, o.logFormat, level, secrets, true)

	nc, err := natsconn.Connect(*o.natsCfg, o.nats, "reelq-dashboard", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	server := config.RedactURL(nc.ConnectedUrlRedacted())
	c, err := reelq.NewClient(ctx, nc, reelq.Options{ProviderEnv: o.env, By: "dashboard", ConsumerPrefix: o.consumerPrefix})
	if errors.Is(err, reelq.ErrNotReady) {
		return fmt.Errorf("NATS at %s has no reelq streams: start a worker first (it creates them; the dashboard never does)", server)
	}
	if err != nil {
		return fmt.Errorf("NATS at %s: %w", server, err)
	}
	ins, err := inspect.New(ctx, nc, reelq.Options{By: "dashboard", ConsumerPrefix: o.consumerPrefix})
	if err != nil {
		return fmt.Errorf("NATS at %s: %w", server, err)
	}

	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", o.listen, err)
	}
	var hosts []string
	for _, h := range strings.Split(o.allowedHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	d, err := dashboard.New(dashboard.Config{Client: c, Inspector: ins, NC: nc, Logger: log, Auth: auth, AuthRead: o.authRead, ListenHost: host,
		AllowedHosts: hosts, Secure: o.secureCookies || o.tlsCert != "", S3: o.s3, NATSServer: server,
		Version: buildinfo.Version(), MinInterval: o.minInterval})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	loopback := host == "localhost" || net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback()
	if !loopback && o.tlsCert == "" && !o.secureCookies {
		log.Warn("dashboard: listening beyond loopback over plain HTTP: put it behind TLS (--tls-cert, or a TLS proxy with --secure-cookies)", "listen", ln.Addr().String())
	}
	if !loopback && !o.authRead {
		log.Warn("dashboard: anyone who reaches this address can read job inputs, results and outputs; consider --auth-read", "listen", ln.Addr().String())
	}

	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	hs := &http.Server{Handler: d, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return base },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if o.tlsCert != "" {
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	mode := "read-only"
	switch {
	case auth.Token != "":
		mode = "token"
	case len(auth.Users) > 0:
		mode = "basic"
	}
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	log.Info("dashboard: serving", "url", scheme+"://"+ln.Addr().String(), "nats", server, "actions", mode, "auth_read", o.authRead)
	if ready != nil {
		ready(ln.Addr().String())
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.Run(gctx) })
	g.Go(func() error {
		var err error
		if o.tlsCert != "" {
			err = hs.ServeTLS(ln, o.tlsCert, o.tlsKey)
		} else {
			err = hs.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	g.Go(func() error {
		<-gctx.Done()
		cancelBase() // ends the live pages, which never go idle
		sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	err = g.Wait()
	log.Info("dashboard: stopped")
	if ctx.Err() != nil && err == nil {
		return nil
	}
	return err
}
