package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
)

type cli struct {
	t   *testing.T
	env *reelqtest.Env
}

// run runs enqueue with args and returns its exit code, stdout and stderr.
func (c cli) run(args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, args, []string{"NATS_URL=" + c.env.Server.ClientURL()}, strings.NewReader(""), &out, &errb)
	code := 0
	if err != nil {
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		errb.WriteString(err.Error())
	}
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const okSamsar = `{"provider":"samsar","input":{"prompt":"a kite %s","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}}`

func samsarLine(tag string) string { return strings.Replace(okSamsar, "%s", tag, 1) }

func TestPublishRefusesInvalidLinesWithLineNumbers(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, nil)
	c := cli{t, env}
	file := writeFile(t, "jobs.jsonl", strings.Join([]string{
		samsarLine("one"),
		`{"provider":"samsar","input":{"prompt":"x","image_model":"FLUX1.1PRO","video_model":"SORA","duration":5}}`,
		``,
		`{"provider":"runway","input":{}}`,
		`{"provider":"samsar","inputs":{}}`,
		`not json`,
	}, "\n"))
	code, _, stderr := c.run(file)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
	}
	for _, want := range []string{
		`line 2: invalid job: samsar validate: invalid input: input.video_model "SORA" is not one of`,
		`line 4: invalid job: unknown provider "runway"`,
		`line 5: invalid job: json: unknown field "inputs"`,
		`line 6: invalid job: bad JSON`,
		"4 invalid job(s); nothing published",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if n := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); n != 0 {
		t.Errorf("JOBS holds %d messages, want 0: nothing may be published", n)
	}
	// --skip-invalid publishes the one valid job.
	code, _, stderr = c.run("--skip-invalid", file)
	if code != 0 || !strings.Contains(stderr, "published 1 jobs") {
		t.Fatalf("--skip-invalid: exit %d, stderr:\n%s", code, stderr)
	}
}

func TestPublishWaitReportsResultsAndFailures(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{
		"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond)},
		"camb":   {CompleteAfter: providersim.Duration(50 * time.Millisecond), FailRate: 1},
	})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}, "camb": {}}})
	c := cli{t, env}
	file := writeFile(t, "jobs.jsonl", samsarLine("a")+"\n"+samsarLine("b")+"\n"+
		`{"provider":"camb","input":{"text":"Once upon a time.","source_language":1},"metadata":{"k":"v"}}`+"\n")
	out := filepath.Join(t.TempDir(), "results.jsonl")
	code, _, stderr := c.run("--wait", "--batch", "b1", "--out", out, file)
	if code != exitFailedJobs {
		t.Fatalf("exit %d, want %d (one job failed); stderr:\n%s", code, exitFailedJobs, stderr)
	}
	if !strings.Contains(stderr, "3 jobs: 2 succeeded, 1 failed") {
		t.Errorf("summary missing:\n%s", stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d result lines, want 3:\n%s", len(lines), data)
	}
	byID := map[string]queue.Result{}
	for _, l := range lines {
		var r queue.Result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		byID[r.ID] = r
	}
	// Ids are <batch>-<line>, so a re-run of the same file is idempotent.
	if byID["b1-1"].Status != queue.StatusSucceeded || byID["b1-2"].Status != queue.StatusSucceeded {
		t.Errorf("samsar jobs: %+v", byID)
	}
	if r := byID["b1-3"]; r.Status != queue.StatusFailed || r.Error == nil || r.Error.Code != "provider_failed" || string(r.Metadata) != `{"k":"v"}` {
		t.Errorf("camb job: %+v, want failed with provider_failed and metadata echoed", r)
	}

	// The same file again: nothing is published or paid twice, and the
	// existing results are reported.
	code, stdout, stderr := c.run("--wait", "--batch", "b1", file)
	if code != exitFailedJobs || !strings.Contains(stderr, "published 0 jobs") || !strings.Contains(stderr, "3 already known") {
		t.Fatalf("re-run: exit %d, stderr:\n%s", code, stderr)
	}
	if got := strings.Count(stdout, "\n"); got != 3 {
		t.Errorf("re-run printed %d results, want 3", got)
	}
	for prompt, n := range env.Sim.Stats(0)["samsar"].Submissions {
		if n != 1 {
			t.Errorf("%q submitted %d times, want 1", prompt, n)
		}
	}
}

