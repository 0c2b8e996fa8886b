package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

// cli runs enqueue against a test environment.
type cli struct {
	t   *testing.T
	env *reelqtest.Env
	url string
}

func newCLI(t *testing.T, knobs map[string]providersim.Knobs) cli {
	t.Helper()
	env := reelqtest.New(t, knobs)
	return cli{t: t, env: env, url: env.Server.ClientURL()}
}

// res is one run's outcome.
type res struct {
	code           int
	stdout, stderr string
}

func (r res) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func (c cli) run(args ...string) res {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.runCtx(ctx, "", args...)
}

// runCtx runs enqueue with ctx and stdin, as main would (an error's
// text goes to stderr, as main prints it).
func (c cli) runCtx(ctx context.Context, stdin string, args ...string) res {
	c.t.Helper()
	var out, errb bytes.Buffer
	err := run(ctx, args, []string{"NATS_URL=" + c.url}, strings.NewReader(stdin), &out, &errb)
	if msg := errorText(err); msg != "" {
		errb.WriteString("enqueue: " + msg + "\n")
	}
	return res{exitCode(err), out.String(), errb.String()}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// samsar is a valid Samsar job line whose prompt carries tag (the
// simulator counts submissions per prompt).
func samsar(tag string, duration int) string {
	return fmt.Sprintf(`{"provider":"samsar","input":{"prompt":"a kite over dunes %s","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":%d}}`, tag, duration)
}

func samsarPrompt(tag string) string { return "a kite over dunes " + tag }

func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

func mustNotContain(t *testing.T, what, got string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(got, b) {
			t.Errorf("%s contains %q:\n%s", what, b, got)
		}
	}
}

func jobsInQueue(t *testing.T, env *reelqtest.Env) uint64 {
	t.Helper()
	return natstest.StreamMsgs(t, env.JS, wire.StreamJobs)
}

// submissions is the simulator's paid submissions of provider per prompt.
func submissions(env *reelqtest.Env, provider string) map[string]int {
	return env.Sim.Stats(0)[provider].Submissions
}

func TestInvalidLinesAreNamedAsAPersonReadsThem(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	long := strings.Repeat("x", 501)
	f := writeFile(t, "bad.jsonl", lines(
		samsar("ok", 5),
		`{"provider":"samsar","input":{"prompt":"p","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":"abc"}}`,
		`{"provider":"samsar","input":{"prompt":"`+long+`","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}}`,
		`{"provider":"samsar","input":{"promt":"p","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}}`,
		`{"provider":"samsar","inputs":{}}`,
		`["not","an","object"]`,
		`{"provider":"samsar","input":{"prompt":"`+strings.Repeat("y", 17<<20)+`"}}`,
		`{"provider":"runway","input":{}}`,
		`{"provider":"samsar","input":{"prompt":"p","image_model":"FLUX1.1PRO","video_model":"SORA","duration":5}}`,
	))
	r := c.run(f)
	if r.code != exitUsage {
		t.Fatalf("want exit %d:\n%s", exitUsage, r)
	}
	mustContain(t, "stderr", r.stderr,
		`line 2: field "duration" must be a number, not a string`,
		`line 3: input.prompt is 501 characters; the limit is 500`,
		`line 4: input: unknown field "promt"`,
		`line 5: unknown field "inputs"`,
		`line 6: a JSON array, not a job object`,
		"\nline 7 is longer than the 16 MiB line limit",
		`line 8: unknown provider "runway"`,
		`line 9: input.video_model "SORA" is not one of`,
		"8 invalid jobs; nothing published (fix them, or --skip-invalid publishes the 1 valid one)",
	)
	mustNotContain(t, "stderr", r.stderr, "bufio", "Go struct", "Go value", "json:", "reelq.Job", "validate:", "invalid input", "invalid job:")
	if n := jobsInQueue(t, c.env); n != 0 {
		t.Errorf("JOBS holds %d messages; nothing may be published", n)
	}
	// A single job from flags is named "job".
	r = c.run("--provider", "samsar", "--input", `{"prompt":"p"}`)
	if r.code != exitUsage || !strings.Contains(r.stderr, "job: input.image_model is required") {
		t.Errorf("flags job:\n%s", r)
	}
}

func TestFormatDetection(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	// A .jsonl file whose first line is a comment is JSONL.
	commented := writeFile(t, "commented.jsonl", lines("# scenes for the trailer", samsar("one", 5), "", "# the end", samsar("two", 5)))
	r := c.run("--dry-run", commented)
	if r.code != 0 || !strings.Contains(r.stdout, "2 jobs: 100 credits on samsar") {
		t.Errorf("commented JSONL:\n%s", r)
	}
	// Without an extension, a '#' first line is JSONL too.
	r = c.run("--dry-run", writeFile(t, "jobs", lines("# comment", samsar("three", 5))))
	if r.code != 0 || !strings.Contains(r.stdout, "1 job: 50 credits on samsar") {
		t.Errorf("commented, no extension:\n%s", r)
	}
	// Binary garbage, and prose, are no job file.
	garbage := writeFile(t, "jobs.jsonl", "\x00\x01\xff\xfe PK\x03\x04 garbage")
	r = c.run(garbage)
	if r.code != exitUsage || !strings.Contains(r.stderr, garbage+" is not JSONL, JSON or CSV") {
		t.Errorf("garbage:\n%s", r)
	}
	prose := writeFile(t, "notes.txt", "Dear team,\nplease render these.\n")
	r = c.run(prose)
	if r.code != exitUsage || !strings.Contains(r.stderr, prose+" is not JSONL, JSON or CSV") {
		t.Errorf("prose:\n%s", r)
	}
	// --format overrides: the same prose read as JSONL names its lines.
	r = c.run("--format", "jsonl", prose)
	if r.code != exitUsage || !strings.Contains(r.stderr, "line 1: not valid JSON") {
		t.Errorf("--format jsonl:\n%s", r)
	}
	// A JSON array names the line each job starts on.
	arr := writeFile(t, "jobs.json", "[\n  "+samsar("four", 5)+",\n  {\"provider\": 1}\n]\n")
	r = c.run("--dry-run", arr)
	if r.code != exitUsage || !strings.Contains(r.stderr, `line 3: field "provider" must be a string`) {
		t.Errorf("JSON array:\n%s", r)
	}
	// CSV, with input.<field> columns; a bad cell is named by line.
	csvFile := writeFile(t, "shots.csv", "provider,batch,priority,input.prompt,input.image_model,input.video_model,input.duration,metadata\n"+
		"samsar,,high,\"a ferry, at dawn\",FLUX1.1PRO,LUMA,5,\"{\"\"row\"\":1}\"\n"+
		"samsar,,,a market,FLUX1.1PRO,LUMA,abc,\n")
	r = c.run("--dry-run", csvFile)
	if r.code != exitUsage || !strings.Contains(r.stderr, `line 3: field "duration" must be a number, not a string`) {
		t.Errorf("CSV:\n%s", r)
	}
	r = c.run("--dry-run", "--skip-invalid", csvFile)
	if r.code != 0 || !strings.Contains(r.stdout, "1 job: 50 credits on samsar") || !strings.Contains(r.stdout, "1 invalid job would be skipped") {
		t.Errorf("CSV dry run with --skip-invalid:\n%s", r)
	}
	r = c.run(writeFile(t, "cols.csv", "provider,colour\nsamsar,red\n"))
	if r.code != exitUsage || !strings.Contains(r.stderr, `unknown column "colour"`) {
		t.Errorf("unknown CSV column:\n%s", r)
	}
}

