package main

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/reelq/reelq"
)

// jobStatus is one job as status shows it.
type jobStatus struct {
	ID       string      `json:"id"`
	Provider string      `json:"provider"`
	Batch    string      `json:"batch,omitempty"`
	Phase    reelq.Phase `json:"phase"`
	// Status is the current run's result status, once finished.
	Status          string     `json:"status,omitempty"`
	Run             int        `json:"run"`
	Attempts        int        `json:"attempts"`
	Task            string     `json:"provider_task_id,omitempty"`
	Updated         time.Time  `json:"updated_at"`
	Note            string     `json:"note,omitempty"`
	CancelRequested bool       `json:"cancel_requested,omitempty"`
	HeldReason      string     `json:"held_reason,omitempty"`
	HeldSince       *time.Time `json:"held_since,omitempty"`
	// Checks are the outputs that failed their media check (the
	// current run's result, or the earlier submissions of a run retried
	// under P_OUTPUT_POLICY=retry).
	Checks []outputCheck `json:"validation_errors,omitempty"`
	// OutputRetries counts the run's paid submissions made again after an
	// invalid output; RetriedChecks are those submissions' failed checks.
	OutputRetries int      `json:"output_retries,omitempty"`
	RetriedChecks []string `json:"retried_checks,omitempty"`
	// Runs are every run of the job, oldest first (with --runs).
	Runs []runStatus `json:"runs,omitempty"`
}

