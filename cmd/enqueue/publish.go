package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/money"
)

type publishOpts struct {
	provider, input, id, batch, metadata, priority, fairness string
	format                                                   string
	skipInvalid, dryRun, wait                                bool
	maxCost                                                  []string
	budget                                                   string
	out                                                      string
	timeout                                                  time.Duration
	output                                                   output
}

const publishLong = `Publish jobs from FILE (JSONL, a JSON array or object, or CSV), from stdin
("-"), or one job from flags (--provider and --input).

Every line is validated first, with the provider's rules, and invalid lines are
listed ("line 3: input.prompt is 501 characters; the limit is 500"); nothing is
published unless --skip-invalid.

Jobs without an id get one from their content (provider, input and metadata;
the n-th identical job of a file gets "-n"): publishing a file again, or after
inserting, reordering or fixing lines, publishes only the new jobs and reports
the others as already known. Nothing is paid twice. To run the same job twice on
purpose, give it an explicit id or a distinguishing metadata field.

--batch only labels the jobs (stats, status, cancel, budgets); a file's jobs
default to the file's base name (demo.jsonl: "demo"), stdin's to none.`

const publishExample = `  enqueue examples/demo.jsonl
  enqueue --wait --out results.jsonl --timeout 30m jobs.csv
  enqueue --dry-run --max-cost 500usd,20000credits jobs.jsonl
  enqueue --provider samsar --input '{"prompt":"a red kite","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":10}'
  cat jobs.jsonl | enqueue --batch nightly -`

func addPublishFlags(cmd *cobra.Command, po *publishOpts) {
	f := cmd.Flags()
	f.StringVar(&po.provider, "provider", "", "provider of the job given by flags ("+strings.Join(reelq.Providers, ", ")+")")
	f.StringVar(&po.input, "input", "", "input of the job given by flags: a JSON object, or @FILE")
	f.StringVar(&po.id, "id", "", "id of the job given by flags (default: from its content)")
	f.StringVar(&po.metadata, "metadata", "", "metadata of the job given by flags: JSON echoed in its result, or @FILE")
	f.StringVar(&po.batch, "batch", "", "batch label for jobs without one (default: the file's base name; stdin: none)")
	f.StringVar(&po.priority, "priority", "", "priority for jobs without one: high, normal or low")
	f.StringVar(&po.fairness, "fairness-key", "", "fairness key for jobs without one (default: the batch)")
	f.StringVar(&po.format, "format", "", "input format: jsonl, json or csv (default: from the extension and content)")
	f.BoolVar(&po.skipInvalid, "skip-invalid", false, "publish the valid jobs even if some lines are invalid")
	f.BoolVar(&po.dryRun, "dry-run", false, "validate and print the estimated cost; publish nothing")
	f.StringArrayVar(&po.maxCost, "max-cost", nil, "refuse to publish if the estimate exceeds this, per unit (500usd, 20000credits; repeatable or comma-separated)")
	f.StringVar(&po.budget, "budget", "", "set the batch's budget (e.g. 500usd) before publishing; workers stop submitting its jobs beyond it")
	f.BoolVar(&po.wait, "wait", false, "wait for every job's result (progress on stderr; result events as JSON lines on stdout when it is not a terminal, or to --out)")
	f.StringVar(&po.out, "out", "", "with --wait, write the result events as JSON lines to this file")
	f.DurationVar(&po.timeout, "timeout", 0, "with --wait, stop waiting after this long (exit 4; the jobs keep running)")
	outputFlag(cmd, &po.output)
	providerFlagCompletion(cmd)
	_ = cmd.RegisterFlagCompletionFunc("priority", cobra.FixedCompletions([]cobra.Completion{"high", "normal", "low"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]cobra.Completion{"jsonl", "json", "csv"}, cobra.ShellCompDirectiveNoFileComp))
}

func (po *publishOpts) fromFlags(cmd *cobra.Command) bool {
	return cmd.Flags().Changed("provider") || cmd.Flags().Changed("input")
}

