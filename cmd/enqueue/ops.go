package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
)

// progressHook, when a context carries one, sees every item a batch
// command completes (tests use it to interrupt a command part-way).
type progressHook struct{}

func hookFrom(ctx context.Context) func(n int) {
	f, _ := ctx.Value(progressHook{}).(func(int))
	return f
}

// validateHook, when a context carries one, sees each job publish is
// about to validate (tests interrupt validation with it).
type validateHook struct{}

func validateHookFrom(ctx context.Context) func(n int) {
	f, _ := ctx.Value(validateHook{}).(func(int))
	return f
}

type cancelLine struct {
	ID          string      `json:"id"`
	Outcome     string      `json:"outcome"` // requested, already finished, unknown, error
	Phase       reelq.Phase `json:"phase,omitempty"`
	Status      string      `json:"status,omitempty"`
	StillBilled bool        `json:"still_billed,omitempty"`
	Error       string      `json:"error,omitempty"`
}

type cancelReport struct {
	Batch           string       `json:"batch,omitempty"`
	Requested       int          `json:"requested"`
	AlreadyFinished int          `json:"already_finished"`
	Errors          int          `json:"errors"`
	StillBilled     int          `json:"still_billed"`
	Interrupted     bool         `json:"interrupted,omitempty"`
	Jobs            []cancelLine `json:"jobs,omitempty"`
}

