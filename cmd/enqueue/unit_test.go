package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-runewidth"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/providers/all"
)

func TestBarRateIsSane(t *testing.T) {
	var w bytes.Buffer
	b := newBar(&w, true)
	b.phase("publishing", "jobs", 5000)
	defer b.clear()
	// A first window of acknowledgements arrives at once: no rate yet.
	b.add(1000)
	b.mu.Lock() // render reads what the ticker's redraw reads
	defer b.mu.Unlock()
	if s := b.render(b.start.Add(3 * time.Millisecond)); strings.Contains(s, "/s") {
		t.Errorf("rate shown after 3 ms: %q", s)
	}
	s := b.render(b.start.Add(2 * time.Second))
	if !strings.Contains(s, "1,000/5,000") || !strings.Contains(s, " 500 jobs/s") || !strings.Contains(s, "ETA 8s") {
		t.Errorf("after 2 s: %q", s)
	}
	b.mu.Unlock()
	b.phase("waiting", "results", 10)
	b.mu.Lock()
	if b.n != 0 || !strings.HasPrefix(b.render(b.start), "waiting") {
		t.Errorf("a new phase starts from zero: %q", b.render(b.start))
	}
	off := newBar(&w, false)
	w.Reset()
	off.phase("x", "jobs", 1)
	off.add(1)
	off.clear()
	if w.Len() != 0 {
		t.Errorf("a bar off a terminal writes %q", w.String())
	}
}

func TestParseMaxCost(t *testing.T) {
	for in, want := range map[string]map[string]float64{
		"500usd":              {"usd": 500},
		"500usd,20000credits": {"usd": 500, "credits": 20000},
		"$1,000,20000credits": {"usd": 1000, "credits": 20000},
		"1,000usd, 5credits":  {"usd": 1000, "credits": 5},
	} {
		got, err := parseMaxCost([]string{in})
		if err != nil || len(got) != len(want) {
			t.Errorf("%q: %v %v", in, got, err)
			continue
		}
		for u, v := range want {
			if got[u] != v {
				t.Errorf("%q: %s = %g, want %g", in, u, got[u], v)
			}
		}
	}
	if _, err := parseMaxCost([]string{"lots"}); err == nil || exitCode(err) != exitUsage {
		t.Errorf("bad --max-cost: %v", err)
	}
}

func TestDefaultBatch(t *testing.T) {
	for in, want := range map[string]string{
		"examples/demo.jsonl":      "demo",
		"/tmp/Spring shoot.v2.csv": "Spring_shoot_v2",
		"-":                        "",
		"jobs":                     "jobs",
	} {
		if got := defaultBatch(in); got != want {
			t.Errorf("defaultBatch(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTableAlignsColouredCells(t *testing.T) {
	var w bytes.Buffer
	tb := &table{header: []string{"A", "B"}}
	tb.add(cell{text: "held", color: yellow}, cell{text: "x"})
	tb.add(cell{text: "queued"}, cell{text: "y"})
	tb.write(&w, true)
	plain := strings.NewReplacer("\033[33m", "", "\033[0m", "", "\033[1m", "").Replace(w.String())
	if plain != "A       B\nheld    x\nqueued  y\n" {
		t.Errorf("table:\n%q", plain)
	}
}

func TestHeldWarning(t *testing.T) {
	if w := heldWarning(inspect.ProviderStats{Provider: "samsar"}); w != "" {
		t.Errorf("no held job: warning %q", w)
	}
	w := heldWarning(inspect.ProviderStats{Provider: "samsar", Held: 2})
	for _, want := range []string{"2 jobs on samsar held", "enqueue resolve JOB --task ID"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q does not say %q", w, want)
		}
	}
}

// A rate limiter that cannot write its state is a warning naming the
// provider, the bucket, the server's error and the reporting worker.
func TestLimiterWarning(t *testing.T) {
	now := time.Now()
	if w := limiterWarning(inspect.ProviderStats{Provider: "samsar"}, now); w != "" {
		t.Errorf("no alarm: warning %q", w)
	}
	w := limiterWarning(inspect.ProviderStats{Provider: "samsar", Limiter: &inspect.LimiterAlarm{
		Bucket: "reelq_ratelimit", Error: "stream store EOF", Since: now.Add(-12 * time.Second), By: "w-1"}}, now)
	for _, want := range []string{"samsar:", "bucket reelq_ratelimit", "since 12s ago", "w-1", "stream store EOF", "no call to samsar goes out"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q does not say %q", w, want)
		}
	}
}

// A time stamped by the server just after the client read its clock is
// "0s ago", not "in 0s" (stats' UPDATED column read "in 0s").
func TestAgoOfAServerTimeJustAhead(t *testing.T) {
	now := time.Now()
	if got := ago(past(now.Add(300*time.Millisecond), now), now); got != "0s ago" {
		t.Errorf("got %q, want 0s ago", got)
	}
	if got := ago(now.Add(3*time.Second), now); got != "in 3s" {
		t.Errorf("a future time (next probe): got %q, want in 3s", got)
	}
}

// Text from a provider cannot drive the terminal: escape sequences,
// other control characters, bidirectional overrides and invalid UTF-8 in
// a status note are printed as visible escapes. (Before, a failure
// message with "\x1b]0;...\x07" retitled the operator's terminal and
// "\x1b[2J" cleared it.)
func TestStatusPrintsNoControlCharacters(t *testing.T) {
	var w bytes.Buffer
	a := &app{stdout: &w}
	msg := "boom\x1b[2J\x1b]0;pwned\x07 \u202eevil\xff\r\nnext"
	a.printStatus([]jobStatus{
		{ID: "j1", Provider: "samsar", Phase: reelq.PhaseFinished, Status: reelq.StatusFailed, Note: "provider_failed: " + msg},
		{ID: "j2", Provider: "samsar", Phase: reelq.PhaseHeld, HeldReason: msg, Note: "held: " + msg},
	}, false)
	out := w.String()
	if strings.ContainsAny(out, "\x1b\x07\r\u202e") || !utf8.ValidString(out) {
		t.Errorf("status printed control characters:\n%q", out)
	}
	for _, want := range []string{`boom\x1b[2J\x1b]0;pwned\x07 \u202eevil\xff next`} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not show %q:\n%s", want, out)
		}
	}
}