func (a *app) publishCommand() *cobra.Command {
	po := &publishOpts{}
	cmd := &cobra.Command{
		Use:     "publish [flags] [FILE|-]",
		Short:   "Publish jobs (the default command)",
		Long:    publishLong,
		Example: publishExample,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.publish(cmd, po, args)
		},
	}
	addPublishFlags(cmd, po)
	return cmd
}

// source is where the jobs come from, for messages.
func (po *publishOpts) source(args []string) string {
	if len(args) == 0 {
		return "flags"
	}
	if args[0] == "-" {
		return "stdin"
	}
	return args[0]
}

func (a *app) publish(cmd *cobra.Command, po *publishOpts, args []string) error {
	ctx := cmd.Context()
	if len(args) > 1 {
		return exitf(exitUsage, "publish takes one FILE, got %d arguments", len(args))
	}
	single := po.fromFlags(cmd)
	switch {
	case single && len(args) > 0:
		return exitf(exitUsage, "give either a FILE or --provider and --input, not both")
	case !single && len(args) == 0:
		return exitf(exitUsage, "nothing to publish: give a FILE (- for stdin), or --provider and --input\nrun 'enqueue --help' for usage")
	case !single && (po.id != "" || po.metadata != ""):
		return exitf(exitUsage, "--id and --metadata are for a job given by flags (with --provider and --input)")
	case po.out != "" && !po.wait:
		return exitf(exitUsage, "--out needs --wait")
	case po.timeout != 0 && !po.wait:
		return exitf(exitUsage, "--timeout needs --wait")
	}
	limits, err := parseMaxCost(po.maxCost)
	if err != nil {
		return err
	}
	var budget *reelq.Cost
	if po.budget != "" {
		b, err := reelq.ParseCost(po.budget)
		if err != nil {
			return exitf(exitUsage, "--budget: %v", err)
		}
		budget = &b
	}

	lines, bad, err := a.readInput(po, args)
	if err != nil {
		return err
	}
	batch := po.batch
	if batch == "" && !single {
		batch = defaultBatch(args[0])
	}
	if batch != "" && !reelq.ValidID(batch) {
		return exitf(exitUsage, "--batch %q: a batch is 1-128 characters of letters, digits, '-' or '_'", batch)
	}
	if budget != nil && batch == "" {
		return exitf(exitUsage, "--budget needs a batch label: give --batch")
	}
	for i := range lines {
		j := &lines[i].Job
		if j.Batch == "" {
			j.Batch = batch
		}
		if j.Priority == "" {
			j.Priority = reelq.Priority(po.priority)
		}
		if j.FairnessKey == "" {
			j.FairnessKey = po.fairness
		}
	}

	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	// Validate everything before anything is published; Ctrl-C stops it
	// at the line it is on.
	byID := map[string]int{}
	var valid []lineJob
	validated := validateHookFrom(ctx)
	for i, l := range lines {
		if ctx.Err() != nil {
			fmt.Fprintf(a.stderr, "interrupted while validating (%s of %s checked); nothing published\n", commas(i), plural(len(lines), "job", "jobs"))
			return silent(exitInterrupted)
		}
		if validated != nil {
			validated(i + 1)
		}
		if err := c.Validate(l.Job); err != nil {
			bad = append(bad, lineError{Line: l.Line, Msg: reason(err)})
			continue
		}
		if l.Job.ID != "" {
			if prev, dup := byID[l.Job.ID]; dup {
				bad = append(bad, lineError{Line: l.Line, Msg: fmt.Sprintf("id %q repeats line %d's", l.Job.ID, prev)})
				continue
			}
			byID[l.Job.ID] = l.Line
		}
		valid = append(valid, l)
	}
	if single {
		for i := range bad {
			bad[i].Line = 0
		}
	}
	slices.SortStableFunc(bad, func(x, y lineError) int { return x.Line - y.Line })
	for _, b := range bad {
		fmt.Fprintln(a.stderr, b.String())
	}
	src := po.source(args)
	switch {
	case len(bad) > 0 && len(valid) == 0:
		return exitf(exitUsage, "%s: %s and no valid one; nothing published", src, plural(len(bad), "invalid job", "invalid jobs"))
	case len(bad) > 0 && !po.skipInvalid && !po.dryRun:
		return exitf(exitUsage, "%s: %s; nothing published (fix them, or --skip-invalid publishes the %s)", src,
			plural(len(bad), "invalid job", "invalid jobs"), plural(len(valid), "valid one", "valid ones"))
	case len(valid) == 0:
		return exitf(exitUsage, "%s: no jobs", src)
	}

	jobs := make([]reelq.Job, len(valid))
	for i, l := range valid {
		jobs[i] = l.Job
	}
	est := a.estimate(c, jobs)
	if ctx.Err() != nil {
		fmt.Fprintln(a.stderr, "interrupted; nothing published")
		return silent(exitInterrupted)
	}
	if po.dryRun {
		return a.dryRun(po, src, est, len(bad), limits)
	}
	if over := est.over(limits); over != "" {
		return exitf(exitUsage, "refusing to publish %s: %s; nothing published", src, over)
	}
	if len(bad) > 0 {
		a.warnf("skipping %s (--skip-invalid)", plural(len(bad), "invalid job", "invalid jobs"))
	}
	if budget != nil {
		if err := a.ins.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: batch, Amount: budget.Amount, Unit: budget.Unit}); err != nil {
			return fmt.Errorf("--budget: %w", err)
		}
		fmt.Fprintf(a.stderr, "budget of batch %s set to %s\n", batch, reelq.FormatCost(*budget))
	}
	var after uint64
	if po.wait {
		// Taken before publishing: every result of these jobs comes after
		// it, whatever the clocks say.
		if after, err = c.ResultsSeq(ctx); err != nil {
			return fmt.Errorf("reading the results stream: %w", err)
		}
	}
	var resultsOut io.Writer
	if po.wait {
		switch {
		case po.out != "":
			f, err := os.Create(po.out)
			if err != nil {
				return exitf(exitUsage, "--out: %v", err)
			}
			defer f.Close()
			resultsOut = f
		case !a.outTTY:
			resultsOut = a.stdout
		}
	}

	pb := newBar(a.stderr, a.errTTY)
	pb.phase("publishing", "jobs", len(jobs))
	hook := hookFrom(ctx)
	outcomes, err := c.EnqueueBatch(ctx, jobs, reelq.BatchOptions{Progress: func(_ reelq.EnqueueResult, done, _ int) {
		pb.add(1)
		if hook != nil {
			hook(done)
		}
	}})
	pb.clear()
	rep := a.report(valid, jobs, outcomes, bad, batch, est)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(a.stderr, "interrupted: %s of %s published; running the same command again is safe (published jobs are reported as already known, and nothing is paid twice)\n",
				commas(rep.Published), plural(len(jobs), "job", "jobs"))
			return silent(exitInterrupted)
		}
		return fmt.Errorf("publishing: %w (%s of %s published; publishing again is safe)", err, commas(rep.Published), plural(len(jobs), "job", "jobs"))
	}
	for _, l := range rep.Lines {
		if l.Outcome == outcomeConflict || l.Outcome == outcomeFailed {
			fmt.Fprintln(a.stderr, l.message())
		}
	}
	var code int
	switch {
	case rep.Conflicts > 0:
		code = exitUsage
	case rep.Failed > 0:
		code = exitFailure
	}
	if !po.wait {
		if po.output.json() {
			if err := a.writeJSON(rep); err != nil {
				return err
			}
		} else {
			a.printReport(rep)
		}
		return a.publishExit(code, rep)
	}
	// With --wait, stdout is the result events'; the publish summary goes
	// to stderr, with the first jobs already known.
	const showKnown = 20
	known := 0
	for _, l := range rep.Lines {
		if l.Outcome == outcomeKnown {
			if known++; known <= showKnown {
				fmt.Fprintln(a.stderr, l.message())
			}
		}
	}
	if known > showKnown {
		fmt.Fprintf(a.stderr, "... and %s more already known\n", commas(known-showKnown))
	}
	fmt.Fprintln(a.stderr, rep.summary())
	var ids []string
	for _, l := range rep.Lines {
		if l.Outcome == outcomePublished || l.Outcome == outcomeKnown {
			ids = append(ids, l.ID)
		}
	}
	if len(ids) == 0 {
		return a.publishExit(code, rep)
	}
	werr := a.waitResults(ctx, c, po, after, ids, batch, resultsOut, pb)
	if code != 0 {
		_ = werr // the publish problem decides the exit code; the wait summary is printed
		return a.publishExit(code, rep)
	}
	return werr
}