func (a *app) cancelCommand() *cobra.Command {
	var (
		batch, reason string
		o             output
	)
	cmd := &cobra.Command{
		Use:   "cancel JOB... | --batch B",
		Short: "Cancel queued or running jobs",
		Long: `Ask the workers to cancel jobs. A queued job finishes as cancelled without
reaching the provider; a running one is stopped at the provider where its API
allows. A running job at a provider without a cancel API still finishes there
and is billed (the command says so). A batch is cancelled many jobs at a time;
Ctrl-C stops it, and running it again finishes the rest.`,
		Example: `  enqueue cancel j3f1c0ffee00112233445566
  enqueue cancel --batch demo --reason "wrong prompts"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 0) == (batch == "") {
				return errors.New("give JOB ids or --batch, not both")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			rep := &cancelReport{Batch: batch}
			var mu sync.Mutex
			hook := hookFrom(ctx)
			done := 0
			pb := newBar(a.stderr, a.errTTY)
			record := func(out reelq.CancelOutcome, err error, keep bool) {
				mu.Lock()
				defer mu.Unlock()
				l := cancelLine{ID: out.ID, Phase: out.Phase, StillBilled: out.StillBilled}
				switch {
				case errors.Is(err, reelq.ErrNotFound), errors.Is(err, reelq.ErrInvalidJob):
					l.Outcome, l.Error = "unknown", "unknown job"
					rep.Errors++
				case err != nil:
					l.Outcome, l.Error = "error", err.Error()
					rep.Errors++
				case out.Status == reelq.CancelAlreadyFinished:
					l.Outcome = "already finished"
					if out.Result != nil {
						l.Status = out.Result.Status
					}
					rep.AlreadyFinished++
				default:
					l.Outcome = "requested"
					rep.Requested++
				}
				if l.StillBilled {
					rep.StillBilled++
				}
				if keep || l.StillBilled || l.Outcome == "error" {
					rep.Jobs = append(rep.Jobs, l)
				}
				done++
				pb.add(1)
				if hook != nil {
					hook(done)
				}
			}
			var runErr error
			if batch != "" {
				pb.phase("cancelling batch "+batch, "jobs", 0)
				for out, err := range c.CancelBatch(ctx, batch, reason) {
					switch {
					case err != nil && out.ID == "":
						runErr = err
					case ctx.Err() != nil && err != nil:
						// cut short by Ctrl-C: counted in the summary, not one line each
					default:
						record(out, err, false)
					}
				}
			} else {
				pb.phase("cancelling", "jobs", len(args))
				runErr = forEach(ctx, args, 16, func(id string) {
					out, err := c.Cancel(ctx, id)
					if ctx.Err() != nil && err != nil {
						return
					}
					out.ID = id
					record(out, err, true)
				})
			}
			pb.clear()
			if runErr != nil && ctx.Err() != nil {
				rep.Interrupted = true
			} else if runErr != nil {
				return fmt.Errorf("cancel: %w (%d requested so far; running it again is safe)", runErr, rep.Requested)
			}
			if o.json() {
				if err := a.writeJSON(rep); err != nil {
					return err
				}
			} else {
				a.printCancel(rep)
			}
			switch {
			case rep.Interrupted:
				return silent(exitInterrupted)
			case rep.Errors > 0:
				return exitf(exitFailure, "%s could not be cancelled", plural(rep.Errors, "job", "jobs"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&batch, "batch", "", "cancel every unfinished job of this batch")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded with the cancel request)")
	outputFlag(cmd, &o)
	return cmd
}

func (a *app) printCancel(rep *cancelReport) {
	for _, l := range rep.Jobs {
		switch l.Outcome {
		case "requested":
			msg := fmt.Sprintf("%s: cancel requested (%s)", l.ID, l.Phase)
			if l.StillBilled {
				msg = fmt.Sprintf("%s: cancel requested, but it is running at a provider without a cancel API: the task finishes there and is still billed", l.ID)
			}
			fmt.Fprintln(a.stdout, msg)
		case "already finished":
			fmt.Fprintf(a.stdout, "%s: already finished (%s); nothing to cancel\n", l.ID, orDash(l.Status))
		default:
			fmt.Fprintf(a.stderr, "%s: %s\n", l.ID, l.Error)
		}
	}
	if rep.Interrupted {
		fmt.Fprintf(a.stderr, "interrupted: %s made; running the same command again finishes the rest\n", plural(rep.Requested, "cancel request", "cancel requests"))
		return
	}
	if rep.Batch != "" {
		fmt.Fprintf(a.stdout, "batch %s: %s made, %s already finished", rep.Batch, plural(rep.Requested, "cancel request", "cancel requests"), commas(rep.AlreadyFinished))
		if rep.StillBilled > 0 {
			fmt.Fprintf(a.stdout, "; %s running at a provider without a cancel API (still billed)", plural(rep.StillBilled, "job is", "jobs are"))
		}
		fmt.Fprintln(a.stdout)
	}
}

// forEach runs f for every item, n at a time, until ctx ends.
func forEach(ctx context.Context, items []string, n int, f func(string)) error {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, it := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return context.Cause(ctx)
		}
		wg.Go(func() {
			defer func() { <-sem }()
			f(it)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

type retryLine struct {
	ID    string `json:"id"`
	Run   int    `json:"run,omitempty"`
	Error string `json:"error,omitempty"`
}

func (a *app) retryCommand() *cobra.Command {
	var (
		batch, statuses string
		o               output
	)
	cmd := &cobra.Command{
		Use:   "retry JOB... | --batch B [--status failed,cancelled]",
		Short: "Run finished jobs that did not succeed again, as a new run",
		Long: `Run a finished job that failed or was cancelled again, under the same id, as
run n+1 (its result carries the run number). A job that succeeded is never
paid again: retry refuses it. With --batch, every job of the batch whose last
run ended in one of --status (default failed,cancelled) is retried.`,
		Example: `  enqueue retry j3f1c0ffee00112233445566
  enqueue retry --batch demo --status failed`,
		Args: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 0) == (batch == "") {
				return errors.New("give JOB ids or --batch, not both")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var sts []string
			if statuses != "" {
				for _, s := range strings.Split(statuses, ",") {
					s = strings.TrimSpace(s)
					switch s {
					case reelq.StatusFailed, reelq.StatusCancelled:
						sts = append(sts, s)
					case reelq.StatusSucceeded:
						return exitf(exitUsage, "--status succeeded: a job that succeeded is never paid again")
					default:
						return exitf(exitUsage, "--status %q: want failed and/or cancelled", s)
					}
				}
			}
			if statuses != "" && batch == "" {
				return exitf(exitUsage, "--status needs --batch")
			}
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			var lines []retryLine
			var mu sync.Mutex
			add := func(id string, run int, err error) {
				mu.Lock()
				defer mu.Unlock()
				l := retryLine{ID: id, Run: run}
				switch {
				case errors.Is(err, reelq.ErrSucceeded):
					l.Error = "succeeded; a job that succeeded is never paid again"
				case errors.Is(err, reelq.ErrNotFinished):
					l.Error = "not finished yet (" + strings.TrimPrefix(err.Error(), reelq.ErrNotFinished.Error()+": ") + "); nothing to retry"
				case errors.Is(err, reelq.ErrNotFound), errors.Is(err, reelq.ErrInvalidJob):
					l.Error = "unknown job"
				case err != nil:
					l.Error = err.Error()
				}
				lines = append(lines, l)
			}
			var runErr error
			if batch != "" {
				for out, err := range c.RetryBatch(ctx, batch, sts) {
					if err != nil && out.ID == "" {
						runErr = err
						break
					}
					add(out.ID, out.Run, err)
				}
			} else {
				runErr = forEach(ctx, args, 8, func(id string) {
					run, err := c.Retry(ctx, id)
					if ctx.Err() != nil && err != nil {
						return
					}
					add(id, run, err)
				})
			}
			failed := 0
			for _, l := range lines {
				if l.Error != "" {
					failed++
				}
			}
			if o.json() {
				if err := a.writeJSON(lines); err != nil {
					return err
				}
			} else {
				for _, l := range lines {
					if l.Error != "" {
						fmt.Fprintf(a.stderr, "%s: not retried: %s\n", l.ID, l.Error)
					} else {
						fmt.Fprintf(a.stdout, "%s: retrying as run %d\n", l.ID, l.Run)
					}
				}
				if batch != "" {
					fmt.Fprintf(a.stdout, "batch %s: %s retried\n", batch, plural(len(lines)-failed, "job", "jobs"))
				}
			}
			if runErr != nil {
				if ctx.Err() != nil {
					fmt.Fprintf(a.stderr, "interrupted: %s retried; running the same command again retries the rest (a job already retried is not finished, so it is left alone)\n", plural(len(lines)-failed, "job", "jobs"))
					return silent(exitInterrupted)
				}
				return fmt.Errorf("retry: %w", runErr)
			}
			if failed > 0 {
				return exitf(exitFailure, "%s not retried", plural(failed, "job", "jobs"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&batch, "batch", "", "retry the batch's jobs that did not succeed")
	cmd.Flags().StringVar(&statuses, "status", "", "with --batch: the last run's statuses to retry (default failed,cancelled)")
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions([]cobra.Completion{"failed", "cancelled", "failed,cancelled"}, cobra.ShellCompDirectiveNoFileComp))
	outputFlag(cmd, &o)
	return cmd
}

func (a *app) resolveCommand() *cobra.Command {
	var (
		task     string
		resubmit bool
		timeout  time.Duration
		o        output
	)
	cmd := &cobra.Command{
		Use:   "resolve JOB --task ID | --resubmit",
		Short: "Settle a job held after a paid submission with unknown outcome",
		Long: `A job is held when a worker made the paid call to submit it but never learnt
the answer (a timeout, a dropped connection) and the provider's policy is to
ask an operator rather than risk paying twice. Look for the task on the
provider's dashboard, then:

  --task ID     the task exists: the job follows it (no new submission)
  --resubmit    it does not: the job is submitted again (if the first call did
                start a task, the provider bills both)

A task is adopted only if no other job recorded it, the provider knows it
(it is polled once) and, where the provider's task carries the job it was
submitted for (a workflow title), it names this job; otherwise
the command says why and the job stays held.

Needs an operator identity (the request goes to the CONTROL stream; a worker
carries it out). The command waits until the job has left the held phase.`,
		Example: `  enqueue resolve j3f1c0ffee00112233445566 --task 8f2c1a
  enqueue resolve j3f1c0ffee00112233445566 --resubmit`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (task == "") == !resubmit {
				return exitf(exitUsage, "give exactly one of --task ID and --resubmit")
			}
			ctx := cmd.Context()
			if _, err := a.connect(ctx); err != nil {
				return err
			}
			rctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimeout)
			defer cancel()
			st, err := a.ins.Resolve(rctx, args[0], inspect.ResolveOptions{TaskID: task, Resubmit: resubmit})
			switch {
			case errors.Is(err, reelq.ErrNotFound):
				return exitf(exitFailure, "%s: unknown job (or not picked up by a worker yet)", args[0])
			case err != nil && errors.Is(context.Cause(rctx), errTimeout):
				return exitf(exitTimeout, "%s: the request is sent, but no worker carried it out within %s (is a worker running %s?)", args[0], timeout, providerOf(st))
			case err != nil && ctx.Err() != nil:
				return silent(exitInterrupted)
			case err != nil && st != nil:
				return exitf(exitFailure, "%s: %v", args[0], strings.TrimPrefix(err.Error(), "reelq: "))
			case err != nil:
				return err
			}
			if o.json() {
				return a.writeJSON(statusOf(st, false, false))
			}
			how := "following task " + task
			if resubmit {
				how = "submitting again"
			}
			fmt.Fprintf(a.stdout, "%s: resolved (%s); now %s\n", args[0], how, st.Phase)
			return nil
		},
	}
	cmd.Flags().StringVar(&task, "task", "", "the provider task id found on the provider's dashboard")
	cmd.Flags().BoolVar(&resubmit, "resubmit", false, "submit again (the provider may bill twice)")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for a worker to carry it out")
	outputFlag(cmd, &o)
	return cmd
}

func providerOf(st *reelq.JobState) string {
	if st == nil || st.Provider == "" {
		return "its provider"
	}
	return st.Provider
}

type pauseLine struct {
	Provider string `json:"provider"`
	Paused   bool   `json:"paused"`
	// Changed is false when it was already so.
	Changed bool   `json:"changed"`
	Reason  string `json:"reason,omitempty"`
}

func (a *app) pauseCommand() *cobra.Command {
	var (
		reason string
		o      output
	)
	cmd := &cobra.Command{
		Use:               "pause PROVIDER [--reason R]",
		Short:             "Pause a provider for every worker",
		Long:              "Pause a provider for every worker until 'enqueue resume PROVIDER': its jobs wait in the queue, running ones finish. Needs an operator identity.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeProviders,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := checkProvider(args[0]); err != nil {
				return err
			}
			_, err := a.connect(ctx)
			if err != nil {
				return err
			}
			changed, err := a.ins.Pause(ctx, args[0], reason)
			if err != nil {
				return err
			}
			if o.json() {
				return a.writeJSON(pauseLine{Provider: args[0], Paused: true, Changed: changed, Reason: reason})
			}
			if changed {
				fmt.Fprintf(a.stdout, "%s paused for every worker until 'enqueue resume %s'\n", args[0], args[0])
			} else {
				fmt.Fprintf(a.stdout, "%s was already paused (see 'enqueue stats')\n", args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (shown by stats and in the event)")
	outputFlag(cmd, &o)
	return cmd
}

func (a *app) resumeCommand() *cobra.Command {
	var o output
	cmd := &cobra.Command{
		Use:               "resume PROVIDER",
		Short:             "Resume a paused provider",
		Long:              "End a provider's pause, whatever its kind (manual, credits, auth, budget...). Needs an operator identity.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeProviders,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := checkProvider(args[0]); err != nil {
				return err
			}
			_, err := a.connect(ctx)
			if err != nil {
				return err
			}
			changed, err := a.ins.Resume(ctx, args[0])
			if err != nil {
				return err
			}
			if o.json() {
				return a.writeJSON(pauseLine{Provider: args[0], Paused: false, Changed: changed})
			}
			if changed {
				fmt.Fprintf(a.stdout, "%s resumed\n", args[0])
			} else {
				fmt.Fprintf(a.stdout, "%s was not paused\n", args[0])
			}
			return nil
		},
	}
	outputFlag(cmd, &o)
	return cmd
}