// A CSV cell whose quote is never closed takes the rows after it into
// itself; the error names every line it took, so no row is lost unsaid
// (with --skip-invalid, the only report of those rows).
func TestCSVUnterminatedQuoteNamesTheRowsItSwallows(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"to the end", "provider,input.prompt\nsegmind,\"a cat\nsegmind,a dog\nsegmind,a bird\n", "lines 2-4: CSV: the quote of a cell in the row of line 2 is never closed: lines 2 to 4 were read as one row"},
		{"to a stray quote", "provider,input.prompt\nsegmind,\"a cat\nsegmind,a dog\nsegmind,a \"bird\"\nsegmind,a fish\n", "lines 2-4: CSV:"},
	} {
		jobs, bad, err := readJobs(strings.NewReader(tc.data), "x.csv", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) != 1 || !strings.HasPrefix(bad[0].String(), tc.want) {
			t.Errorf("%s: errors %v, want one starting %q", tc.name, bad, tc.want)
		}
		for _, j := range jobs {
			if j.Line <= 4 {
				t.Errorf("%s: line %d read as a job: %s", tc.name, j.Line, j.Job.Input)
			}
		}
	}
	// A quoted cell over several lines, closed, is one row as before.
	jobs, bad, err := readJobs(strings.NewReader("provider,input.prompt\nsegmind,\"a cat\non two lines\"\nsegmind,a dog\n"), "x.csv", "")
	if err != nil || len(bad) != 0 || len(jobs) != 2 || jobs[1].Line != 4 {
		t.Errorf("multi-line cell: %v %v %v", jobs, bad, err)
	}
}

// Tables align by terminal cells: a CJK character or an emoji takes two
// cells, a combining accent none; truncated text fits its cells.
func TestTablesAlignWideText(t *testing.T) {
	tb := &table{header: []string{"JOB", "PROMPT", "STATUS"}}
	tb.addText("a", "夕暮れの灯台", "ok")
	tb.addText("b", "🎬🎥 a film", "ok")
	tb.addText("c", "cafe\u0301 au lait", "ok")
	tb.addText("d", "plain ascii prompt", "ok")
	var out bytes.Buffer
	tb.write(&out, false)
	col := -1
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		i := strings.LastIndex(l, " ")
		if c := runewidth.StringWidth(l[:i+1]); col == -1 {
			col = c
		} else if c != col {
			t.Errorf("the last column starts at cell %d, not %d:\n%s", c, col, out.String())
		}
	}
	for _, s := range []string{"夕暮れの灯台を見下ろす丘の上の長い長いプロンプト", "🎬🎥🎞📽 a long film about film"} {
		if got := truncate(s, 11); runewidth.StringWidth(got) > 11 || !strings.HasSuffix(got, "...") {
			t.Errorf("truncate(%q, 11) = %q: %d cells", s, got, runewidth.StringWidth(got))
		}
	}
}

