package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/mattn/go-runewidth"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/money"
)

// errTimeout is the cause of a --timeout.
var errTimeout = errors.New("--timeout reached")

// tally sums results up.
type tally struct {
	Jobs      int                `json:"jobs"`
	Results   int                `json:"results"`
	Succeeded int                `json:"succeeded"`
	Failed    int                `json:"failed"`
	Cancelled int                `json:"cancelled"`
	Cost      map[string]float64 `json:"estimated_cost,omitempty"`
	// Problems are the jobs that did not succeed, with why.
	Problems []problem `json:"problems,omitempty"`
	// Stopped says why waiting stopped early: "timeout" or "interrupted".
	Stopped string `json:"stopped,omitempty"`
}

type problem struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	Status   string `json:"status"`
	Code     string `json:"code,omitempty"`
	Message  string `json:"message,omitempty"`
}

func (t *tally) add(r *reelq.Result) {
	t.Results++
	switch r.Status {
	case reelq.StatusSucceeded:
		t.Succeeded++
	case reelq.StatusCancelled:
		t.Cancelled++
	default:
		t.Failed++
	}
	if r.Status != reelq.StatusSucceeded {
		p := problem{ID: r.ID, Provider: r.Provider, Status: r.Status}
		if r.Error != nil {
			p.Code, p.Message = r.Error.Code, r.Error.Message
		}
		t.Problems = append(t.Problems, p)
	}
	if r.Cost != nil && r.Cost.Unit != "" {
		if t.Cost == nil {
			t.Cost = map[string]float64{}
		}
		t.Cost[r.Cost.Unit] = money.Add(t.Cost[r.Cost.Unit], r.Cost.Amount)
	}
}

func (t *tally) String() string {
	var parts []string
	for _, p := range []struct {
		n    int
		word string
	}{{t.Succeeded, "succeeded"}, {t.Failed, "failed"}, {t.Cancelled, "cancelled"}} {
		if p.n > 0 {
			parts = append(parts, commas(p.n)+" "+p.word)
		}
	}
	if len(parts) == 0 {
		parts = []string{"no results"}
	}
	s := plural(t.Jobs, "job", "jobs") + ": " + strings.Join(parts, ", ")
	if missing := t.Jobs - t.Results; missing > 0 {
		s += fmt.Sprintf(", %s not finished", commas(missing))
	}
	if len(t.Cost) > 0 {
		s += "; estimated cost " + costs(t.Cost)
	}
	return s
}

// waitResults follows the results of ids from RESULTS sequence after,
// writing each as a JSON line to out (if set), and prints the summary.
func (a *app) waitResults(ctx context.Context, c *reelq.Client, po *publishOpts, after uint64, ids []string, batch string, out io.Writer, pb *bar) error {
	wctx := ctx
	if po.timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeoutCause(ctx, po.timeout, errTimeout)
		defer cancel()
	}
	t := &tally{Jobs: len(ids)}
	var enc *json.Encoder
	if out != nil {
		enc = json.NewEncoder(out)
	}
	var werr error
	pb.phase("waiting", "results", len(ids))
	var err error
	for r, rerr := range c.WaitAll(wctx, ids, reelq.WaitOptions{From: after + 1}) {
		if rerr != nil {
			err = rerr
			break
		}
		t.add(r)
		pb.add(1)
		if enc != nil && werr == nil {
			werr = enc.Encode(r)
		}
	}
	pb.clear()
	if werr != nil {
		return fmt.Errorf("writing results: %w", werr)
	}
	switch {
	case err != nil && errors.Is(context.Cause(wctx), errTimeout):
		t.Stopped = "timeout"
	case err != nil && ctx.Err() != nil:
		t.Stopped = "interrupted"
	case err != nil:
		return fmt.Errorf("following results: %w (%d of %d results so far; the jobs keep running)", err, t.Results, t.Jobs)
	}
	a.printTally(po.output, t, batch)
	switch {
	case t.Stopped == "timeout":
		return silent(exitTimeout)
	case t.Stopped == "interrupted":
		return silent(exitInterrupted)
	case t.Failed+t.Cancelled > 0:
		return silent(exitJobsFailed)
	}
	return nil
}

// printTally prints the wait summary on stderr (stdout carries the result
// events).
func (a *app) printTally(o output, t *tally, batch string) {
	sort.Slice(t.Problems, func(i, j int) bool { return naturalLess(t.Problems[i].ID, t.Problems[j].ID) })
	if o.json() {
		b, _ := json.Marshal(t)
		fmt.Fprintln(a.stderr, string(b))
		return
	}
	const show = 20
	for i, p := range t.Problems {
		if i == show {
			fmt.Fprintf(a.stderr, "  ... and %d more (enqueue status --batch %s)\n", len(t.Problems)-show, batch)
			break
		}
		msg := p.Status
		if p.Code != "" {
			msg += ": " + p.Code
		}
		if p.Message != "" {
			msg += ": " + truncate(p.Message, 160)
		}
		fmt.Fprintf(a.stderr, "  %s (%s) %s\n", p.ID, p.Provider, msg)
	}
	fmt.Fprintln(a.stderr, t.String())
	see := "enqueue status JOB"
	if batch != "" {
		see = "enqueue status --batch " + batch
	}
	switch t.Stopped {
	case "timeout":
		fmt.Fprintf(a.stderr, "stopped waiting: --timeout reached with %d of %d results; the jobs keep running (%s)\n", t.Results, t.Jobs, see)
	case "interrupted":
		fmt.Fprintf(a.stderr, "interrupted with %d of %d results; the jobs keep running (%s)\n", t.Results, t.Jobs, see)
	}
}

// truncate makes s printable on one line of at most n terminal cells.
func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(printable(s)), " ")
	return runewidth.Truncate(s, n, "...")
}

var contentID = regexp.MustCompile(`^j[0-9a-f]{24}(-[0-9]+)?$`)

// naturalLess orders ids so that "b-2" comes before "b-10" (content ids,
// hex digests, in plain order).
func naturalLess(a, b string) bool {
	if contentID.MatchString(a) && contentID.MatchString(b) {
		return a < b
	}
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

// past is t, or now if t is after now: a time of something that has
// happened, stamped by the server a moment after now was read.
func past(t, now time.Time) time.Time {
	if t.After(now) {
		return now
	}
	return t
}

// ago renders how long ago t was, for tables.
func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return t.Local().Format("2006-01-02 15:04")
}