func TestCancelQueuedJobNeverReachesProvider(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, nil)
	c := cli{t, env}
	// No worker is running: the job stays queued.
	code, _, stderr := c.run("--provider", "samsar", "--id", "to-cancel", "--input", `{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA","duration":5}`)
	if code != 0 {
		t.Fatalf("publish: exit %d: %s", code, stderr)
	}
	code, stdout, stderr := c.run("cancel", "to-cancel")
	if code != 0 || !strings.Contains(stdout, "to-cancel: cancelled") {
		t.Fatalf("cancel: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	res := env.Results(1, 30*time.Second)["to-cancel"]
	if len(res) != 1 || res[0].Status != queue.StatusCancelled {
		t.Fatalf("results %+v, want one cancelled", res)
	}
	if n := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); n != 0 {
		t.Errorf("JOBS holds %d messages, want 0", n)
	}
	if n := env.Sim.Stats(0)["samsar"].TotalRequests; n != 0 {
		t.Errorf("provider saw %d requests, want 0", n)
	}
	code, stdout, _ = c.run("cancel", "to-cancel")
	if code != 0 || !strings.Contains(stdout, "already finished (cancelled)") {
		t.Errorf("second cancel: exit %d, %q", code, stdout)
	}
}

func TestPauseResumeShowInStats(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, nil)
	c := cli{t, env}
	if code, out, errs := c.run("pause", "vimmerse", "--reason", "budget review"); code != 0 || !strings.Contains(out, "vimmerse paused") {
		t.Fatalf("pause: %d %q %q", code, out, errs)
	}
	_, out, _ := c.run("stats", "--no-batches")
	if !strings.Contains(out, "PAUSED (manual)") || !strings.Contains(out, "budget review") {
		t.Errorf("stats does not show the pause:\n%s", out)
	}
	if code, out, _ := c.run("resume", "vimmerse"); code != 0 || !strings.Contains(out, "vimmerse resumed") {
		t.Fatalf("resume: %d %q", code, out)
	}
	_, out, _ = c.run("stats", "--no-batches")
	if strings.Contains(out, "PAUSED") {
		t.Errorf("stats still shows a pause:\n%s", out)
	}
	if code, _, errs := c.run("pause", "runway"); code != exitUsage || !strings.Contains(errs, `unknown provider "runway"`) {
		t.Errorf("pause of an unknown provider: %d %q", code, errs)
	}
}

func TestReadJobsFormats(t *testing.T) {
	t.Parallel()
	csvIn := "provider,id,input.prompt,input.duration,input.image_model,input.video_model,metadata\n" +
		"samsar,c1,\"hello, world\",10,FLUX1.1PRO,LUMA,\"{\"\"a\"\":1}\"\n" +
		"samsar,c2,second,abc,FLUX1.1PRO,LUMA,\n" +
		"samsar,c3,third,5,FLUX1.1PRO,LUMA,{bad\n"
	jobs, bad, err := readJobs(strings.NewReader(csvIn), "csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || len(bad) != 1 || bad[0].Line != 4 {
		t.Fatalf("jobs %+v bad %+v, want 2 jobs and line 4 rejected", jobs, bad)
	}
	var in map[string]any
	_ = json.Unmarshal(jobs[0].Job.Input, &in)
	if in["prompt"] != "hello, world" || in["duration"] != 10.0 || string(jobs[0].Job.Metadata) != `{"a":1}` || jobs[0].Line != 2 {
		t.Errorf("csv row 1 decoded as %+v input %v", jobs[0], in)
	}
	_ = json.Unmarshal(jobs[1].Job.Input, &in)
	if in["duration"] != "abc" {
		t.Errorf("a non-number cell must stay a string (so validation names it), got %v", in["duration"])
	}

	arr := `[` + samsarLine("x") + `, {"provider":1}]`
	jobs, bad, err = readJobs(strings.NewReader(arr), "")
	if err != nil || len(jobs) != 1 || len(bad) != 1 || bad[0].Line != 2 {
		t.Fatalf("json array: jobs %d bad %+v err %v", len(jobs), bad, err)
	}
	if _, _, err := readJobs(strings.NewReader("provider,colour\nsamsar,red\n"), "csv"); err == nil || !strings.Contains(err.Error(), `unknown column "colour"`) {
		t.Errorf("unknown csv column: err %v", err)
	}
}
