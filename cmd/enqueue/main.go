// Command enqueue is reelq's operator CLI: it publishes jobs (one from
// flags, or a JSONL, JSON or CSV file), follows their results, downloads
// their archived outputs, and operates the queue (status, cancel, retry,
// resolve, pause, resume, stats, budgets, dead letters).
//
// Every job goes through the public client (package reelq); enqueue never
// creates or changes streams: a worker does. docs/cli.md documents every
// command, flag and exit code.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes (documented in `enqueue --help` and docs/cli.md).
const (
	exitOK          = 0
	exitFailure     = 1   // the command could not do all of its work (a publish, cancel, download, unknown job...)
	exitUsage       = 2   // bad usage or bad input: nothing was done (invalid lines, id conflicts, --max-cost)
	exitJobsFailed  = 3   // with --wait: a job failed or was cancelled
	exitTimeout     = 4   // --timeout reached before every result arrived
	exitUnavailable = 5   // NATS could not be reached, or the reelq streams are missing
	exitInterrupted = 130 // interrupted (Ctrl-C, SIGTERM)
)

// exitError carries an exit code. An empty message means the command has
// already said everything on stderr.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// silent is an exit code whose explanation is already printed.
func silent(code int) error { return &exitError{code: code} }

// exitCode maps run's error to the process exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, context.Canceled) {
		return exitInterrupted
	}
	return exitFailure
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr)
	stop()
	if msg := errorText(err); msg != "" {
		fmt.Fprintln(os.Stderr, "enqueue: "+msg)
	}
	os.Exit(exitCode(err))
}

// errorText is what main prints for err ("" for none).
func errorText(err error) string {
	if err == nil {
		return ""
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return ""
	}
	if exitCode(err) == exitInterrupted && errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	return err.Error()
}

// run is the whole program: args without the program name, the
// environment as os.Environ gives it, and the three streams.
func run(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) error {
	a := newApp(environ, stdin, stdout, stderr)
	defer a.close()
	root := a.rootCommand()
	root.SetArgs(args)
	_, err := root.ExecuteContextC(ctx)
	if err != nil && ctx.Err() != nil && exitCode(err) != exitInterrupted && !isExitError(err) {
		// A request cut short by Ctrl-C: say so, not "context canceled".
		fmt.Fprintln(a.stderr, "interrupted")
		return silent(exitInterrupted)
	}
	return err
}

func isExitError(err error) bool {
	var ee *exitError
	return errors.As(err, &ee)
}
