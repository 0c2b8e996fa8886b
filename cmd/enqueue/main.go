// Command enqueue is reelq's operator CLI: it publishes jobs (one from
// flags, or a JSONL, JSON or CSV batch), follows their results, and
// operates the queue.
//
//	enqueue [publish] [flags] [FILE|-]   publish jobs; --wait to follow results
//	enqueue status JOB_ID... | --batch B  job state and result
//	enqueue results [--batch B] [--follow]
//	enqueue cancel JOB_ID... | --batch B
//	enqueue pause PROVIDER [--reason R]
//	enqueue resume PROVIDER
//	enqueue stats [--watch]              queue depth, in flight, pauses, batches
//
// It connects with NATS_URL (default nats://127.0.0.1:4222) and the other
// NATS_* variables, like the nats CLI.
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
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/config"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/logging"
	"github.com/reelq/reelq/internal/natsconn"
	"github.com/reelq/reelq/internal/queue"
)

// exitError carries a process exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Exit codes.
const (
	exitFailedJobs = 1 // some job failed or was cancelled (with --wait)
	exitUsage      = 2 // bad flags or invalid input: nothing was published
	exitInterrupt  = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if !errors.Is(err, flag.ErrHelp) && err.Error() != "" {
		fmt.Fprintln(os.Stderr, "enqueue:", err)
	}
	os.Exit(code)
}

// app is one invocation's environment.
type app struct {
	environ        []string
	stdin          io.Reader
	stdout, stderr io.Writer
	nc             *nats.Conn
	js             jetstream.JetStream
	states         *jobstate.Store
}

func run(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) error {
	a := &app{environ: environ, stdin: stdin, stdout: stdout, stderr: stderr}
	defer a.close()
	cmd := "publish"
	if len(args) > 0 {
		switch args[0] {
		case "publish", "status", "results", "cancel", "pause", "resume", "stats":
			cmd, args = args[0], args[1:]
		case "help", "-h", "--help":
			fmt.Fprint(stdout, usage)
			return nil
		}
	}
	switch cmd {
	case "status":
		return a.status(ctx, args)
	case "results":
		return a.results(ctx, args)
	case "cancel":
		return a.cancel(ctx, args)
	case "pause":
		return a.pause(ctx, args)
	case "resume":
		return a.resume(ctx, args)
	case "stats":
		return a.stats(ctx, args)
	}
	return a.publish(ctx, args)
}

const usage = `enqueue: publish reelq jobs and operate the queue

  enqueue [publish] [flags] [FILE|-]   publish jobs from FILE (JSONL, JSON or CSV) or flags
  enqueue status JOB_ID... | --batch B  show job state and result
  enqueue results [--batch B] [--follow]  print result events as JSONL
  enqueue cancel JOB_ID... | --batch B  cancel queued or running jobs
  enqueue pause PROVIDER [--reason R]   pause a provider for every worker
  enqueue resume PROVIDER               resume a paused provider
  enqueue stats [--watch]               queue depth, in flight, pauses, batches

Run "enqueue COMMAND -h" for a command's flags. NATS_URL (default
nats://127.0.0.1:4222) and the other NATS_* variables select the server.
`

// connect opens the NATS connection and makes sure the layout exists.
func (a *app) connect(ctx context.Context) error {
	if a.nc != nil {
		return nil
	}
	cfg, err := config.LoadNATS(a.environ)
	if err != nil {
		return err
	}
	secrets := &logging.Secrets{}
	secrets.Add(cfg.Password, cfg.Token)
	log := logging.New(a.stderr, "text", slog.LevelError, secrets, true)
	nc, err := natsconn.Connect(*cfg, "", "reelq-enqueue", log)
	if err != nil {
		return err
	}
	a.nc = nc
	a.js, err = jetstream.New(nc)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	env := config.Environ(a.environ)
	replicas := 1
	if v := env["REELQ_STREAM_REPLICAS"]; v != "" {
		if _, err := fmt.Sscan(v, &replicas); err != nil {
			return fmt.Errorf("REELQ_STREAM_REPLICAS: %w", err)
		}
	}
	if err := queue.Ensure(cctx, a.js, queue.Layout{Replicas: replicas}); err != nil {
		return fmt.Errorf("streams: %w", err)
	}
	kv, err := a.js.KeyValue(cctx, queue.BucketJobs)
	if err != nil {
		return err
	}
	a.states = jobstate.New(kv)
	return nil
}

func (a *app) close() {
	if a.nc != nil {
		_ = a.nc.Drain()
	}
}

func newFlags(name, usageLine string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: enqueue %s\n\nflags:\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// parseInterspersed parses flags that may come before or after
// positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &exitError{0, err}
			}
			return nil, &exitError{exitUsage, errors.New("")}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