// outputCheck is one output's failed media check.
type outputCheck struct {
	Output  int    `json:"output"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

type runStatus struct {
	Run       int         `json:"run"`
	Status    string      `json:"status"`
	Code      string      `json:"code,omitempty"`
	Task      string      `json:"provider_task_id,omitempty"`
	Attempts  int         `json:"attempts"`
	Cost      *reelq.Cost `json:"cost,omitempty"`
	Completed *time.Time  `json:"completed_at,omitempty"`
}

func statusOf(st *reelq.JobState, cancelRequested bool, runs bool) jobStatus {
	s := jobStatus{ID: st.ID, Provider: st.Provider, Batch: st.Batch, Phase: st.Phase, Run: max(st.Run, 1), Attempts: st.Attempts,
		Updated: st.UpdatedAt, HeldReason: st.HeldReason, HeldSince: st.HeldSince}
	if st.Task != nil {
		s.Task = st.Task.ID
	}
	r := st.StoredResult()
	if st.Phase == reelq.PhaseFinished && r != nil {
		s.Status = r.Status
		if r.ProviderTaskID != "" {
			s.Task = r.ProviderTaskID
		}
		s.Attempts = max(s.Attempts, r.Attempts)
	}
	s.OutputRetries, s.RetriedChecks = st.OutputRetries, st.OutputChecks
	if r != nil && st.Phase == reelq.PhaseFinished {
		for i, o := range r.Outputs {
			if v := o.ValidationError; v != nil {
				s.Checks = append(s.Checks, outputCheck{Output: i, Code: v.Code, Message: v.Message})
			}
		}
	}
	s.CancelRequested = cancelRequested && st.Phase != reelq.PhaseFinished
	switch {
	case st.Phase == reelq.PhaseHeld:
		s.Note = "held: " + st.HeldReason
	case s.CancelRequested:
		s.Note = "cancel requested"
	case r != nil && st.Phase == reelq.PhaseFinished && r.Error != nil:
		s.Note = r.Error.Code + ": " + r.Error.Message
	case len(s.Checks) > 0:
		s.Note = fmt.Sprintf("accepted, output %d: %s: %s", s.Checks[0].Output, s.Checks[0].Code, s.Checks[0].Message)
	case r != nil && st.Phase == reelq.PhaseFinished && len(r.Outputs) > 0:
		s.Note = r.Outputs[0].URL
		if a := r.Outputs[0].Archive; a != nil {
			s.Note = a.Store + ":" + a.Bucket + "/" + a.Key
		}
	case st.LastError != "":
		s.Note = st.LastError
	}
	if runs {
		for _, rs := range st.Runs {
			c := rs.CompletedAt
			s.Runs = append(s.Runs, runStatus{Run: rs.Run, Status: rs.Status, Code: rs.Code, Task: rs.TaskID, Attempts: rs.Attempts, Cost: rs.Cost, Completed: &c})
		}
		cur := runStatus{Run: s.Run, Status: string(st.Phase), Task: s.Task, Attempts: s.Attempts}
		if r != nil && st.Phase == reelq.PhaseFinished {
			cur.Status, cur.Cost = r.Status, r.Cost
			if r.Error != nil {
				cur.Code = r.Error.Code
			}
			c := r.CompletedAt
			cur.Completed = &c
		}
		s.Runs = append(s.Runs, cur)
	}
	return s
}

func (a *app) statusCommand() *cobra.Command {
	var (
		batch string
		runs  bool
		o     output
	)
	cmd := &cobra.Command{
		Use:   "status JOB... | --batch B",
		Short: "Show where jobs are: phase, run, attempts, provider task, note",
		Long: `Show jobs' state: phase (queued jobs too, read from the JOBS stream, including
jobs published with 'nats pub'), result status, run, attempts, provider task,
last update and a note (the error, the first output, why a job is held, or
"cancel requested"). Held jobs are listed with the resolve command to run.`,
		Example: `  enqueue status j3f1c0ffee00112233445566
  enqueue status --batch demo
  enqueue status --runs -o json order-1234`,
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
			var states []*reelq.JobState
			unknown := 0
			if batch != "" {
				jobs, err := c.BatchJobs(ctx, batch)
				if err != nil {
					return fmt.Errorf("batch %s: %w", batch, err)
				}
				if len(jobs) == 0 {
					return exitf(exitFailure, "batch %s has no jobs (none published, or their state has expired)", batch)
				}
				for _, j := range jobs {
					states = append(states, j.State)
				}
			}
			for _, id := range args {
				st, err := c.Get(ctx, id)
				switch {
				case errors.Is(err, reelq.ErrNotFound), errors.Is(err, reelq.ErrInvalidJob):
					fmt.Fprintf(a.stderr, "%s: unknown job\n", id)
					unknown++
					continue
				case err != nil:
					return fmt.Errorf("job %s: %w", id, err)
				}
				states = append(states, st)
			}
			ids := make([]string, 0, len(states))
			for _, st := range states {
				if st.Phase != reelq.PhaseFinished {
					ids = append(ids, st.ID)
				}
			}
			cancels, err := a.ins.CancelRequested(ctx, ids)
			if err != nil {
				return err
			}
			out := make([]jobStatus, 0, len(states))
			for _, st := range states {
				out = append(out, statusOf(st, cancels[st.ID], runs))
			}
			sort.Slice(out, func(i, j int) bool { return naturalLess(out[i].ID, out[j].ID) })
			if o.json() {
				if err := a.writeJSON(out); err != nil {
					return err
				}
			} else {
				a.printStatus(out, runs)
			}
			if unknown > 0 {
				return exitf(exitFailure, "%s unknown", plural(unknown, "job", "jobs"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&batch, "batch", "", "every job of this batch")
	cmd.Flags().BoolVar(&runs, "runs", false, "every run of each job (a retried job has several)")
	outputFlag(cmd, &o)
	return cmd
}

func phaseColor(s jobStatus) string {
	switch {
	case s.Phase == reelq.PhaseHeld:
		return yellow + ";" + bold
	case s.Status == reelq.StatusSucceeded:
		return green
	case s.Status == reelq.StatusFailed:
		return red
	case s.Status == reelq.StatusCancelled:
		return yellow
	}
	return ""
}

func (a *app) printStatus(jobs []jobStatus, runs bool) {
	now := time.Now()
	t := &table{header: []string{"JOB", "PROVIDER", "PHASE", "STATUS", "RUN", "ATTEMPTS", "TASK", "UPDATED", "NOTE"}}
	count := map[string]int{}
	var held []jobStatus
	for _, s := range jobs {
		phase := string(s.Phase)
		if s.Phase == reelq.PhaseHeld {
			phase = "HELD"
			held = append(held, s)
		}
		key := phase
		if s.Status != "" {
			key = s.Status
		}
		count[key]++
		col := phaseColor(s)
		t.add(cell{text: s.ID}, cell{text: s.Provider}, cell{text: phase, color: col}, cell{text: s.Status, color: col},
			cell{text: fmt.Sprint(s.Run)}, cell{text: fmt.Sprint(s.Attempts)}, cell{text: orDash(s.Task)},
			cell{text: ago(past(s.Updated, now), now)}, cell{text: truncate(s.Note, 100)})
	}
	t.write(a.stdout, a.color)
	if runs {
		for _, s := range jobs {
			if len(s.Runs) < 2 {
				continue
			}
			fmt.Fprintf(a.stdout, "\nruns of %s:\n", s.ID)
			rt := &table{header: []string{"RUN", "STATUS", "CODE", "TASK", "ATTEMPTS", "COST", "COMPLETED"}}
			for _, r := range s.Runs {
				cost, done := "-", "-"
				if r.Cost != nil {
					cost = reelq.FormatCost(*r.Cost)
				}
				if r.Completed != nil && !r.Completed.IsZero() {
					done = r.Completed.Local().Format(time.DateTime)
				}
				rt.addText(fmt.Sprint(r.Run), r.Status, orDash(r.Code), orDash(r.Task), fmt.Sprint(r.Attempts), cost, done)
			}
			rt.write(a.stdout, a.color)
		}
	}
	if len(jobs) > 1 {
		var parts []string
		for _, k := range []string{"queued", "submitting", "submitted", "HELD", "archiving", "succeeded", "failed", "cancelled"} {
			if n := count[k]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %s", commas(n), k))
			}
		}
		fmt.Fprintf(a.stdout, "%s: %s\n", plural(len(jobs), "job", "jobs"), joinComma(parts))
	}
	for _, s := range jobs {
		for i, c := range s.RetriedChecks {
			fmt.Fprintf(a.stdout, "\n%s: submission %d failed the media check and was paid again: %s", s.ID, i+1, printable(c))
		}
		if len(s.RetriedChecks) > 0 && len(s.Checks) == 0 {
			fmt.Fprintln(a.stdout)
		}
		if len(s.Checks) == 0 {
			continue
		}
		fmt.Fprintf(a.stdout, "\n%s: %s failed the media check", s.ID, plural(len(s.Checks), "output", "outputs"))
		if s.OutputRetries > 0 {
			fmt.Fprintf(a.stdout, " (after %s, each paid)", plural(s.OutputRetries, "retry", "retries"))
		}
		fmt.Fprintln(a.stdout, ":")
		for _, c := range s.Checks {
			fmt.Fprintf(a.stdout, "  output %d: %s: %s\n", c.Output, c.Code, printable(c.Message))
		}
	}
	if len(held) > 0 {
		msg := fmt.Sprintf("\n%s held after a paid submission whose outcome is unknown: the provider may have started a task.\n"+
			"Check the provider's dashboard for the task, then run one of:", plural(len(held), "job is", "jobs are"))
		if a.color {
			msg = colorize(yellow+";"+bold, msg)
		}
		fmt.Fprintln(a.stdout, msg)
		for _, h := range held {
			since := ""
			if h.HeldSince != nil {
				since = " since " + h.HeldSince.Local().Format(time.DateTime)
			}
			fmt.Fprintf(a.stdout, "  %s (%s)%s: %s\n", h.ID, h.Provider, since, printable(h.HeldReason))
			fmt.Fprintf(a.stdout, "    enqueue resolve %s --task TASK_ID   # the task exists: follow it\n", h.ID)
			fmt.Fprintf(a.stdout, "    enqueue resolve %s --resubmit       # it does not: submit again (billed again if it did)\n", h.ID)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinComma(parts []string) string {
	if len(parts) == 0 {
		return "none"
	}
	s := parts[0]
	for _, p := range parts[1:] {
		s += ", " + p
	}
	return s
}
