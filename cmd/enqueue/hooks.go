package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/reelq/reelq/internal/forwarder"
	"github.com/reelq/reelq/internal/netguard"
)

func (a *app) hookDeadLetters(ctx context.Context) ([]forwarder.DeadLetter, error) {
	if _, err := a.connect(ctx); err != nil {
		return nil, err
	}
	dls, err := forwarder.DeadLetters(ctx, a.js)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // no forwarder has run: nothing was dead-lettered
	}
	return dls, err
}

func (a *app) hooksCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hooks",
		Short: "List and redrive result webhooks that were never delivered",
		Long: `The result forwarder (cmd/forwarder, docs/webhooks.md) POSTs result events to
webhook receivers and retries a failing one for its retry budget (24 hours by
default); a delivery that never succeeded is kept in the HOOKS_DLQ stream, one
entry per receiver, with the payload, the URL, the last status or error and the
attempts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var lo output
	list := &cobra.Command{
		Use:   "list",
		Short: "List the undelivered webhooks, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dls, err := a.hookDeadLetters(cmd.Context())
			if err != nil {
				return err
			}
			lines := make([]forwarder.DeadLetter, 0, len(dls))
			for _, d := range dls {
				d.URL = netguard.RedactURL(d.URL) // a receiver's URL may carry a credential in its query
				lines = append(lines, d)
			}
			if lo.json() {
				return a.writeJSON(lines)
			}
			if len(lines) == 0 {
				fmt.Fprintln(a.stdout, "no undelivered webhook")
				return nil
			}
			t := &table{header: []string{"SEQ", "TIME", "JOB", "RUN", "URL", "ATTEMPTS", "LAST ERROR"}}
			for _, l := range lines {
				t.addText(strconv.FormatUint(l.Seq, 10), l.Time.Local().Format(time.DateTime), l.Provider+"/"+l.JobID, strconv.Itoa(l.Run),
					truncate(l.URL, 60), strconv.Itoa(l.Attempts), truncate(l.LastError, 80))
			}
			t.write(a.stdout, a.color)
			fmt.Fprintf(a.stdout, "%s; 'enqueue hooks redrive SEQ' delivers one again\n", plural(len(lines), "undelivered webhook", "undelivered webhooks"))
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
		Short: "Deliver undelivered webhooks again",
		Long: `Ask the forwarder to deliver dead-lettered webhooks again: it posts each one, as
it was, to the receiver it failed for (same webhook-id, so a receiver that got
it after all ignores it), retries for a new retry budget, and removes it from
the list once delivered; if it fails again for the whole budget, it comes back
to the list with the attempts added up. A re-driven result arrives after any
later run of the same job already delivered: receivers order by the result's
run. --dry-run says what would be asked.`,
		Example: `  enqueue hooks redrive 12 13
  enqueue hooks redrive --all --dry-run`,
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
					return exitf(exitUsage, "%q is not a HOOKS_DLQ sequence number (see 'enqueue hooks list')", s)
				}
				want[n] = true
			}
			dls, err := a.hookDeadLetters(ctx)
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
				l := redriveLine{Seq: d.Seq}
				what := fmt.Sprintf("%s run %d to %s", d.JobID, d.Run, netguard.RedactURL(d.URL))
				if dry {
					l.Result = "would redrive " + what
				} else if err := forwarder.RequestRedrive(ctx, a.js, d.Seq); err != nil {
					if ctx.Err() != nil {
						return silent(exitInterrupted)
					}
					l.Error, failed = err.Error(), failed+1
				} else {
					l.Result = "redrive requested: " + what
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
					fmt.Fprintln(a.stdout, "no undelivered webhook")
				}
			}
			if failed > 0 {
				return exitf(exitFailure, "%s not redriven", plural(failed, "webhook", "webhooks"))
			}
			return nil
		},
	}
	redrive.Flags().BoolVar(&all, "all", false, "every undelivered webhook")
	redrive.Flags().BoolVar(&dry, "dry-run", false, "say what would be done; change nothing")
	outputFlag(redrive, &ro)
	cmd.AddCommand(list, redrive)
	return cmd
}