func (a *app) publishExit(code int, rep *publishReport) error {
	switch code {
	case exitUsage:
		return exitf(exitUsage, "%s not published: %s already known with other content (give them other ids)",
			plural(rep.Conflicts, "job", "jobs"), map[bool]string{true: "its id is", false: "their ids are"}[rep.Conflicts == 1])
	case exitFailure:
		return exitf(exitFailure, "%s could not be published; publishing again is safe", plural(rep.Failed, "job", "jobs"))
	}
	return nil
}

// readInput reads the jobs from flags or from the file (or stdin).
func (a *app) readInput(po *publishOpts, args []string) ([]lineJob, []lineError, error) {
	if len(args) == 0 {
		j := reelq.Job{ID: po.id, Provider: po.provider}
		in, err := jsonArg("--input", po.input)
		if err != nil {
			return nil, nil, err
		}
		j.Input = in
		if po.metadata != "" {
			if j.Metadata, err = jsonArg("--metadata", po.metadata); err != nil {
				return nil, nil, err
			}
		}
		return []lineJob{{Line: 0, Job: j}}, nil, nil
	}
	var r io.Reader = a.stdin
	if args[0] == "-" && isTerminal(a.stdin) {
		fmt.Fprintln(a.stderr, "reading jobs from stdin (one JSON object per line; Ctrl-D ends)")
	}
	if args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return nil, nil, exitf(exitUsage, "%v", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return nil, nil, exitf(exitUsage, "%s is a directory, not a job file", args[0])
		}
		r = f
	}
	lines, bad, err := readJobs(r, args[0], po.format)
	if err != nil {
		var nj *errNotJobs
		if errors.As(err, &nj) || isExitError(err) {
			return nil, nil, &exitError{code: exitUsage, err: err}
		}
		return nil, nil, fmt.Errorf("reading %s: %w", po.source(args), err)
	}
	return lines, bad, nil
}