// enqueue providers lists every provider of the list, as the environment
// configures it, without a server: enabled by a key, limits from the
// variables or the Spec, and the recovery that decides pay_once.
func TestProvidersCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	keyed, rated, held := all.Specs[0], all.Specs[1], all.Specs[len(all.Specs)-1]
	environ := []string{keyed.Kind.Prefix() + "API_KEY=k", rated.Kind.Prefix() + "RATE=2", held.Kind.Prefix() + "AMBIGUOUS=hold"}
	err := run(context.Background(), []string{"providers", "-o", "json"}, environ, nil, &out, &errOut)
	if err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	var got []providerView
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all.Specs) {
		t.Fatalf("%d providers, want %d", len(got), len(all.Specs))
	}
	for i, s := range all.Specs {
		v := got[i]
		if v.Name != s.Name() || v.EnvPrefix != s.Kind.Prefix() || v.Recovery != string(s.Recovery) || v.Unit != s.Kind.Unit || v.PayOnce != s.Recovery.PayOnce() {
			t.Errorf("%+v does not show the Spec of %s", v, s.Name())
		}
		if v.Enabled != (v.Name == keyed.Name()) {
			t.Errorf("%s enabled %v; only %s has a key", v.Name, v.Enabled, keyed.Name())
		}
		switch v.Name {
		case rated.Name():
			if v.Rate != 2 {
				t.Errorf("%s rate %g, want %sRATE 2", v.Name, v.Rate, rated.Kind.Prefix())
			}
		case held.Name():
			if v.Ambiguous != "hold" {
				t.Errorf("%s ambiguous %q, want %sAMBIGUOUS hold", v.Name, v.Ambiguous, held.Kind.Prefix())
			}
		default:
			if v.Rate != s.Limits.Rate || v.MaxInflight != s.Limits.MaxInflight {
				t.Errorf("%s: rate %g cap %d, want the Spec's %+v", v.Name, v.Rate, v.MaxInflight, s.Limits)
			}
		}
	}
}

// status shows the outputs that failed their media check, with the
// code, the words and the paid retries: a failed run (invalid_output)
// and a run whose policy accepted the output.
func TestStatusShowsFailedMediaChecks(t *testing.T) {
	ve := &reelq.ValidationError{Code: reelq.ValidationNotMedia, Message: "the body is an HTML page, not media"}
	failed := &reelq.Result{ID: "v1", Status: reelq.StatusFailed, Outputs: []reelq.Output{{URL: "https://x/a.mp4", ValidationError: ve}},
		Error: &reelq.ErrorInfo{Code: reelq.CodeInvalidOutput, Message: "output 0: not_media: the body is an HTML page, not media"}}
	accepted := &reelq.Result{ID: "v2", Status: reelq.StatusSucceeded, Outputs: []reelq.Output{{URL: "https://x/b.mp4"}, {URL: "https://x/c.mp4", ValidationError: ve}}}
	jobs := []jobStatus{
		statusOf(&reelq.JobState{ID: "v1", Provider: "samsar", Phase: reelq.PhaseFinished, Run: 1, OutputRetries: 1, Result: mustJSON(t, failed),
			OutputChecks: []string{"output 0: truncated: the file ends early"}}, false, false),
		statusOf(&reelq.JobState{ID: "v2", Provider: "samsar", Phase: reelq.PhaseFinished, Run: 1, Result: mustJSON(t, accepted)}, false, false),
	}
	var w bytes.Buffer
	(&app{stdout: &w}).printStatus(jobs, false)
	out := w.String()
	for _, want := range []string{"invalid_output: output 0: not_media", "v1: 1 output failed the media check (after 1 retry, each paid):",
		"  output 0: not_media: the body is an HTML page, not media", "accepted, output 1: not_media", "v2: 1 output failed the media check:",
		"v1: submission 1 failed the media check and was paid again: output 0: truncated: the file ends early"} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not show %q:\n%s", want, out)
		}
	}
	if c := jobs[1].Checks; len(c) != 1 || c[0].Output != 1 || c[0].Code != reelq.ValidationNotMedia {
		t.Errorf("v2 validation_errors %+v, want output 1's", c)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
