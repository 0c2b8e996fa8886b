package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
)

// statsView is what stats shows: the client's snapshot, the spend per
// batch, the budgets and the warnings drawn from them.
type statsView struct {
	*inspect.Stats
	BatchSpend map[string]reelq.Spend `json:"batch_spend,omitempty"`
	Budgets    []inspect.BudgetStatus `json:"budgets,omitempty"`
	Warnings   []string               `json:"warnings,omitempty"`
}

func (a *app) statsCommand() *cobra.Command {
	var (
		batch   string
		recent  int
		watch   time.Duration
		counted time.Duration
		o       output
	)
	cmd := &cobra.Command{
		Use:   "stats [--batch B] [--watch 2s]",
		Short: "Queues, running vs cap, pauses, batches, spend vs budget",
		Long: `Per provider: jobs queued per priority, waiting (pulled ahead or backing off),
running against the cap, the pause (with its reason and since when), the next
call allowed by the rate limit (only when the provider is busy), and a warning
when jobs are queued for a provider no worker runs or held for an operator
(P_AMBIGUOUS=hold). Per batch (the most
recently active, or --batch): progress, spend and budget; and the provider
budgets. --watch redraws in place on a terminal; into a pipe it prints
successive snapshots.`,
		Example: `  enqueue stats
  enqueue stats --batch demo --watch 2s
  enqueue stats -o json | jq '.providers[] | {provider, running, cap}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if watch < 0 || counted < 0 {
				return exitf(exitUsage, "--watch and --counted must be positive")
			}
			countedBy := time.Now().Add(counted)
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			redraw := watch > 0 && a.outTTY && !o.json()
			hook, frames := hookFrom(ctx), 0
			for {
				v, err := a.readStats(ctx, c, batch, recent)
				if err != nil {
					if ctx.Err() != nil && watch > 0 {
						return nil
					}
					return err
				}
				if frames == 0 && v.Folded.Behind() > 0 && time.Now().Before(countedBy) {
					// --counted: the first frame waits for the fold to
					// count the results stored so far (or for the limit).
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(countedPoll):
					}
					continue
				}
				var buf bytes.Buffer
				if o.json() {
					enc := json.NewEncoder(&buf)
					if watch == 0 {
						enc.SetIndent("", "  ")
					}
					_ = enc.Encode(v)
				} else {
					a.printStats(&buf, v)
				}
				switch {
				case redraw:
					// Home, draw, clear what is left of the last frame.
					if frames == 0 {
						fmt.Fprint(a.stdout, "\033[2J")
					}
					fmt.Fprint(a.stdout, "\033[H"+strings.ReplaceAll(buf.String(), "\n", "\033[K\n")+"\033[J")
				case watch > 0 && !o.json():
					fmt.Fprintf(a.stdout, "-- %s\n%s\n", v.At.Local().Format(time.DateTime), buf.String())
				default:
					_, _ = a.stdout.Write(buf.Bytes())
				}
				if watch == 0 {
					return nil
				}
				frames++
				if hook != nil {
					hook(frames)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(watch):
				}
			}
		},
	}
	cmd.Flags().StringVar(&batch, "batch", "", "only this batch")
	cmd.Flags().IntVar(&recent, "recent", 10, "how many recently active batches to show")
	cmd.Flags().DurationVar(&watch, "watch", 0, "refresh every interval (e.g. 2s) until interrupted")
	cmd.Flags().DurationVar(&counted, "counted", 0, "wait up to this long (e.g. 10s) until the counts include every result already stored")
	outputFlag(cmd, &o)
	return cmd
}

// countedPoll is how often stats --counted looks at the fold again.
const countedPoll = 200 * time.Millisecond

func (a *app) readStats(ctx context.Context, c *reelq.Client, batch string, recent int) (*statsView, error) {
	opts := inspect.StatsOptions{Batch: batch, Recent: recent}
	if recent <= 0 {
		opts.Recent = -1
	}
	if batch != "" {
		opts.Recent = 0
	}
	s, err := a.ins.Stats(ctx, opts)
	if err != nil {
		return nil, err
	}
	v := &statsView{Stats: s, BatchSpend: map[string]reelq.Spend{}}
	if v.Budgets, err = a.ins.Budgets(ctx); err != nil {
		return nil, err
	}
	for _, b := range s.Batches {
		sp, err := a.ins.BatchSpend(ctx, b.Batch)
		if err != nil {
			return nil, err
		}
		if sp.Submissions > 0 || len(sp.Spent) > 0 || len(sp.Reserved) > 0 {
			v.BatchSpend[b.Batch] = sp
		}
	}
	for _, p := range s.Providers {
		if w := noWorker(p); w != "" {
			v.Warnings = append(v.Warnings, w)
		}
		if w := heldWarning(p); w != "" {
			v.Warnings = append(v.Warnings, w)
		}
		if w := limiterWarning(p, s.At); w != "" {
			v.Warnings = append(v.Warnings, w)
		}
	}
	return v, nil
}

func queued(p inspect.ProviderStats) uint64 {
	return p.Queued[reelq.High] + p.Queued[reelq.Normal] + p.Queued[reelq.Low]
}

// noWorker warns of jobs queued for a provider that no worker takes.
func noWorker(p inspect.ProviderStats) string {
	q := queued(p)
	if q == 0 {
		return ""
	}
	idle := p.NoWorker || (p.Pulling == 0 && p.Running == 0 && p.Waiting == 0 && p.Pause == nil)
	if !idle {
		return ""
	}
	return fmt.Sprintf("%s queued for %s, but no worker runs %s (start one with %s_API_KEY set)", plural(int(q), "job", "jobs"), p.Provider, p.Provider, strings.ToUpper(p.Provider))
}

// limiterWarning tells of a rate limiter that cannot write its shared
// state: nothing goes out to the provider meanwhile.
func limiterWarning(p inspect.ProviderStats, now time.Time) string {
	a := p.Limiter
	if a == nil {
		return ""
	}
	return fmt.Sprintf("%s: the rate limiter cannot write its shared state (bucket %s) since %s (reported by %s): %s; no call to %s goes out until it can (the workers recreate the bucket; see RELIABILITY.md)",
		p.Provider, a.Bucket, ago(past(a.Since, now), now), a.By, truncate(a.Error, 200), p.Provider)
}

// heldWarning tells of jobs held for an operator (P_AMBIGUOUS=hold).
func heldWarning(p inspect.ProviderStats) string {
	if p.Held == 0 {
		return ""
	}
	return fmt.Sprintf("%s on %s held for an operator after a paid submission with unknown outcome: check the provider's dashboard, then 'enqueue resolve JOB --task ID' or '--resubmit' ('enqueue status --batch B' lists them)",
		plural(p.Held, "job", "jobs"), p.Provider)
}

func busy(p inspect.ProviderStats) bool { return p.Running > 0 || p.Waiting > 0 || queued(p) > 0 }

func (a *app) printStats(w io.Writer, v *statsView) {
	now := v.At
	t := &table{header: []string{"PROVIDER", "QUEUED", "HIGH/NORMAL/LOW", "WAITING", "RUNNING", "STATE", "NEXT CALL"}}
	for _, p := range v.Providers {
		running := fmt.Sprint(p.Running)
		if p.Cap > 0 {
			running += "/" + fmt.Sprint(p.Cap)
		}
		state := cell{text: "running"}
		switch {
		case p.Pause != nil:
			since := ""
			if p.Pause.Since != nil {
				since = " since " + ago(past(*p.Pause.Since, now), now)
			}
			state = cell{text: fmt.Sprintf("PAUSED (%s)%s: %s", p.Pause.Code, since, truncate(p.Pause.Reason, 60)), color: yellow}
			if p.Pause.NextProbeAt != nil {
				state.text += "; next probe " + ago(*p.Pause.NextProbeAt, now)
			} else {
				state.text += "; enqueue resume " + p.Provider
			}
		case noWorker(p) != "":
			state = cell{text: "NO WORKER", color: red}
		case p.NoWorker:
			state = cell{text: "no worker", color: dim}
		case !busy(p):
			state = cell{text: "idle", color: dim}
		}
		next := "-"
		if p.NextCall != nil && busy(p) && p.Pause == nil && p.NextCall.After(now) {
			next = "in " + p.NextCall.Sub(now).Round(time.Millisecond).String()
		}
		t.add(cell{text: p.Provider}, cell{text: commas(int(queued(p)))},
			cell{text: fmt.Sprintf("%d/%d/%d", p.Queued[reelq.High], p.Queued[reelq.Normal], p.Queued[reelq.Low])},
			cell{text: fmt.Sprint(p.Waiting)}, cell{text: running}, state, cell{text: next})
	}
	t.write(w, a.color)
	for _, warn := range v.Warnings {
		if a.color {
			warn = colorize(yellow, "warning: "+warn)
		} else {
			warn = "warning: " + warn
		}
		fmt.Fprintln(w, warn)
	}

	budgets := map[string]inspect.BudgetStatus{}
	for _, b := range v.Budgets {
		budgets[b.Scope+"/"+b.Name] = b
	}
	if len(v.Batches) > 0 {
		fmt.Fprintln(w)
		bt := &table{header: []string{"BATCH", "ENQUEUED", "SUCCEEDED", "FAILED", "CANCELLED", "DONE", "SPENT", "BUDGET", "UPDATED"}}
		for _, b := range v.Batches {
			done := "-"
			if b.Enqueued > 0 {
				done = fmt.Sprintf("%d%%", min(100, b.Done()*100/b.Enqueued))
			}
			spent := costs(v.BatchSpend[b.Batch].Spent)
			budget := "-"
			if bs, ok := budgets[reelq.ScopeBatch+"/"+b.Batch]; ok {
				budget = budgetText(bs)
				if spent == "" {
					spent = reelq.FormatCost(reelq.Cost{Amount: bs.Spent, Unit: bs.Unit})
				}
			}
			if spent == "" {
				// No budget: the batch's spend counters.
				spent = costs(b.Spent)
			}
			failed := cell{text: commas(int(b.Failed))}
			if b.Failed > 0 {
				failed.color = red
			}
			bt.add(cell{text: b.Batch}, cell{text: commas(int(b.Enqueued))}, cell{text: commas(int(b.Succeeded))}, failed,
				cell{text: commas(int(b.Cancelled))}, cell{text: done}, cell{text: orDash(spent)}, cell{text: budget}, cell{text: ago(past(b.Updated, now), now)})
		}
		bt.write(w, a.color)
		if n := v.Folded.Behind(); n > 0 {
			fmt.Fprintf(w, "(succeeded, failed, cancelled and spent lag the results by up to REELQ_FOLD_INTERVAL: %s result sequences not counted yet)\n", commas(int(n)))
		}
	}
	var prov []inspect.BudgetStatus
	for _, b := range v.Budgets {
		if b.Scope == reelq.ScopeProvider {
			prov = append(prov, b)
		}
	}
	if len(prov) > 0 {
		fmt.Fprintln(w)
		pt := &table{header: []string{"PROVIDER BUDGET", "PERIOD", "SPENT", "RESERVED", "LIMIT", "REMAINING"}}
		for _, b := range prov {
			pt.addText(b.Name, periodText(b.Period), reelq.FormatCost(reelq.Cost{Amount: b.Spent, Unit: b.Unit}),
				reelq.FormatCost(reelq.Cost{Amount: b.Reserved, Unit: b.Unit}), reelq.FormatCost(reelq.Cost{Amount: b.Amount, Unit: b.Unit}),
				reelq.FormatCost(reelq.Cost{Amount: b.Remaining(), Unit: b.Unit}))
		}
		pt.write(w, a.color)
	}
}

// budgetText is "$120.00 of $500.00 (24%)".
func budgetText(b inspect.BudgetStatus) string {
	s := reelq.FormatCost(reelq.Cost{Amount: b.Spent, Unit: b.Unit}) + " of " + reelq.FormatCost(reelq.Cost{Amount: b.Amount, Unit: b.Unit})
	if b.Amount > 0 {
		s += fmt.Sprintf(" (%.0f%%)", 100*(b.Spent+b.Reserved)/b.Amount)
	}
	return s
}

func periodText(d time.Duration) string {
	switch {
	case d == 0:
		return "life"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}