// jsonArg reads a flag holding JSON or @FILE.
func jsonArg(flag, v string) (json.RawMessage, error) {
	if name, ok := strings.CutPrefix(v, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, exitf(exitUsage, "%s: %v", flag, err)
		}
		v = string(b)
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if !json.Valid([]byte(v)) {
		return nil, exitf(exitUsage, "%s is not valid JSON", flag)
	}
	return json.RawMessage(v), nil
}

// parseMaxCost reads --max-cost values: "500usd", "500usd,20000credits"
// (a comma between a unit and the next amount separates; "1,000usd" is
// one amount).
func parseMaxCost(vals []string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, v := range vals {
		var parts []string
		start := 0
		for i := 0; i < len(v); i++ {
			if v[i] != ',' {
				continue
			}
			// A thousands separator is a comma between a digit and
			// exactly three digits ("1,000usd").
			rest := v[i+1:]
			three := len(rest) >= 3 && allDigits(rest[:3]) && (len(rest) == 3 || !isDigit(rest[3]))
			if i == 0 || !isDigit(v[i-1]) || !three {
				parts = append(parts, v[start:i])
				start = i + 1
			}
		}
		parts = append(parts, v[start:])
		for _, p := range parts {
			if strings.TrimSpace(p) == "" {
				continue
			}
			cst, err := reelq.ParseCost(p)
			if err != nil && len(parts) > 1 && allDigits(strings.TrimSpace(p)) {
				// "1,0,0,0usd": read as costs separated by commas.
				return nil, exitf(exitUsage, "--max-cost %q: a thousands separator ',' goes between groups of three digits (1,000usd); "+
					"costs are separated by a ',' after their unit (500usd,20000credits)", v)
			}
			if err != nil {
				return nil, exitf(exitUsage, "--max-cost: %v", err)
			}
			out[cst.Unit] = cst.Amount
		}
	}
	return out, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// estimate is what a set of jobs is expected to cost.
type estimate struct {
	Jobs int `json:"jobs"`
	// Providers in the order they first appear, with their totals by unit.
	Providers []providerEstimate `json:"providers"`
	// Total by unit over all providers.
	Total    map[string]float64 `json:"total"`
	Unpriced int                `json:"unpriced"`
}

type providerEstimate struct {
	Provider string             `json:"provider"`
	Jobs     int                `json:"jobs"`
	Amount   map[string]float64 `json:"amount"`
	// Basis is the per-job basis of the provider's first job.
	Basis string `json:"basis,omitempty"`
}

func (a *app) estimate(c *reelq.Client, jobs []reelq.Job) estimate {
	est := c.Estimate(jobs...)
	totals := est.Totals
	basis := map[string]string{}
	for i, j := range jobs {
		if b := est.Jobs[i].Basis; b != "" && basis[j.Provider] == "" {
			basis[j.Provider] = b
		}
	}
	e := estimate{Jobs: len(jobs), Total: map[string]float64{}, Unpriced: est.Unpriced}
	count := map[string]int{}
	var order []string
	for _, j := range jobs {
		if count[j.Provider] == 0 {
			order = append(order, j.Provider)
		}
		count[j.Provider]++
	}
	// A provider's basis is its first job's; "e.g." says the jobs differ.
	varies := map[string]bool{}
	for i, j := range jobs {
		if cost := est.Jobs[i]; cost.Unit != "" && cost.Basis != basis[j.Provider] {
			varies[j.Provider] = true
		}
	}
	for _, p := range order {
		pe := providerEstimate{Provider: p, Jobs: count[p], Amount: totals[p], Basis: basis[p]}
		if varies[p] && pe.Basis != "" {
			pe.Basis = "e.g. " + pe.Basis
		}
		if pe.Amount == nil {
			pe.Amount = map[string]float64{}
		}
		for u, v := range pe.Amount {
			e.Total[u] = money.Add(e.Total[u], v)
		}
		e.Providers = append(e.Providers, pe)
	}
	return e
}

// String renders the estimate: "600 jobs: $1,443.96 on segmind + 36,000
// credits on samsar (basis: $2.4066 per run; 10 credits/s x 60 s); in all
// 36,000 credits + $1,443.96; 0 without a price" (the total per unit when
// more than one provider or unit is priced).
func (e estimate) String() string {
	var parts, bases []string
	for _, p := range e.Providers {
		for _, u := range units(p.Amount) {
			parts = append(parts, reelq.FormatCost(reelq.Cost{Amount: p.Amount[u], Unit: u})+" on "+p.Provider)
		}
		if p.Basis != "" && len(p.Amount) > 0 {
			bases = append(bases, p.Basis)
		}
	}
	s := plural(e.Jobs, "job", "jobs") + ": "
	if len(parts) == 0 {
		s += "no price known"
	} else {
		s += strings.Join(parts, " + ")
	}
	if len(bases) > 0 {
		s += " (basis: " + strings.Join(bases, "; ") + ")"
	}
	if len(parts) > 1 {
		// Several providers: the total in each unit.
		var totals []string
		for _, u := range units(e.Total) {
			totals = append(totals, reelq.FormatCost(reelq.Cost{Amount: e.Total[u], Unit: u}))
		}
		s += "; in all " + strings.Join(totals, " + ")
	}
	return s + fmt.Sprintf("; %s without a price", commas(e.Unpriced))
}

// over says how the estimate exceeds limits, or "".
func (e estimate) over(limits map[string]float64) string {
	var why []string
	for _, u := range units(limits) {
		if money.FromFloat(e.Total[u]) > money.FromFloat(limits[u]) {
			why = append(why, fmt.Sprintf("the estimate of %s exceeds --max-cost %s", reelq.FormatCost(reelq.Cost{Amount: e.Total[u], Unit: u}),
				reelq.FormatCost(reelq.Cost{Amount: limits[u], Unit: u})))
		}
	}
	if len(why) == 0 {
		return ""
	}
	s := strings.Join(why, "; ") + " (" + e.String() + ")"
	return s
}

func units[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for u := range m {
		out = append(out, u)
	}
	sort.Strings(out) // credits before usd
	return out
}

func (a *app) dryRun(po *publishOpts, src string, e estimate, invalid int, limits map[string]float64) error {
	over := e.over(limits)
	if po.output.json() {
		if err := a.writeJSON(struct {
			Source   string `json:"source"`
			Invalid  int    `json:"invalid"`
			Estimate estimate
			Refused  string `json:"refused,omitempty"`
		}{src, invalid, e, over}); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(a.stdout, e.String())
		fmt.Fprintf(a.stdout, "dry run: nothing published")
		switch {
		case invalid > 0 && po.skipInvalid:
			fmt.Fprintf(a.stdout, "; %s would be skipped (--skip-invalid)", plural(invalid, "invalid job", "invalid jobs"))
		case invalid > 0:
			fmt.Fprintf(a.stdout, "; %s: publishing needs them fixed, or --skip-invalid", plural(invalid, "invalid job", "invalid jobs"))
		}
		fmt.Fprintln(a.stdout)
	}
	if over != "" {
		return exitf(exitUsage, "%s would be refused: %s", src, over)
	}
	if invalid > 0 && !po.skipInvalid {
		return silent(exitUsage)
	}
	return nil
}

// Publish outcomes of one line.
const (
	outcomePublished = "published"
	outcomeKnown     = "known"
	outcomeConflict  = "conflict"
	outcomeFailed    = "failed"
	outcomeInvalid   = "invalid"
	outcomeNotSent   = "not published" // interrupted before its turn
)

type lineOutcome struct {
	Line     int    `json:"line,omitempty"`
	ID       string `json:"id,omitempty"`
	Provider string `json:"provider,omitempty"`
	Outcome  string `json:"outcome"`
	// Phase and Status are a known job's phase and, once finished, its
	// result status.
	Phase  reelq.Phase `json:"phase,omitempty"`
	Status string      `json:"status,omitempty"`
	Error  string      `json:"error,omitempty"`
}

func (l lineOutcome) where() string {
	if l.Line == 0 {
		return "job"
	}
	return fmt.Sprintf("line %d", l.Line)
}

// message is the line's outcome as a sentence.
func (l lineOutcome) message() string {
	switch l.Outcome {
	case outcomeConflict:
		return fmt.Sprintf("%s: job %s is already known with different content (provider, input or metadata); give it another id", l.where(), l.ID)
	case outcomeKnown:
		return fmt.Sprintf("%s: job %s is already known (%s)", l.where(), l.ID, l.state())
	case outcomeFailed, outcomeInvalid:
		return fmt.Sprintf("%s: not published: %s", l.where(), l.Error)
	}
	return fmt.Sprintf("%s: %s %s", l.where(), l.Outcome, l.ID)
}

// state is a known job's phase, with the status of a finished one.
func (l lineOutcome) state() string {
	if l.Status != "" {
		return string(l.Phase) + ": " + l.Status
	}
	return string(l.Phase)
}

type publishReport struct {
	Source    string        `json:"source,omitempty"`
	Batch     string        `json:"batch,omitempty"`
	Jobs      int           `json:"jobs"`
	Published int           `json:"published"`
	Known     int           `json:"known"`
	Conflicts int           `json:"conflicts"`
	Failed    int           `json:"failed"`
	Invalid   int           `json:"invalid"`
	Estimate  estimate      `json:"estimate"`
	Lines     []lineOutcome `json:"lines"`
}

func (a *app) report(valid []lineJob, jobs []reelq.Job, outcomes []reelq.EnqueueResult, bad []lineError, batch string, e estimate) *publishReport {
	rep := &publishReport{Batch: batch, Jobs: len(jobs), Invalid: len(bad), Estimate: e}
	for i, l := range valid {
		lo := lineOutcome{Line: l.Line, ID: jobs[i].ID, Provider: jobs[i].Provider}
		var o reelq.EnqueueResult
		if i < len(outcomes) {
			o = outcomes[i]
		}
		switch o.Status {
		case reelq.Published:
			lo.Outcome = outcomePublished
			rep.Published++
		case reelq.Known:
			lo.Outcome, lo.Phase = outcomeKnown, o.Phase
			if o.Result != nil && o.Phase == reelq.PhaseFinished {
				lo.Status = o.Result.Status
			}
			rep.Known++
		case reelq.Failed:
			if errors.Is(o.Err, reelq.ErrConflict) {
				lo.Outcome = outcomeConflict
				rep.Conflicts++
			} else {
				lo.Outcome = outcomeFailed
				rep.Failed++
			}
			lo.Error = reason(o.Err)
		default:
			lo.Outcome = outcomeNotSent
		}
		rep.Lines = append(rep.Lines, lo)
	}
	for _, b := range bad {
		rep.Lines = append(rep.Lines, lineOutcome{Line: b.Line, Outcome: outcomeInvalid, Error: b.Msg})
	}
	slices.SortStableFunc(rep.Lines, func(x, y lineOutcome) int { return x.Line - y.Line })
	return rep
}

// summary is the report in one line.
func (r *publishReport) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "published %s of %s", commas(r.Published), plural(r.Jobs, "job", "jobs"))
	if r.Batch != "" {
		fmt.Fprintf(&b, " (batch %s)", r.Batch)
	}
	if r.Known > 0 {
		fmt.Fprintf(&b, "; %s already known, not published again", commas(r.Known))
	}
	if r.Conflicts > 0 {
		fmt.Fprintf(&b, "; %s with an id known with other content", commas(r.Conflicts))
	}
	if r.Failed > 0 {
		fmt.Fprintf(&b, "; %s failed to publish", commas(r.Failed))
	}
	if r.Invalid > 0 {
		fmt.Fprintf(&b, "; %s skipped", plural(r.Invalid, "invalid line", "invalid lines"))
	}
	if len(r.Estimate.Total) > 0 {
		fmt.Fprintf(&b, "; estimated %s", costs(r.Estimate.Total))
	}
	return b.String()
}

