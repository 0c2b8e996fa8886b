package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providers/registry"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/ratelimit"
)

// batchJobs returns the state of every job in batch (all jobs if batch
// is empty), read from the job state bucket.
func (a *app) batchJobs(ctx context.Context, batch string) ([]*jobstate.State, error) {
	kv, err := a.js.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	var out []*jobstate.State
	for e := range w.Updates() {
		if e == nil {
			break
		}
		var st jobstate.State
		if json.Unmarshal(e.Value(), &st) != nil {
			continue
		}
		if batch == "" || st.Batch == batch {
			out = append(out, &st)
		}
	}
	return out, nil
}

func (a *app) status(ctx context.Context, args []string) error {
	fs := newFlags("status", "status JOB_ID... | --batch B", a.stderr)
	batch := fs.String("batch", "", "show every job of this batch")
	asJSON := fs.Bool("json", false, "print job states as JSON lines")
	ids, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(ids) == 0 && *batch == "" {
		return &exitError{exitUsage, errors.New("status needs JOB_IDs or --batch")}
	}
	if err := a.connect(ctx); err != nil {
		return err
	}
	var states []*jobstate.State
	if *batch != "" {
		if states, err = a.batchJobs(ctx, *batch); err != nil {
			return err
		}
		if len(states) == 0 {
			return fmt.Errorf("no jobs in batch %q", *batch)
		}
	}
	missing := 0
	for _, id := range ids {
		st, _, err := a.states.Get(ctx, id)
		if errors.Is(err, jobstate.ErrNotFound) {
			fmt.Fprintf(a.stderr, "%s: unknown job\n", id)
			missing++
			continue
		}
		if err != nil {
			return err
		}
		states = append(states, st)
	}
	sort.Slice(states, func(i, j int) bool { return naturalLess(states[i].ID, states[j].ID) })
	if *asJSON {
		enc := json.NewEncoder(a.stdout)
		for _, st := range states {
			_ = enc.Encode(st)
		}
	} else {
		tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB\tPROVIDER\tPHASE\tSTATUS\tRETRIES\tTASK\tUPDATED\tNOTE")
		counts := map[string]int{}
		for _, st := range states {
			status, note := "", st.LastError
			if len(st.Result) > 0 {
				var r queue.Result
				if json.Unmarshal(st.Result, &r) == nil {
					status = r.Status
					if r.Error != nil {
						note = r.Error.Code + ": " + r.Error.Message
					} else if len(r.Outputs) > 0 {
						note = r.Outputs[0].URL
					}
				}
			}
			if st.CancelRequested && status == "" {
				note = "cancel requested"
			}
			task := ""
			if st.Task != nil {
				task = st.Task.ID
			}
			counts[string(st.Phase)+"/"+status]++
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", st.ID, st.Provider, st.Phase, status, st.Attempts, task,
				st.UpdatedAt.Local().Format(time.DateTime), truncate(note, 80))
		}
		_ = tw.Flush()
	}
	if missing > 0 {
		return &exitError{exitFailedJobs, fmt.Errorf("%d unknown jobs", missing)}
	}
	return nil
}

func (a *app) results(ctx context.Context, args []string) error {
	fs := newFlags("results", "results [--batch B] [--provider P] [--follow]", a.stderr)
	batch := fs.String("batch", "", "only results of this batch")
	provider := fs.String("provider", "", "only results of this provider")
	followFlag := fs.Bool("follow", false, "keep printing new results until interrupted")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if err := a.connect(ctx); err != nil {
		return err
	}
	var subjects []string
	if *provider != "" {
		subjects = []string{queue.ResultSubject(*provider, "*")}
	}
	s, err := a.js.Stream(ctx, queue.StreamResults)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	f, err := newFollower(ctx, a.js, time.Time{}, subjects...)
	if err != nil {
		return err
	}
	defer f.stop()
	enc := json.NewEncoder(a.stdout)
	seen := uint64(0)
	for *followFlag || seen < info.State.Msgs {
		wctx := ctx
		var cancel context.CancelFunc = func() {}
		if !*followFlag {
			wctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		}
		r, err := f.next(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil || !*followFlag {
				break
			}
			return err
		}
		seen++
		if *batch == "" || r.Batch == *batch {
			_ = enc.Encode(r)
		}
	}
	return nil
}

