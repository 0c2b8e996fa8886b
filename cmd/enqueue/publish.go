package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/reelq/reelq/internal/config"
	"github.com/reelq/reelq/internal/providers/registry"
	"github.com/reelq/reelq/internal/queue"
)

type publishFlags struct {
	provider, input, id, batch, metadata, format, out, progress string
	wait, skipInvalid, dryRun                                   bool
	timeout                                                     time.Duration
}

func (a *app) publish(ctx context.Context, args []string) error {
	var f publishFlags
	fs := newFlags("publish", "[publish] [flags] [FILE|-]", a.stderr)
	fs.StringVar(&f.provider, "provider", "", "provider of a single job given by flags (segmind, samsar, vimmerse, camb)")
	fs.StringVar(&f.input, "input", "", "input of a single job: a JSON object, or @FILE")
	fs.StringVar(&f.id, "id", "", "id of a single job (default: generated)")
	fs.StringVar(&f.batch, "batch", "", "batch name for jobs without one (default for files: derived from the file's content, so re-running the same file does not pay twice)")
	fs.StringVar(&f.metadata, "metadata", "", "metadata of a single job: a JSON object echoed in its result")
	fs.StringVar(&f.format, "format", "", "input format: jsonl, json or csv (default: guessed)")
	fs.BoolVar(&f.wait, "wait", false, "wait for every job's result; exit 1 if any failed")
	fs.StringVar(&f.out, "out", "", "with --wait, write result events as JSONL to this file instead of stdout")
	fs.DurationVar(&f.timeout, "timeout", 0, "with --wait, stop waiting after this long (0: no limit)")
	fs.BoolVar(&f.skipInvalid, "skip-invalid", false, "publish the valid jobs even if some lines are invalid")
	fs.BoolVar(&f.dryRun, "dry-run", false, "validate only; publish nothing")
	fs.StringVar(&f.progress, "progress", "auto", "progress bars: auto (when stderr is a terminal), on or off")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return &exitError{exitUsage, fmt.Errorf("publish takes one FILE, got %d", len(pos))}
	}
	jobs, err := a.collectJobs(f, pos)
	if err != nil {
		return err
	}
	if f.dryRun {
		fmt.Fprintf(a.stderr, "%d jobs valid; nothing published (--dry-run)\n", len(jobs))
		return nil
	}
	if err := a.connect(ctx); err != nil {
		return err
	}
	var follow *follower
	if f.wait {
		// Subscribe before publishing so no result can slip by.
		follow, err = newFollower(ctx, a.js, time.Now().Add(-2*time.Second))
		if err != nil {
			return err
		}
		defer follow.stop()
	}
	showBar := f.progress == "on" || (f.progress == "auto" && isTerminal(a.stderr))
	bar := newBar(len(jobs), "publishing", showBar, a.stderr)
	producer := &queue.Producer{JS: a.js, States: a.states}
	start := time.Now()
	outcomes, err := producer.Publish(ctx, jobs, func(queue.Outcome) { _ = bar.Add(1) })
	_ = bar.Finish()
	if err != nil {
		return err
	}
	counts := map[string]int{}
	var failed []string
	for _, o := range outcomes {
		counts[o.Status]++
		if o.Err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", o.ID, o.Err))
		}
	}
	elapsed := time.Since(start)
	fmt.Fprintf(a.stderr, "published %d jobs in %s (%.0f jobs/s)", counts["published"]+counts["requeued"], elapsed.Round(time.Millisecond), float64(len(jobs))/elapsed.Seconds())
	if n := counts["duplicate"]; n > 0 {
		fmt.Fprintf(a.stderr, "; %d already known (queued, running or finished), not published again", n)
	}
	if jobs[0].Batch != "" {
		fmt.Fprintf(a.stderr, "; batch %s", jobs[0].Batch)
	}
	fmt.Fprintln(a.stderr)
	if len(failed) > 0 {
		for _, l := range failed {
			fmt.Fprintln(a.stderr, "  not published:", l)
		}
		return &exitError{exitFailedJobs, fmt.Errorf("%d jobs could not be published; publishing again is safe", len(failed))}
	}
	if !f.wait {
		return nil
	}
	out := a.stdout
	if f.out != "" {
		file, err := os.Create(f.out)
		if err != nil {
			return err
		}
		defer file.Close()
		out = file
	}
	wctx := ctx
	if f.timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	return a.waitResults(wctx, follow, jobs, outcomes, out, showBar)
}