// costs renders amounts by unit: "$12.30 + 1,500 credits".
func costs(m map[string]float64) string {
	var parts []string
	for _, u := range []string{"usd", "credits"} {
		if v, ok := m[u]; ok {
			parts = append(parts, reelq.FormatCost(reelq.Cost{Amount: v, Unit: u}))
		}
	}
	for _, u := range units(m) {
		if u != "usd" && u != "credits" {
			parts = append(parts, reelq.FormatCost(reelq.Cost{Amount: m[u], Unit: u}))
		}
	}
	return strings.Join(parts, " + ")
}

func (a *app) printReport(r *publishReport) {
	t := &table{header: []string{"LINE", "JOB", "PROVIDER", "OUTCOME"}}
	for _, l := range r.Lines {
		line := fmt.Sprint(l.Line)
		if l.Line == 0 {
			line = "-"
		}
		out := cell{text: l.Outcome}
		switch l.Outcome {
		case outcomePublished:
			out.color = green
		case outcomeKnown:
			out.text = "already known (" + l.state() + ")"
			out.color = dim
		case outcomeConflict:
			out.text = "conflict: already known with other content"
			out.color = red
		case outcomeFailed, outcomeInvalid:
			out.text = l.Outcome + ": " + l.Error
			out.color = red
		}
		t.add(cell{text: line}, cell{text: l.ID}, cell{text: l.Provider}, out)
	}
	t.write(a.stdout, a.color)
	fmt.Fprintln(a.stdout, r.summary())
}