func (a *app) cancel(ctx context.Context, args []string) error {
	fs := newFlags("cancel", "cancel JOB_ID... | --batch B", a.stderr)
	batch := fs.String("batch", "", "cancel every unfinished job of this batch")
	ids, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(ids) == 0 && *batch == "" {
		return &exitError{exitUsage, errors.New("cancel needs JOB_IDs or --batch")}
	}
	if err := a.connect(ctx); err != nil {
		return err
	}
	if *batch != "" {
		states, err := a.batchJobs(ctx, *batch)
		if err != nil {
			return err
		}
		for _, st := range states {
			if st.Phase != jobstate.Finished {
				ids = append(ids, st.ID)
			}
		}
		if len(ids) == 0 {
			fmt.Fprintf(a.stderr, "batch %s has no unfinished jobs\n", *batch)
			return nil
		}
	}
	c := &queue.Canceller{JS: a.js, States: a.states, By: "enqueue"}
	failures := 0
	counts := map[string]int{}
	for _, id := range ids {
		outcome, err := c.Cancel(ctx, id)
		if err != nil {
			fmt.Fprintf(a.stderr, "%s: %v\n", id, err)
			failures++
			continue
		}
		counts[outcome]++
		fmt.Fprintf(a.stdout, "%s: %s\n", id, outcome)
	}
	if failures > 0 {
		return &exitError{exitFailedJobs, fmt.Errorf("%d of %d cancels failed", failures, len(ids))}
	}
	return nil
}

func providerArg(pos []string) (string, error) {
	if len(pos) != 1 {
		return "", &exitError{exitUsage, fmt.Errorf("want one PROVIDER (%s)", strings.Join(registry.Names(), ", "))}
	}
	if !registry.Known(pos[0]) {
		return "", &exitError{exitUsage, fmt.Errorf("unknown provider %q (%s)", pos[0], strings.Join(registry.Names(), ", "))}
	}
	return pos[0], nil
}

func (a *app) providerStore(ctx context.Context) (*providerstate.Store, error) {
	kv, err := a.js.KeyValue(ctx, queue.BucketProviders)
	if err != nil {
		return nil, err
	}
	return providerstate.New(a.js, kv, queue.StreamJobs), nil
}

// providerCommand parses PROVIDER (and fs's flags) from args, connects,
// and returns the provider-state store.
func (a *app) providerCommand(ctx context.Context, fs *flag.FlagSet, args []string) (string, *providerstate.Store, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return "", nil, err
	}
	name, err := providerArg(pos)
	if err != nil {
		return "", nil, err
	}
	if err := a.connect(ctx); err != nil {
		return "", nil, err
	}
	ps, err := a.providerStore(ctx)
	return name, ps, err
}

func (a *app) pause(ctx context.Context, args []string) error {
	fs := newFlags("pause", "pause PROVIDER [--reason R]", a.stderr)
	reason := fs.String("reason", "paused by an operator", "why (shown by stats and in the event)")
	name, ps, err := a.providerCommand(ctx, fs, args)
	if err != nil {
		return err
	}
	st, changed, err := ps.Pause(ctx, name, providerstate.CodeManual, *reason, "enqueue", 0)
	if err != nil {
		return err
	}
	if changed {
		_ = queue.PublishEvent(a.nc, queue.Event{Kind: queue.EventProviderPaused, Provider: name, Code: st.Code, Reason: st.Reason, Worker: "enqueue"})
		fmt.Fprintf(a.stdout, "%s paused for every worker until 'enqueue resume %s'\n", name, name)
	} else {
		fmt.Fprintf(a.stdout, "%s was already paused (%s: %s)\n", name, st.Code, st.Reason)
	}
	return nil
}

func (a *app) resume(ctx context.Context, args []string) error {
	name, ps, err := a.providerCommand(ctx, newFlags("resume", "resume PROVIDER", a.stderr), args)
	if err != nil {
		return err
	}
	changed, err := ps.Resume(ctx, name, "enqueue")
	if err != nil {
		return err
	}
	if changed {
		_ = queue.PublishEvent(a.nc, queue.Event{Kind: queue.EventProviderResumed, Provider: name, Reason: "resumed by an operator", Worker: "enqueue"})
		fmt.Fprintf(a.stdout, "%s resumed\n", name)
	} else {
		fmt.Fprintf(a.stdout, "%s was not paused\n", name)
	}
	return nil
}

