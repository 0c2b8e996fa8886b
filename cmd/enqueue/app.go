package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/term"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/config"
	"github.com/reelq/reelq/internal/tracing"
)

// app is one invocation: its environment, streams and connection.
type app struct {
	environ        []string
	env            map[string]string
	stdin          io.Reader
	stdout, stderr io.Writer
	// outTTY and errTTY say whether stdout and stderr are terminals;
	// color whether tables may use colour (a terminal, NO_COLOR unset).
	outTTY, errTTY bool
	color          bool

	server  string // --server, overriding NATS_URL
	context string // --context, overriding NATS_CONTEXT
	nc      *nats.Conn
	client  *reelq.Client
	ins     *inspect.Inspector
	js      jetstream.JetStream
	// stopTracing flushes and stops the tracer provider connect set up.
	stopTracing func(context.Context) error
}

func newApp(environ []string, stdin io.Reader, stdout, stderr io.Writer) *app {
	a := &app{environ: environ, env: config.Environ(environ), stdin: stdin, stdout: stdout, stderr: stderr}
	a.outTTY, a.errTTY = isTerminal(stdout), isTerminal(stderr)
	_, noColor := a.env["NO_COLOR"]
	a.color = a.outTTY && !noColor && a.env["TERM"] != "dumb"
	return a
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (a *app) close() {
	if a.stopTracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.stopTracing(ctx); err != nil {
			fmt.Fprintln(a.stderr, "enqueue: flushing traces failed:", err)
		}
		cancel()
	}
	if a.nc != nil {
		_ = a.nc.FlushTimeout(2 * time.Second)
		a.nc.Close()
	}
}

// connect opens the NATS connection and the client. The client never
// creates streams: without them (no worker has started yet) it says so.
// Its spans are exported over OTLP when the OTEL_* variables ask for it,
// as the worker's are (internal/tracing), and flushed by close.
func (a *app) connect(ctx context.Context) (*reelq.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	cfg, err := config.LoadNATS(a.environ)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	tp, stop, err := tracing.Setup(ctx, func(k string) string { return a.env[k] }, "reelq-enqueue", buildinfo.Version())
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	a.stopTracing = stop
	name := a.context
	if name == "" {
		name = a.env["NATS_CONTEXT"]
	}
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	nc, err := dial(*cfg, name, a.server, log)
	if isExitError(err) {
		return nil, err
	}
	if err != nil {
		return nil, &exitError{code: exitUnavailable, err: fmt.Errorf("could not reach NATS (--server, NATS_URL or the nats context): %w", err)}
	}
	a.nc = nc
	by := "enqueue"
	if u := a.env["USER"]; u != "" {
		by += "/" + u
	}
	c, err := reelq.NewClient(ctx, nc, reelq.Options{ProviderEnv: a.env, By: by, ConsumerPrefix: a.env["REELQ_CONSUMER_PREFIX"], TracerProvider: tp})
	if errors.Is(err, reelq.ErrNotReady) {
		return nil, &exitError{code: exitUnavailable, err: fmt.Errorf("NATS at %s has no reelq streams: start a worker first (it creates them; enqueue never does)", config.RedactURL(nc.ConnectedUrlRedacted()))}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, &exitError{code: exitUnavailable, err: fmt.Errorf("NATS at %s: %w", nc.ConnectedUrlRedacted(), err)}
	}
	ins, err := inspect.New(ctx, nc, reelq.Options{By: by, ConsumerPrefix: a.env["REELQ_CONSUMER_PREFIX"]})
	if err != nil {
		return nil, &exitError{code: exitUnavailable, err: fmt.Errorf("NATS at %s: %w", nc.ConnectedUrlRedacted(), err)}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	a.client, a.ins, a.js = c, ins, js
	return c, nil
}

// output is the -o flag: table (default) or json.
type output string

func (o *output) String() string { return string(*o) }
func (o *output) Type() string   { return "format" }
func (o *output) Set(s string) error {
	switch s {
	case "table", "json":
		*o = output(s)
		return nil
	}
	return fmt.Errorf("want table or json, got %q", s)
}

func (o output) json() bool { return o == "json" }

// writeJSON prints v as indented JSON on stdout.
func (a *app) writeJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// warnf prints a warning line on stderr.
func (a *app) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if a.color && a.errTTY {
		msg = colorize(yellow, msg)
	}
	fmt.Fprintln(a.stderr, msg)
}

// plural renders "1 job" / "2 jobs".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return commas(n) + " " + many
}

// commas renders 1234567 as 1,234,567.
func commas(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
