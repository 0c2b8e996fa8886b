package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
)

func (a *app) budgetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "budget",
		Short: "Spending limits per batch or per provider",
		Long: `Budgets bound what workers submit: before every paid submission a worker
reserves the job's estimate against the job's batch budget and its provider's
budget (atomically, across replicas), and a job that does not fit waits,
without a slot, until the budget is raised. A limit binds only jobs whose
estimate is in its unit (usd or credits).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.budgetSetCommand(), a.budgetListCommand())
	return cmd
}

func (a *app) budgetSetCommand() *cobra.Command {
	var (
		batch, provider string
		period, timeout time.Duration
		o               output
	)
	cmd := &cobra.Command{
		Use:   "set (--batch B | --provider P [--period 24h]) AMOUNT",
		Short: "Set, raise or lower a budget",
		Long: `Set a budget: for a batch over its whole life, or for a provider per period
(fixed windows aligned to midnight UTC for 24h). AMOUNT is 800usd, $800 or
20000credits. A provider budget set here overrides the worker's P_BUDGET and
is kept until changed; it needs an operator identity: the request goes to
the CONTROL stream and a worker writes it (the command waits, --timeout).`,
		Example: `  enqueue budget set --batch demo 800usd
  enqueue budget set --provider samsar 20000credits --period 24h`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if (batch == "") == (provider == "") {
				return exitf(exitUsage, "give exactly one of --batch and --provider")
			}
			if batch != "" && cmd.Flags().Changed("period") {
				return exitf(exitUsage, "--period is for provider budgets; a batch budget is over the batch's life")
			}
			cost, err := reelq.ParseCost(args[0])
			if err != nil {
				return exitf(exitUsage, "%v", err)
			}
			l := reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: batch, Amount: cost.Amount, Unit: cost.Unit}
			if provider != "" {
				if err := checkProvider(provider); err != nil {
					return err
				}
				l.Scope, l.Name, l.Period = reelq.ScopeProvider, provider, period
			} else if !reelq.ValidID(batch) {
				return exitf(exitUsage, "--batch %q: a batch is 1-128 characters of letters, digits, '-' or '_'", batch)
			}
			if _, err := a.connect(ctx); err != nil {
				return err
			}
			sctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimeout)
			defer cancel()
			if err := a.ins.SetBudget(sctx, l); err != nil {
				if errors.Is(context.Cause(sctx), errTimeout) && ctx.Err() == nil {
					return exitf(exitTimeout, "the budget request is sent, but no worker carried it out within %s (is a worker running?)", timeout)
				}
				return err
			}
			if o.json() {
				return a.writeJSON(l)
			}
			what := "batch " + batch
			if provider != "" {
				what = fmt.Sprintf("provider %s (per %s)", provider, periodText(period))
			}
			fmt.Fprintf(a.stdout, "budget of %s set to %s\n", what, reelq.FormatCost(cost))
			return nil
		},
	}
	cmd.Flags().StringVar(&batch, "batch", "", "the batch the budget is for")
	cmd.Flags().StringVar(&provider, "provider", "", "the provider the budget is for")
	cmd.Flags().DurationVar(&period, "period", 24*time.Hour, "a provider budget's accounting period")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for a worker to set a provider budget")
	outputFlag(cmd, &o)
	providerFlagCompletion(cmd)
	return cmd
}

func (a *app) budgetListCommand() *cobra.Command {
	var o output
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the budgets with what was spent against them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			_, err := a.connect(ctx)
			if err != nil {
				return err
			}
			bs, err := a.ins.Budgets(ctx)
			if err != nil {
				return err
			}
			if o.json() {
				if bs == nil {
					bs = []inspect.BudgetStatus{}
				}
				return a.writeJSON(bs)
			}
			if len(bs) == 0 {
				fmt.Fprintln(a.stdout, "no budgets set (a provider's P_BUDGET in the worker configuration is not listed)")
				return nil
			}
			t := &table{header: []string{"SCOPE", "NAME", "LIMIT", "PERIOD", "SPENT", "RESERVED", "REMAINING", "SUBMISSIONS", "SET"}}
			for _, b := range bs {
				rem := cell{text: reelq.FormatCost(reelq.Cost{Amount: b.Remaining(), Unit: b.Unit})}
				if b.Remaining() <= 0 {
					rem.color = red
				}
				set := ago(b.At, time.Now())
				if b.By != "" {
					set += " by " + b.By
				}
				t.add(cell{text: b.Scope}, cell{text: b.Name}, cell{text: reelq.FormatCost(reelq.Cost{Amount: b.Amount, Unit: b.Unit})},
					cell{text: periodText(b.Period)}, cell{text: reelq.FormatCost(reelq.Cost{Amount: b.Spent, Unit: b.Unit})},
					cell{text: reelq.FormatCost(reelq.Cost{Amount: b.Reserved, Unit: b.Unit})}, rem,
					cell{text: strconv.Itoa(b.Submissions)}, cell{text: set})
			}
			t.write(a.stdout, a.color)
			return nil
		},
	}
	outputFlag(cmd, &o)
	return cmd
}

type dlqLine struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Provider string    `json:"provider,omitempty"`
	JobID    string    `json:"job_id,omitempty"`
	Subject  string    `json:"subject,omitempty"`
	Code     string    `json:"code,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Size     int       `json:"size"`
}