// collectJobs builds and validates the jobs from flags or a file.
func (a *app) collectJobs(f publishFlags, pos []string) ([]queue.Job, error) {
	var lines []lineJob
	var bad []lineError
	single := f.provider != "" || f.input != ""
	switch {
	case single && len(pos) > 0:
		return nil, &exitError{exitUsage, errors.New("give either a FILE or --provider/--input, not both")}
	case single:
		j := queue.Job{ID: f.id, Provider: f.provider, Batch: f.batch}
		in := f.input
		if strings.HasPrefix(in, "@") {
			b, err := os.ReadFile(in[1:])
			if err != nil {
				return nil, &exitError{exitUsage, fmt.Errorf("--input: %w", err)}
			}
			in = string(b)
		}
		if in != "" && !json.Valid([]byte(in)) {
			return nil, &exitError{exitUsage, errors.New("--input is not valid JSON")}
		}
		j.Input = json.RawMessage(in)
		if f.metadata != "" {
			if !json.Valid([]byte(f.metadata)) {
				return nil, &exitError{exitUsage, errors.New("--metadata is not valid JSON")}
			}
			j.Metadata = json.RawMessage(f.metadata)
		}
		if j.ID == "" {
			j.ID = queue.NewID()
		}
		lines = []lineJob{{1, j}}
	case len(pos) == 0:
		return nil, &exitError{exitUsage, errors.New("nothing to publish: give a FILE (or - for stdin), or --provider and --input\nrun 'enqueue -h' for help")}
	default:
		var r io.Reader
		var data []byte
		var err error
		if pos[0] == "-" {
			data, err = io.ReadAll(a.stdin)
		} else {
			data, err = os.ReadFile(pos[0])
		}
		if err != nil {
			return nil, &exitError{exitUsage, err}
		}
		r = bytes.NewReader(data)
		format := f.format
		if format == "" && strings.HasSuffix(pos[0], ".csv") {
			format = "csv"
		}
		lines, bad, err = readJobs(r, format)
		if err != nil {
			return nil, &exitError{exitUsage, fmt.Errorf("%s: %w", pos[0], err)}
		}
		batch := f.batch
		if batch == "" {
			sum := sha256.Sum256(data)
			batch = "f" + hex.EncodeToString(sum[:])[:12]
		}
		for i := range lines {
			if lines[i].Job.Batch == "" {
				lines[i].Job.Batch = batch
			}
			if lines[i].Job.ID == "" {
				lines[i].Job.ID = lines[i].Job.Batch + "-" + strconv.Itoa(lines[i].Line)
			}
		}
	}
	validators, err := registry.Validators(config.Environ(a.environ))
	if err != nil {
		return nil, err
	}
	vs := map[string]queue.Validator{}
	for n, v := range validators {
		vs[n] = v
	}
	seen := map[string]int{}
	var jobs []queue.Job
	for _, l := range lines {
		if err := l.Job.Validate(vs); err != nil {
			bad = append(bad, lineError{l.Line, err})
			continue
		}
		if prev, dup := seen[l.Job.ID]; dup {
			bad = append(bad, lineError{l.Line, fmt.Errorf("id %q repeats line %d", l.Job.ID, prev)})
			continue
		}
		seen[l.Job.ID] = l.Line
		jobs = append(jobs, l.Job)
	}
	if len(bad) > 0 {
		sortLineErrors(bad)
		for _, b := range bad {
			fmt.Fprintln(a.stderr, b.Error())
		}
		if len(jobs) == 0 {
			return nil, &exitError{exitUsage, fmt.Errorf("%d invalid job(s) and no valid one; nothing published", len(bad))}
		}
		if !f.skipInvalid {
			return nil, &exitError{exitUsage, fmt.Errorf("%d invalid job(s); nothing published (fix them, or use --skip-invalid to publish the %d valid ones)", len(bad), len(jobs))}
		}
		fmt.Fprintf(a.stderr, "skipping %d invalid jobs (--skip-invalid)\n", len(bad))
	}
	if len(jobs) == 0 {
		return nil, &exitError{exitUsage, errors.New("no jobs in input")}
	}
	return jobs, nil
}

func sortLineErrors(b []lineError) {
	slices.SortStableFunc(b, func(x, y lineError) int { return x.Line - y.Line })
}

func newBar(n int, desc string, visible bool, w io.Writer) *progressbar.ProgressBar {
	return progressbar.NewOptions(n,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetVisibility(visible),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("jobs"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