func (a *app) stats(ctx context.Context, args []string) error {
	fs := newFlags("stats", "stats [--watch] [--no-batches]", a.stderr)
	watch := fs.Duration("watch", 0, "refresh every interval (e.g. 2s) until interrupted")
	noBatches := fs.Bool("no-batches", false, "skip per-batch progress (which reads every job's state)")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if err := a.connect(ctx); err != nil {
		return err
	}
	for {
		if *watch > 0 {
			fmt.Fprint(a.stdout, "\033[H\033[2J")
		}
		if err := a.printStats(ctx, !*noBatches); err != nil {
			return err
		}
		if *watch <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*watch):
		}
	}
}

func (a *app) printStats(ctx context.Context, batches bool) error {
	ps, err := a.providerStore(ctx)
	if err != nil {
		return err
	}
	rlKV, err := a.js.KeyValue(ctx, queue.BucketRateLimit)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PROVIDER\tQUEUED\tIN FLIGHT\tMAX IN FLIGHT\tREDELIVERED\tNEXT CALL\tSTATE\n")
	for _, name := range registry.Names() {
		queued, inflight, maxIn, redelivered := "-", "-", "-", "-"
		cons, cerr := a.js.Consumer(ctx, queue.StreamJobs, name)
		if cerr == nil {
			info := cons.CachedInfo()
			queued, inflight, maxIn = fmt.Sprint(info.NumPending), fmt.Sprint(info.NumAckPending), fmt.Sprint(info.Config.MaxAckPending)
			redelivered = fmt.Sprint(info.NumRedelivered)
		}
		next := "-"
		if t, err := ratelimit.New(ratelimit.NewKVStore(rlKV), name, ratelimit.Config{Rate: 1}).BlockedUntil(ctx); err == nil && t.After(time.Now()) {
			next = "in " + time.Until(t).Round(time.Millisecond).String()
		} else if err == nil && cerr == nil {
			next = "now" // "-" until a worker has created the consumer
		}
		state := "active"
		st, _, err := ps.Get(ctx, name)
		if err == nil && st.Paused {
			state = fmt.Sprintf("PAUSED (%s) since %s: %s", st.Code, st.Since.Local().Format(time.TimeOnly), truncate(st.Reason, 60))
			if st.NextProbeAt != nil {
				state += fmt.Sprintf("; next probe %s", st.NextProbeAt.Local().Format(time.TimeOnly))
			} else {
				state += "; resume with 'enqueue resume " + name + "'"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, queued, inflight, maxIn, redelivered, next, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !batches {
		return nil
	}
	states, err := a.batchJobs(ctx, "")
	if err != nil {
		return err
	}
	type prog struct{ total, queued, running, succeeded, failed, cancelled int }
	byBatch := map[string]*prog{}
	for _, st := range states {
		p := byBatch[st.Batch]
		if p == nil {
			p = &prog{}
			byBatch[st.Batch] = p
		}
		p.total++
		switch st.Phase {
		case jobstate.Queued:
			p.queued++
		case jobstate.Submitting, jobstate.Submitted:
			p.running++
		case jobstate.Finished:
			var r queue.Result
			_ = json.Unmarshal(st.Result, &r)
			switch r.Status {
			case queue.StatusSucceeded:
				p.succeeded++
			case queue.StatusCancelled:
				p.cancelled++
			default:
				p.failed++
			}
		}
	}
	if len(byBatch) == 0 {
		return nil
	}
	names := make([]string, 0, len(byBatch))
	for b := range byBatch {
		names = append(names, b)
	}
	sort.Strings(names)
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "BATCH\tJOBS\tQUEUED\tRUNNING\tSUCCEEDED\tFAILED\tCANCELLED\tDONE\n")
	for _, b := range names {
		p := byBatch[b]
		label := b
		if label == "" {
			label = "(none)"
		}
		done := p.succeeded + p.failed + p.cancelled
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f%%\n", label, p.total, p.queued, p.running, p.succeeded, p.failed, p.cancelled, 100*float64(done)/float64(p.total))
	}
	return tw.Flush()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// naturalLess orders ids so that "b-2" comes before "b-10".
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			i, j := digits(a), digits(b)
			na, nb := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digits(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}