func fast() map[string]providersim.Knobs {
	return map[string]providersim.Knobs{
		"samsar": {CompleteAfter: providersim.Duration(20 * time.Millisecond)},
		"camb":   {CompleteAfter: providersim.Duration(20 * time.Millisecond), FailRate: 1},
	}
}

func startWorker(c cli, providers ...string) {
	c.t.Helper()
	ps := map[string]reelqtest.Settings{}
	for _, p := range providers {
		ps[p] = reelqtest.Settings{}
	}
	c.env.StartWorker(reelqtest.WorkerOptions{Providers: ps})
}

func TestContentIDsNeverPayTwiceNorDropAJob(t *testing.T) {
	t.Parallel()
	c := newCLI(t, fast())
	startWorker(c, "samsar")
	dir := t.TempDir()
	f := filepath.Join(dir, "shots.jsonl")
	write := func(ls ...string) {
		if err := os.WriteFile(f, []byte(lines(ls...)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(samsar("a", 5), samsar("b", 5), samsar("a", 5)) // two identical lines are two jobs
	r := c.run("--wait", f)
	if r.code != 0 || !strings.Contains(r.stderr, "published 3 of 3 jobs (batch shots)") || !strings.Contains(r.stderr, "3 jobs: 3 succeeded") {
		t.Fatalf("first run:\n%s", r)
	}
	if got := strings.Count(r.stdout, "\n"); got != 3 {
		t.Errorf("first run printed %d result lines, want 3:\n%s", got, r.stdout)
	}
	// The same file again: nothing published, the results reported.
	r = c.run("--wait", f)
	if r.code != 0 || !strings.Contains(r.stderr, "published 0 of 3 jobs") || !strings.Contains(r.stderr, "3 already known") || strings.Count(r.stdout, "\n") != 3 {
		t.Fatalf("re-run:\n%s", r)
	}
	// A line inserted in the middle: only it is published.
	write(samsar("a", 5), samsar("new", 5), samsar("b", 5), samsar("a", 5))
	r = c.run("--wait", f)
	if r.code != 0 || !strings.Contains(r.stderr, "published 1 of 4 jobs") || !strings.Contains(r.stderr, "3 already known") {
		t.Fatalf("inserted line:\n%s", r)
	}
	// A bad line skipped, then fixed: only the fixed line is published.
	bad := `{"provider":"samsar","input":{"prompt":"a kite over dunes fixed","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":"5"}}`
	write(samsar("a", 5), samsar("new", 5), bad, samsar("b", 5), samsar("a", 5))
	r = c.run("--skip-invalid", f)
	if r.code != 0 || !strings.Contains(r.stderr, `line 3: field "duration" must be a number`) || !strings.Contains(r.stdout, "published 0 of 4 jobs") {
		t.Fatalf("--skip-invalid:\n%s", r)
	}
	mustContain(t, "per-line report", r.stdout, "already known (finished: succeeded)", "invalid: field \"duration\"")
	write(samsar("a", 5), samsar("new", 5), samsar("fixed", 5), samsar("b", 5), samsar("a", 5))
	r = c.run("--wait", f)
	if r.code != 0 || !strings.Contains(r.stderr, "published 1 of 5 jobs") || !strings.Contains(r.stderr, "4 already known") {
		t.Fatalf("fixed line:\n%s", r)
	}
	// Reordered lines: nothing new.
	write(samsar("b", 5), samsar("a", 5), samsar("fixed", 5), samsar("a", 5), samsar("new", 5))
	r = c.run(f)
	if r.code != 0 || !strings.Contains(r.stdout, "published 0 of 5 jobs") {
		t.Fatalf("reordered:\n%s", r)
	}
	want := map[string]int{samsarPrompt("a"): 2, samsarPrompt("b"): 1, samsarPrompt("new"): 1, samsarPrompt("fixed"): 1}
	got := submissions(c.env, "samsar")
	for p, n := range want {
		if got[p] != n {
			t.Errorf("%q submitted %d times, want %d (all: %v)", p, got[p], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("submissions %v, want %v", got, want)
	}
}

func TestConflictingIDIsRefusedNamingLineAndID(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	r := c.run("--provider", "samsar", "--id", "shot-1", "--input", `{"prompt":"first","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)
	if r.code != 0 {
		t.Fatalf("publish:\n%s", r)
	}
	f := writeFile(t, "edit.jsonl", lines(
		samsar("other", 5),
		`{"id":"shot-1","provider":"samsar","input":{"prompt":"second","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}}`,
	))
	r = c.run(f)
	if r.code != exitUsage {
		t.Fatalf("want exit %d:\n%s", exitUsage, r)
	}
	mustContain(t, "stderr", r.stderr, "line 2: job shot-1 is already known with different content (provider, input or metadata); give it another id")
	mustContain(t, "stdout", r.stdout, "published 1 of 2 jobs")
	// The same id with the same content is known, not a conflict.
	r = c.run("--provider", "samsar", "--id", "shot-1", "--input", `{"prompt":"first","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)
	if r.code != 0 || !strings.Contains(r.stdout, "already known (queued)") {
		t.Errorf("same content:\n%s", r)
	}
}

func TestDryRunTotalsAndMaxCost(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	f := writeFile(t, "mix.jsonl", lines(
		samsar("a", 5), samsar("b", 10), samsar("c", 15),
		`{"provider":"vimmerse","input":{"visibility_status":"0"}}`,
	))
	r := c.run("--dry-run", f)
	if r.code != 0 {
		t.Fatalf("dry run:\n%s", r)
	}
	mustContain(t, "dry run", r.stdout, "4 jobs: 300 credits on samsar + 100 credits on vimmerse (basis: e.g. 10 credits/s x 5 s;", "; 0 without a price", "nothing published")
	r = c.run("--dry-run", "-o", "json", f)
	var dry struct {
		Estimate estimate
	}
	if err := json.Unmarshal([]byte(r.stdout), &dry); err != nil || dry.Estimate.Total["credits"] != 400 || dry.Estimate.Jobs != 4 {
		t.Errorf("dry run -o json: %v %+v\n%s", err, dry, r)
	}
	r = c.run("--max-cost", "350credits", f)
	if r.code != exitUsage || !strings.Contains(r.stderr, "the estimate of 400 credits exceeds --max-cost 350 credits") {
		t.Errorf("--max-cost:\n%s", r)
	}
	r = c.run("--max-cost", "$10,1000credits", f) // a dollar limit binds no credit job
	if r.code != 0 || !strings.Contains(r.stdout, "published 4 of 4 jobs") {
		t.Errorf("--max-cost within:\n%s", r)
	}
	if n := jobsInQueue(t, c.env); n != 4 {
		t.Errorf("JOBS holds %d, want 4 (the refused run publishes nothing)", n)
	}
}

// TestDryRunSixProviders checks the estimate of a file mixing every
// provider: each provider's total in its unit, a total per unit, and the
// hub job whose model has no price counted as without a price.
func TestDryRunSixProviders(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	f := writeFile(t, "six.jsonl", lines(
		samsar("a", 5),
		`{"provider":"segmind","input":{}}`,
		`{"provider":"vimmerse","input":{"visibility_status":"0"}}`,
		`{"provider":"camb","input":{"text":"Once upon a time.","source_language":1}}`,
		`{"provider":"fal","input":{"model":"fal-ai/kling-video/v2.1/master/text-to-video","input":{"prompt":"a kite","duration":"10"}}}`,
		`{"provider":"replicate","input":{"model":"kwaivgi/kling-v2.5-turbo-pro","input":{"prompt":"a kite","duration":5}}}`,
		`{"provider":"replicate","input":{"model":"minimax/video-01","input":{"prompt":"a kite"}}}`,
	))
	r := c.run("--dry-run", f)
	if r.code != 0 {
		t.Fatalf("dry run:\n%s", r)
	}
	mustContain(t, "dry run", r.stdout, "7 jobs: 50 credits on samsar + $2.41 on segmind + 100 credits on vimmerse + 1 credits on camb + $2.80 on fal + $0.35 on replicate (basis: ",
		"$0.28/s x 10 s of fal-ai/kling-video/v2.1/master/text-to-video", "$0.07/s x 5 s of kwaivgi/kling-v2.5-turbo-pro", "; in all 151 credits + $5.56; 1 without a price", "nothing published")
	r = c.run("--dry-run", "-o", "json", f)
	var dry struct {
		Estimate estimate
	}
	if err := json.Unmarshal([]byte(r.stdout), &dry); err != nil {
		t.Fatalf("dry run -o json: %v\n%s", err, r)
	}
	if got := dry.Estimate.Total; len(got) != 2 || got["credits"] != 151 || got["usd"] != 5.5566 || dry.Estimate.Unpriced != 1 || len(dry.Estimate.Providers) != 6 {
		t.Errorf("totals %v, unpriced %d, %d providers; want 151 credits and $5.5566, 1 unpriced, 6 providers\n%s", got, dry.Estimate.Unpriced, len(dry.Estimate.Providers), r)
	}
}

func TestWaitFollowsFromTheSequenceTakenBeforePublishing(t *testing.T) {
	t.Parallel()
	c := newCLI(t, fast())
	startWorker(c, "samsar", "camb")
	// Results stored before the run: one of a job in the file, one of a
	// job that is not.
	old := reelq.Job{Provider: "samsar", Input: []byte(`{"prompt":"a kite over dunes old","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)}
	other := reelq.Job{ID: "other-1", Provider: "samsar", Input: []byte(`{"prompt":"unrelated","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)}
	c.env.Enqueue(old, other)
	c.env.Results(2, 30*time.Second)

	out := filepath.Join(t.TempDir(), "results.jsonl")
	f := writeFile(t, "run.jsonl", lines(samsar("old", 5), samsar("new1", 5), samsar("new2", 5),
		`{"provider":"camb","input":{"text":"Once upon a time.","source_language":1},"metadata":{"k":"v"}}`))
	r := c.run("--wait", "--out", out, f)
	if r.code != exitJobsFailed {
		t.Fatalf("want exit %d (the camb job fails):\n%s", exitJobsFailed, r)
	}
	mustContain(t, "stderr", r.stderr, "published 3 of 4 jobs", "1 already known", "4 jobs: 3 succeeded, 1 failed; estimated cost 151 credits", "(camb) failed: provider_failed")
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var res reelq.Result
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			t.Fatalf("result line %q: %v", l, err)
		}
		seen[res.ID]++
		if res.Provider == "camb" && (res.Status != reelq.StatusFailed || string(res.Metadata) != `{"k":"v"}`) {
			t.Errorf("camb result %+v", res)
		}
	}
	if len(seen) != 4 || seen["other-1"] != 0 {
		t.Errorf("results by id %v, want the file's 4 jobs once each", seen)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s reported %d times", id, n)
		}
	}
	if r.stdout != "" {
		t.Errorf("with --out, stdout holds %q", r.stdout)
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	vimmerse := func(tag string) string {
		return fmt.Sprintf(`{"provider":"vimmerse","input":{"visibility_status":"0","title":%q}}`, tag)
	}
	// Timeout: no worker runs vimmerse.
	r := c.run("--wait", "--timeout", "200ms", writeFile(t, "slow.jsonl", lines(vimmerse("t1"))))
	if r.code != exitTimeout || !strings.Contains(r.stderr, "--timeout reached with 0 of 1 results; the jobs keep running (enqueue status --batch slow)") {
		t.Errorf("timeout:\n%s", r)
	}
	// Interrupted while waiting: the context ends once the job is stored.
	sub, err := c.env.NC.SubscribeSync("jobs.vimmerse.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.env.NC.Flush(); err != nil { // the server has the subscription
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	seen := make(chan struct{})
	go func() {
		if _, err := sub.NextMsg(30 * time.Second); err == nil {
			close(seen)
			cancel()
		}
	}()
	r = c.runCtx(ctx, "", "--wait", writeFile(t, "int.jsonl", lines(vimmerse("t2"))))
	cancel()
	select {
	case <-seen:
	default:
		t.Error("the job was never published")
	}
	if r.code != exitInterrupted || !strings.Contains(r.stderr, "interrupted") || strings.Contains(r.stderr, "context canceled") {
		t.Errorf("interrupt:\n%s", r)
	}
	// Interrupted before anything happened.
	done, stop := context.WithCancel(context.Background())
	stop()
	if r = c.runCtx(done, "", writeFile(t, "x.jsonl", lines(vimmerse("t3")))); r.code != exitInterrupted {
		t.Errorf("cancelled context:\n%s", r)
	}
	// Bad usage.
	for _, args := range [][]string{{"--no-such-flag"}, {"status"}, {"pause"}, {"pause", "runway"}, {"results", "--provider", "runway"},
		{"--out", "x", "f.jsonl"}, {"budget", "set", "--batch", "b", "lots"}, {"stats", "-o", "yaml"}} {
		if r := c.run(args...); r.code != exitUsage {
			t.Errorf("%q: want exit %d:\n%s", args, exitUsage, r)
		}
	}
	// Unknown job.
	if r := c.run("status", "nope"); r.code != exitFailure || !strings.Contains(r.stderr, "nope: unknown job") {
		t.Errorf("unknown job:\n%s", r)
	}
	// NATS unreachable; streams missing.
	bad := cli{t: t, env: c.env, url: "nats://127.0.0.1:1"}
	if r := bad.run("stats"); r.code != exitUnavailable || !strings.Contains(r.stderr, "could not reach NATS") {
		t.Errorf("unreachable:\n%s", r)
	}
	bare := cli{t: t, env: c.env, url: natstest.Server(t).ClientURL()}
	if r := bare.run("stats"); r.code != exitUnavailable || !strings.Contains(r.stderr, "has no reelq streams: start a worker first") {
		t.Errorf("no streams:\n%s", r)
	}
}

func TestCommandsHelpCompletionVersion(t *testing.T) {
	t.Parallel()
	c := cli{t: t, url: "nats://127.0.0.1:1"} // none of these connects
	r := c.run("statsx")
	if r.code != exitUsage || !strings.Contains(r.stderr, `unknown command "statsx" for "enqueue"`) || !strings.Contains(r.stderr, "Did you mean this?\n\tstats") {
		t.Errorf("statsx:\n%s", r)
	}
	if r := c.run("stauts", "x"); r.code != exitUsage || !strings.Contains(r.stderr, "\tstatus\n") {
		t.Errorf("stauts x: want exit %d:\n%s", exitUsage, r)
	}
	r = c.run("--help")
	mustContain(t, "--help", r.stdout, "Exit codes:", "130", "NATS_URL", "status", "completion", "--dry-run")
	for _, args := range [][]string{{"help", "cancel"}, {"cancel", "--help"}} {
		r := c.run(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "enqueue cancel JOB... | --batch B") {
			t.Errorf("%q:\n%s", args, r)
		}
	}
	for shell, want := range map[string]string{"bash": "__start_enqueue", "zsh": "#compdef enqueue", "fish": "complete -c enqueue"} {
		r := c.run("completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: lacks %q:\n%s", shell, want, r)
		}
	}
	r = c.run("__complete", "pause", "")
	mustContain(t, "pause completion", r.stdout, "samsar", "vimmerse")
	for _, arg := range []string{"--version", "version"} {
		if r = c.run(arg); r.code != 0 || r.stdout != "enqueue "+buildinfo.Version()+"\n" {
			t.Errorf("%s:\n%s", arg, r)
		}
	}
}

// parseJSON fails the test unless s is one JSON value of v's shape.
func parseJSON(t *testing.T, what, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Errorf("%s -o json does not parse: %v\n%s", what, err, s)
	}
}

func TestJSONOutputParses(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	r := c.run("-o", "json", "--batch", "b1", writeFile(t, "j.jsonl", lines(samsar("a", 5), samsar("b", 5))))
	var rep publishReport
	parseJSON(t, "publish", r.stdout, &rep)
	if r.code != 0 || rep.Published != 2 || len(rep.Lines) != 2 || rep.Lines[0].Outcome != outcomePublished || rep.Batch != "b1" {
		t.Errorf("publish -o json: %+v\n%s", rep, r)
	}
	var st []jobStatus
	parseJSON(t, "status", c.run("status", "--batch", "b1", "-o", "json").stdout, &st)
	if len(st) != 2 || st[0].Phase != reelq.PhaseQueued {
		t.Errorf("status -o json: %+v", st)
	}
	var pl pauseLine
	parseJSON(t, "pause", c.run("pause", "samsar", "--reason", "review", "-o", "json").stdout, &pl)
	if !pl.Paused || !pl.Changed {
		t.Errorf("pause -o json: %+v", pl)
	}
	var sv struct {
		Providers []inspect.ProviderStats `json:"providers"`
		Batches   []inspect.BatchStats    `json:"batches"`
	}
	parseJSON(t, "stats", c.run("stats", "-o", "json").stdout, &sv)
	if len(sv.Providers) != len(reelq.Providers) || len(sv.Batches) != 1 || sv.Batches[0].Enqueued != 2 {
		t.Errorf("stats -o json: %+v", sv)
	}
	parseJSON(t, "resume", c.run("resume", "samsar", "-o", "json").stdout, &pl)
	if pl.Paused || !pl.Changed {
		t.Errorf("resume -o json: %+v", pl)
	}
	var bl reelq.BudgetLimit
	parseJSON(t, "budget set", c.run("budget", "set", "--batch", "b1", "800usd", "-o", "json").stdout, &bl)
	var bs []inspect.BudgetStatus
	parseJSON(t, "budget list", c.run("budget", "list", "-o", "json").stdout, &bs)
	if len(bs) != 1 || bs[0].Amount != 800 || bs[0].Unit != "usd" || bs[0].Name != "b1" {
		t.Errorf("budget list -o json: %+v", bs)
	}
	var dl []dlqLine
	parseJSON(t, "dlq list", c.run("dlq", "list", "-o", "json").stdout, &dl)
	var rl []retryLine
	r = c.run("retry", st[0].ID, "-o", "json")
	parseJSON(t, "retry", r.stdout, &rl)
	if r.code != exitFailure || len(rl) != 1 || !strings.Contains(rl[0].Error, "not finished") {
		t.Errorf("retry of a queued job: %+v\n%s", rl, r)
	}
	var cr cancelReport
	parseJSON(t, "cancel", c.run("cancel", "--batch", "b1", "-o", "json").stdout, &cr)
	if cr.Requested != 2 {
		t.Errorf("cancel -o json: %+v", cr)
	}
	var dry struct{ Estimate estimate }
	parseJSON(t, "dry run", c.run("--dry-run", "-o", "json", "--provider", "samsar", "--input", `{"prompt":"p","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":3}`).stdout, &dry)
	if dry.Estimate.Total["credits"] != 30 {
		t.Errorf("dry run -o json: %+v", dry)
	}
}

func TestStatsWarnsOfProvidersNoWorkerRuns(t *testing.T) {
	t.Parallel()
	c := newCLI(t, fast())
	startWorker(c, "samsar")
	if r := c.run("--wait", writeFile(t, "done.jsonl", lines(samsar("a", 5), samsar("b", 5)))); r.code != 0 {
		t.Fatalf("samsar jobs:\n%s", r)
	}
	if r := c.run(writeFile(t, "stuck.jsonl", lines(`{"provider":"camb","input":{"text":"Once upon a time.","source_language":1}}`))); r.code != 0 {
		t.Fatalf("camb job:\n%s", r)
	}
	waitSlotsFree(t, c.env, "samsar") // the worker releases its slots just after the results
	waitfor.Counted(t, context.Background(), c.env.Inspector, inspect.StatsOptions{Recent: -1}, time.Minute)
	r := c.run("stats")
	if r.code != 0 {
		t.Fatalf("stats:\n%s", r)
	}
	mustContain(t, "stats", r.stdout, "warning: 1 job queued for camb, but no worker runs camb", "NO WORKER")
	mustNotContain(t, "stats", r.stdout, "- - -", "active", "in ") // idle samsar has no NEXT CALL
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, "samsar ") && (!strings.Contains(l, "idle") || !strings.HasSuffix(l, "-")) {
			t.Errorf("samsar is idle, with no next call: %q", l)
		}
	}
	mustContain(t, "batches", r.stdout, "done", "stuck", "100%")

	// --watch into a pipe: successive snapshots, no screen-control codes.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = context.WithValue(ctx, progressHook{}, func(n int) {
		if n == 2 {
			cancel()
		}
	})
	r = c.runCtx(ctx, "", "stats", "--watch", "10ms", "--batch", "done")
	if r.code != 0 || strings.Count(r.stdout, "-- ") != 2 || strings.Contains(r.stdout, "\033") {
		t.Errorf("stats --watch into a pipe:\n%q", r.stdout)
	}
}

// TestStatsCountedWaitsForTheFold: right after the last result, stats
// --counted shows the batch fully counted (the fold counts results up to
// REELQ_FOLD_INTERVAL after they are stored).
func TestStatsCountedWaitsForTheFold(t *testing.T) {
	t.Parallel()
	c := newCLI(t, fast())
	startWorker(c, "samsar")
	if r := c.run("--wait", writeFile(t, "cnt.jsonl", lines(samsar("a", 5), samsar("b", 5), samsar("c", 5)))); r.code != 0 {
		t.Fatalf("jobs:\n%s", r)
	}
	r := c.run("stats", "--batch", "cnt", "--counted", "1m")
	if r.code != 0 {
		t.Fatalf("stats:\n%s", r)
	}
	mustContain(t, "stats --counted", r.stdout, "100%")
	mustNotContain(t, "stats --counted", r.stdout, "not counted yet")
	if r := c.run("stats", "--counted", "-1s"); r.code != exitUsage {
		t.Errorf("stats --counted -1s: want exit %d:\n%s", exitUsage, r)
	}
}

func TestCancelLargeBatchIsConcurrentAndStopsCleanly(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	startWorker(c, "samsar")
	if r := c.run("pause", "samsar", "--reason", "test"); r.code != 0 {
		t.Fatalf("pause:\n%s", r)
	}
	const n = 3000
	var b strings.Builder
	for i := range n {
		b.WriteString(samsar(fmt.Sprint(i), 5) + "\n")
	}
	if r := c.run("--batch", "big", "-o", "json", writeFile(t, "big.jsonl", b.String())); r.code != 0 {
		t.Fatalf("publish:\n%s", r)
	}
	// Interrupted part-way: one line, how many were requested, exit 130.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = context.WithValue(ctx, progressHook{}, func(done int) {
		if done == 500 {
			cancel()
		}
	})
	r := c.runCtx(ctx, "", "cancel", "--batch", "big")
	if r.code != exitInterrupted {
		t.Fatalf("want exit %d:\n%s", exitInterrupted, r)
	}
	if got := strings.Count(strings.TrimSpace(r.stderr), "\n"); got != 0 || !strings.Contains(r.stderr, "interrupted: ") ||
		!strings.Contains(r.stderr, "cancel requests made; running the same command again finishes the rest") || strings.Contains(r.stderr, "context canceled") {
		t.Errorf("interrupted cancel must say one line:\n%s", r)
	}
	// Again: the rest, many at a time.
	start := time.Now()
	r = c.run("cancel", "--batch", "big", "-o", "json")
	elapsed := time.Since(start)
	var rep cancelReport
	parseJSON(t, "cancel", r.stdout, &rep)
	// Jobs the workers already finished as cancelled are not requested
	// again (and a job cancelled before any worker pulled it is, for now,
	// missing from the batch index: see the report).
	if r.code != 0 || rep.Requested < n/2 || rep.Errors != 0 {
		t.Errorf("cancel --batch: %+v\n%s", rep, r)
	}
	t.Logf("cancel --batch of %d queued jobs: %s (%.0f/s)", n, elapsed.Round(time.Millisecond), n/elapsed.Seconds())
	kv, err := c.env.JS.KeyValue(context.Background(), wire.BucketCancel)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for range keys.Keys() {
		count++
	}
	if count != n {
		t.Errorf("%d cancel requests stored, want %d", count, n)
	}
	if got := c.env.Sim.Stats(0)["samsar"].TotalRequests; got != 0 {
		t.Errorf("the provider saw %d requests; a paused provider's cancelled jobs must never reach it", got)
	}
}

// waitSlotsFree watches the slots bucket until no worker holds one of
// provider's slots.
func waitSlotsFree(t *testing.T, env *reelqtest.Env, provider string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := env.JS.KeyValue(ctx, "reelq_slots")
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Key(t, kv, provider, 30*time.Second, provider+"'s slots to be free", func(e jetstream.KeyValueEntry) bool {
		var v struct {
			Holders map[string]struct {
				N int `json:"n"`
			} `json:"holders"`
		}
		if e == nil || json.Unmarshal(e.Value(), &v) != nil {
			return false
		}
		held := 0
		for _, h := range v.Holders {
			held += h.N
		}
		return held == 0
	})
}

func TestResultsDownloadVerifiesArchivedOutputs(t *testing.T) {
	t.Parallel()
	c := newCLI(t, map[string]providersim.Knobs{
		"samsar":   {CompleteAfter: providersim.Duration(20 * time.Millisecond)},
		"vimmerse": {CompleteAfter: providersim.Duration(20 * time.Millisecond), OutputNotFound: true},
	})
	c.env.StartWorker(reelqtest.WorkerOptions{Archive: true, Providers: map[string]reelqtest.Settings{"samsar": {}, "vimmerse": {}}})
	r := c.run("--wait", "--batch", "dl", writeFile(t, "dl.jsonl", lines(samsar("a", 5), samsar("b", 5))))
	if r.code != 0 {
		t.Fatalf("publish:\n%s", r)
	}
	var results []reelq.Result
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var res reelq.Result
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	dir := filepath.Join(t.TempDir(), "outputs")
	r = c.run("results", "--download", dir, "--batch", "dl")
	if r.code != 0 || !strings.Contains(r.stdout, "2 outputs into "+dir+": 2 downloaded") {
		t.Fatalf("download:\n%s", r)
	}
	for _, res := range results {
		if len(res.Outputs) != 1 || res.Outputs[0].Archive == nil {
			t.Fatalf("result without an archived output: %+v", res)
		}
		cp := res.Outputs[0].Archive
		data, err := os.ReadFile(filepath.Join(dir, inspect.OutputFile(res.ID, 1, cp.ContentType)))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != strings.TrimPrefix(cp.SHA256, "sha256:") || int64(len(data)) != cp.Size {
			t.Errorf("%s: %d bytes with sha256 %x; the archive says %d bytes, %s", res.ID, len(data), sum, cp.Size, cp.SHA256)
		}
	}
	// Again: nothing downloaded twice.
	r = c.run("results", "--download", dir, "--batch", "dl")
	if r.code != 0 || !strings.Contains(r.stdout, "0 downloaded (0 B), 2 already complete") {
		t.Errorf("second download:\n%s", r)
	}
	// An output the worker could not archive is reported, and exit 1.
	if r = c.run("--wait", "--batch", "gone", writeFile(t, "gone.jsonl", lines(`{"provider":"vimmerse","input":{"visibility_status":"0"}}`))); r.code != 0 {
		t.Fatalf("vimmerse job:\n%s", r)
	}
	r = c.run("results", "--download", dir, "--batch", "gone")
	if r.code != exitFailure || !strings.Contains(r.stderr, "output 1: not archived: ") || !strings.Contains(r.stdout, "1 without an archived copy") {
		t.Errorf("unarchived output:\n%s", r)
	}
	// results lists every result as JSON lines.
	r = c.run("results", "--batch", "dl")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("results --batch dl:\n%s", r)
	}
}

func TestRetryRunsAgainButNeverASucceededJob(t *testing.T) {
	t.Parallel()
	c := newCLI(t, fast())
	startWorker(c, "samsar", "camb")
	r := c.run("--wait", "--batch", "rt", writeFile(t, "rt.jsonl", lines(samsar("ok", 5), `{"id":"story-1","provider":"camb","input":{"text":"Once upon a time.","source_language":1}}`)))
	if r.code != exitJobsFailed {
		t.Fatalf("want exit %d:\n%s", exitJobsFailed, r)
	}
	var okID string
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var res reelq.Result
		_ = json.Unmarshal([]byte(l), &res)
		if res.Status == reelq.StatusSucceeded {
			okID = res.ID
		}
	}
	r = c.run("retry", okID)
	if r.code != exitFailure || !strings.Contains(r.stderr, okID+": not retried: succeeded; a job that succeeded is never paid again") {
		t.Errorf("retry of a succeeded job:\n%s", r)
	}
	waitIndexed(t, c.env, "rt", 2) // workers index a batch's jobs every 250 ms
	r = c.run("retry", "--batch", "rt")
	if r.code != 0 || !strings.Contains(r.stdout, "story-1: retrying as run 2") || !strings.Contains(r.stdout, "batch rt: 1 job retried") {
		t.Errorf("retry --batch:\n%s", r)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res, err := c.env.Client.Wait(wctx, "story-1"); err != nil || res.Run != 2 {
		t.Fatalf("run 2 of story-1: %+v %v", res, err) // it fails again (FailRate 1)
	}
	r = c.run("status", "--runs", "story-1")
	if r.code != 0 || !strings.Contains(r.stdout, "runs of story-1:") || strings.Count(r.stdout, "provider_failed") < 2 {
		t.Errorf("status --runs:\n%s", r)
	}
	if got := submissions(c.env, "samsar")[samsarPrompt("ok")]; got != 1 {
		t.Errorf("the succeeded job was submitted %d times", got)
	}
	if r := c.run("retry", "--batch", "rt", "--status", "succeeded"); r.code != exitUsage {
		t.Errorf("--status succeeded:\n%s", r)
	}
}

func TestStatusShowsQueuedHeldAndCancelRequested(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	// A job published with `nats pub`, no client involved.
	j := reelq.Job{ID: "raw-1", Provider: "samsar", Batch: "raw", Input: []byte(`{"prompt":"p","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)}
	if _, err := c.env.JS.PublishMsg(context.Background(), reelqtest.JobMsg(&j)); err != nil {
		t.Fatal(err)
	}
	r := c.run("status", "raw-1")
	if r.code != 0 || !strings.Contains(r.stdout, "raw-1") || !strings.Contains(r.stdout, "queued") {
		t.Errorf("status of a raw job:\n%s", r)
	}
	if r := c.run("cancel", "raw-1"); r.code != 0 || !strings.Contains(r.stdout, "raw-1: cancel requested (queued)") {
		t.Errorf("cancel:\n%s", r)
	}
	if r := c.run("status", "--batch", "raw"); !strings.Contains(r.stdout, "cancel requested") {
		t.Errorf("status after cancel:\n%s", r)
	}
	// A held job stands out, with the commands to resolve it.
	since := time.Now().Add(-time.Minute)
	a := newApp(nil, nil, &bytes.Buffer{}, &bytes.Buffer{})
	var out bytes.Buffer
	a.stdout = &out
	a.printStatus([]jobStatus{statusOf(&reelq.JobState{ID: "h1", Provider: "vimmerse", Phase: reelq.PhaseHeld, Run: 1,
		HeldReason: "submission outcome unknown (timeout)", HeldSince: &since}, false, false)}, false)
	mustContain(t, "held", out.String(), "HELD", "held: submission outcome unknown (timeout)",
		"enqueue resolve h1 --task TASK_ID", "enqueue resolve h1 --resubmit")
}

// waitIndexed follows the batch index until n distinct jobs of batch are
// in it.
func waitIndexed(t *testing.T, env *reelqtest.Env, batch string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := env.JS.OrderedConsumer(ctx, wire.StreamBatches, jetstream.OrderedConsumerConfig{FilterSubjects: []string{wire.BatchIndexSubject(batch)}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < n {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("batch index of %s: %d of %d jobs: %v", batch, len(seen), n, err)
		}
		var ids []string
		_ = json.Unmarshal(msg.Data(), &ids)
		for _, id := range ids {
			seen[id] = true
		}
	}
}

func TestInterruptedPublishSaysHowManyAndRerunIsSafe(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	const n = 3000
	var b strings.Builder
	for i := range n {
		b.WriteString(samsar(fmt.Sprint(i), 5) + "\n")
	}
	f := writeFile(t, "many.jsonl", b.String())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = context.WithValue(ctx, progressHook{}, func(done int) {
		if done == 1000 { // the first window is acknowledged
			cancel()
		}
	})
	r := c.runCtx(ctx, "", f)
	if r.code != exitInterrupted || !strings.Contains(r.stderr, "of 3,000 jobs published; running the same command again is safe") {
		t.Fatalf("interrupted publish:\n%s", r)
	}
	count, _, _ := strings.Cut(strings.TrimPrefix(r.stderr, "interrupted: "), " ")
	published, err := strconv.Atoi(strings.ReplaceAll(count, ",", ""))
	if err != nil || published < 1000 || published > n {
		t.Errorf("published %d (%v):\n%s", published, err, r.stderr)
	}
	// The windows sent before the interrupt are awaited: the message and
	// the batch's counter say exactly what JOBS holds.
	if q := jobsInQueue(t, c.env); uint64(published) != q {
		t.Errorf("the interrupt said %d published; JOBS holds %d", published, q)
	}
	if got := enqueuedCount(t, c, "many"); got != uint64(published) {
		t.Errorf("after the interrupt, batch many counts %d enqueued; %d were published", got, published)
	}
	r = c.run("-o", "json", f)
	var rep publishReport
	parseJSON(t, "re-run", r.stdout, &rep)
	if r.code != 0 || rep.Published+rep.Known != n || rep.Known < published {
		t.Errorf("re-run: published %d, known %d; want %d in all:\n%s", rep.Published, rep.Known, n, r.stderr)
	}
	if got := jobsInQueue(t, c.env); got != n {
		t.Errorf("JOBS holds %d, want %d: none lost, none twice", got, n)
	}
	if got := enqueuedCount(t, c, "many"); got != n {
		t.Errorf("after the re-run, batch many counts %d enqueued, want %d", got, n)
	}
}

// enqueuedCount is batch's enqueued counter, as stats reads it.
func enqueuedCount(t *testing.T, c cli, batch string) uint64 {
	t.Helper()
	st, err := c.env.Inspector.Stats(context.Background(), inspect.StatsOptions{Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Batches {
		if b.Batch == batch {
			return b.Enqueued
		}
	}
	return 0
}

func TestCancelOfARunningJobWithoutCancelAPISaysItIsStillBilled(t *testing.T) {
	t.Parallel()
	c := newCLI(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(time.Minute)}})
	startWorker(c, "samsar")
	if r := c.run("--provider", "samsar", "--id", "long-1", "--input", `{"prompt":"long","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`); r.code != 0 {
		t.Fatalf("publish:\n%s", r)
	}
	waitfor.Job(t, c.env.JS, "long-1", 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseSubmitted })
	r := c.run("cancel", "long-1")
	if r.code != 0 || !strings.Contains(r.stdout, "long-1: cancel requested, but it is running at a provider without a cancel API: the task finishes there and is still billed") {
		t.Errorf("cancel of a running samsar job:\n%s", r)
	}
}

func TestDLQListAndRedrive(t *testing.T) {
	t.Parallel()
	c := newCLI(t, fast())
	startWorker(c, "samsar")
	// A message no worker can run: not JSON.
	if _, err := c.env.JS.Publish(context.Background(), "jobs.samsar.broken-1", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := c.env.JS.OrderedConsumer(ctx, wire.StreamDLQ, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Next(jetstream.FetchContext(ctx)); err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	var dl []dlqLine
	r := c.run("dlq", "list", "-o", "json")
	parseJSON(t, "dlq list", r.stdout, &dl)
	if len(dl) != 1 || dl[0].Code == "" {
		t.Fatalf("dlq list: %+v\n%s", dl, r)
	}
	r = c.run("dlq", "list")
	mustContain(t, "dlq list", r.stdout, "1 dead letter;", dl[0].Code)
	r = c.run("dlq", "redrive", "--all", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("%d: would", dl[0].Seq)) {
		t.Errorf("redrive --dry-run:\n%s", r)
	}
	if r := c.run("dlq", "redrive", "999"); r.code != exitFailure || !strings.Contains(r.stderr, "999: no such dead letter") {
		t.Errorf("redrive of an unknown seq:\n%s", r)
	}
	if r := c.run("dlq", "redrive", "x"); r.code != exitUsage {
		t.Errorf("redrive x:\n%s", r)
	}
}

// enqueue --budget AMOUNT FILE sets the budget of the file's batch (named
// after the file) before publishing, and workers stop submitting its jobs
// at it: of three 50-credit jobs under a 100-credit budget exactly two are
// paid, and budget list and stats show the spend. A bad amount is refused
// with exit 2 naming the flag, and nothing is published or set.
func TestPublishWithBudget(t *testing.T) {
	t.Parallel()
	c := newCLI(t, fast())
	f := writeFile(t, "capped.jsonl", lines(samsar("cap1", 5), samsar("cap2", 5), samsar("cap3", 5)))

	r := c.run("--budget", "5 parsecs", f)
	if r.code != exitUsage || !strings.Contains(r.stderr, "--budget:") || !strings.Contains(r.stderr, `"5 parsecs"`) {
		t.Errorf("--budget '5 parsecs': want exit %d naming the flag and the value:\n%s", exitUsage, r)
	}
	if n := jobsInQueue(t, c.env); n != 0 {
		t.Errorf("JOBS holds %d after a bad --budget, want 0", n)
	}
	var bs []inspect.BudgetStatus
	parseJSON(t, "budget list", c.run("budget", "list", "-o", "json").stdout, &bs)
	if len(bs) != 0 {
		t.Errorf("budgets after a bad --budget: %+v, want none", bs)
	}

	paused := c.env.Events("events.samsar." + reelq.EventBudgetPaused)
	r = c.run("--budget", "100credits", f)
	if r.code != 0 || !strings.Contains(r.stdout, "published 3 of 3 jobs") {
		t.Fatalf("--budget 100credits:\n%s", r)
	}
	mustContain(t, "stderr", r.stderr, "budget of batch capped set to 100 credits")
	parseJSON(t, "budget list", c.run("budget", "list", "-o", "json").stdout, &bs)
	if len(bs) != 1 || bs[0].Scope != reelq.ScopeBatch || bs[0].Name != "capped" || bs[0].Amount != 100 || bs[0].Unit != "credits" {
		t.Fatalf("budget list -o json: %+v, want batch capped at 100 credits", bs)
	}

	startWorker(c, "samsar")
	if ev := c.env.NextEvent(paused, 30*time.Second); ev.Code != "budget" || ev.Batch != "capped" {
		t.Errorf("budget event %+v, want code budget for batch capped", ev)
	}
	c.env.Results(2, time.Minute)
	paid := 0
	for _, n := range submissions(c.env, "samsar") {
		paid += n
	}
	if paid != 2 {
		t.Errorf("provider was paid %d submissions, want 2 (100 credits of 50-credit jobs)", paid)
	}
	waitfor.Until(t, 30*time.Second, "budget list and stats to show 100 credits spent in 2 submissions", func() error {
		parseJSON(t, "budget list", c.run("budget", "list", "-o", "json").stdout, &bs)
		var sv struct {
			Batches []inspect.BatchStats `json:"batches"`
		}
		parseJSON(t, "stats", c.run("stats", "--batch", "capped", "-o", "json").stdout, &sv)
		if len(bs) == 1 && bs[0].Spent == 100 && bs[0].Submissions == 2 && bs[0].Reserved == 0 &&
			len(sv.Batches) == 1 && sv.Batches[0].Spent["credits"] == 100 {
			return nil
		}
		return fmt.Errorf("budget list %+v, stats %+v", bs, sv.Batches)
	})
}

// Invalid UTF-8 is refused naming the line and the field, in JSONL and
// CSV, before anything is paid. (Before, decoding replaced the bytes with
// U+FFFD: the provider was paid for text nobody wrote, and two such lines
// shared a content id; a file with one such byte in its first 64 KiB was
// refused whole as "binary data".)
func TestInvalidUTF8IsNamedByLineAndField(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	f := writeFile(t, "utf8.jsonl", lines(
		samsar("ok", 5),
		`{"provider":"samsar","input":{"prompt":"a kite `+"\xff"+`","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}}`,
		`{"provider":"samsar","input":{"prompt":"a kite","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5},"metadata":{"shot":"`+"\xc3"+`"}}`,
		`{"provider":"samsar","input":{"prompt":"a kite \udc00","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}}`,
	))
	r := c.run(f)
	if r.code != exitUsage {
		t.Fatalf("want exit %d:\n%s", exitUsage, r)
	}
	mustContain(t, "stderr", r.stderr,
		"line 2: input is not valid UTF-8 (byte 19)",
		"line 3: metadata is not valid UTF-8 (byte 10)",
		`line 4: input holds a lone UTF-16 surrogate escape \udc00 (byte 19)`,
		"3 invalid jobs; nothing published")
	csvFile := writeFile(t, "utf8.csv", "provider,input.prompt,input.image_model,input.video_model,input.duration\n"+
		"samsar,a ferry,FLUX1.1PRO,LUMA,5\n"+
		"samsar,a ferry \xfe,FLUX1.1PRO,LUMA,5\n")
	r = c.run(csvFile)
	if r.code != exitUsage {
		t.Fatalf("CSV: want exit %d:\n%s", exitUsage, r)
	}
	mustContain(t, "stderr", r.stderr, "line 3: column input.prompt is not valid UTF-8 (byte 9 of the cell)")
	if n := jobsInQueue(t, c.env); n != 0 {
		t.Errorf("JOBS holds %d messages; nothing may be published", n)
	}
}