type redriveLine struct {
	Seq    uint64 `json:"seq"`
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (a *app) dlqCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List and redrive dead letters",
		Long: `The DLQ stream keeps messages that could not run (unreadable, contradictory,
over the size limits, or delivered too many times), with their payload.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var lo output
	list := &cobra.Command{
		Use:   "list",
		Short: "List the dead letters, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			_, err := a.connect(ctx)
			if err != nil {
				return err
			}
			dls, err := a.ins.DeadLetters(ctx)
			if err != nil {
				return err
			}
			lines := make([]dlqLine, 0, len(dls))
			for _, d := range dls {
				lines = append(lines, dlqLine{Seq: d.Seq, Time: d.Time, Provider: d.Provider, JobID: d.JobID, Subject: d.Subject,
					Code: d.Code, Reason: d.Reason, Size: len(d.Data)})
			}
			if lo.json() {
				return a.writeJSON(lines)
			}
			if len(lines) == 0 {
				fmt.Fprintln(a.stdout, "the DLQ is empty")
				return nil
			}
			t := &table{header: []string{"SEQ", "TIME", "PROVIDER", "JOB", "CODE", "REASON"}}
			for _, l := range lines {
				t.addText(strconv.FormatUint(l.Seq, 10), l.Time.Local().Format(time.DateTime), orDash(l.Provider), orDash(l.JobID), orDash(l.Code), truncate(l.Reason, 100))
			}
			t.write(a.stdout, a.color)
			fmt.Fprintf(a.stdout, "%s; 'enqueue dlq redrive SEQ' runs one again\n", plural(len(lines), "dead letter", "dead letters"))
			return nil
		},
	}
	outputFlag(list, &lo)

	var (
		all, dry bool
		ro       output
	)
	redrive := &cobra.Command{
		Use:   "redrive SEQ... | --all [--dry-run]",
		Short: "Publish dead letters again",
		Long: `Publish dead letters again and remove them from the DLQ. A job with a state
that did not succeed (dead-lettered as poison, say) runs again as a new run,
like retry; a message that could not be attributed to a job is republished as
it was (if it is still malformed, it is dead-lettered again). A job that
succeeded is dropped from the DLQ, never paid again. --dry-run says what would
be done.`,
		Example: `  enqueue dlq redrive 12 13
  enqueue dlq redrive --all --dry-run`,
		Args: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 0) == !all {
				return errors.New("give SEQ numbers or --all, not both")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			want := map[uint64]bool{}
			for _, s := range args {
				n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
				if err != nil || n == 0 {
					return exitf(exitUsage, "%q is not a DLQ sequence number (see 'enqueue dlq list')", s)
				}
				want[n] = true
			}
			_, err := a.connect(ctx)
			if err != nil {
				return err
			}
			dls, err := a.ins.DeadLetters(ctx)
			if err != nil {
				return err
			}
			var out []redriveLine
			failed := 0
			for _, d := range dls {
				if !all && !want[d.Seq] {
					continue
				}
				delete(want, d.Seq)
				res, err := a.ins.Redrive(ctx, d, dry)
				l := redriveLine{Seq: d.Seq}
				if res.Action != "" {
					l.Result = res.String()
				}
				if err != nil {
					if ctx.Err() != nil {
						return silent(exitInterrupted)
					}
					l.Error = err.Error()
					failed++
				}
				out = append(out, l)
			}
			for seq := range want {
				out = append(out, redriveLine{Seq: seq, Error: "no such dead letter"})
				failed++
			}
			if ro.json() {
				if err := a.writeJSON(out); err != nil {
					return err
				}
			} else {
				for _, l := range out {
					if l.Error != "" {
						fmt.Fprintf(a.stderr, "%d: %s\n", l.Seq, l.Error)
					} else {
						fmt.Fprintf(a.stdout, "%d: %s\n", l.Seq, l.Result)
					}
				}
				if len(out) == 0 {
					fmt.Fprintln(a.stdout, "the DLQ is empty")
				}
			}
			if failed > 0 {
				return exitf(exitFailure, "%s not redriven", plural(failed, "dead letter", "dead letters"))
			}
			return nil
		},
	}
	redrive.Flags().BoolVar(&all, "all", false, "every dead letter")
	redrive.Flags().BoolVar(&dry, "dry-run", false, "say what would be done; change nothing")
	outputFlag(redrive, &ro)
	cmd.AddCommand(list, redrive)
	return cmd
}
