package worker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/archive"
	"github.com/reelq/reelq/internal/metrics"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/worker"
)

// Each kind of broken output the simulator serves with a 200 (over real
// HTTP, through the worker's archiving) is flagged with its code: the
// output keeps its archived copy, gains validation_error and media, the
// run fails with invalid_output (the default policy), an invalid_output
// event and the metric count it. A valid output passes. (Before, every
// one of them was a paid "success".)
func TestBrokenOutputsAreFlagged(t *testing.T) {
	t.Parallel()
	quick := providersim.Duration(30 * time.Millisecond)
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: quick}})
	m := metrics.New(prometheus.NewRegistry())
	env.StartWorker(reelqtest.WorkerOptions{Archive: true, Config: worker.Config{Metrics: m},
		Providers: map[string]reelqtest.Settings{"samsar": {}}})
	invalid := env.Events("events.samsar." + reelq.EventInvalidOutput)
	audio := true
	cases := []struct {
		name  string
		knobs providersim.Knobs
		job   func(reelq.Job) reelq.Job
		code  string // "" : valid
		media string
	}{
		{name: "valid", media: "video/mp4"},
		{name: "valid-with-audio", job: func(j reelq.Job) reelq.Job { j.Expect = &reelq.Expect{Audio: &audio}; return j }, media: "video/mp4"},
		{name: "truncated", knobs: providersim.Knobs{OutputBroken: providersim.BrokenTruncated}, code: reelq.ValidationTruncated, media: "video/mp4"},
		{name: "html", knobs: providersim.Knobs{OutputBroken: providersim.BrokenHTML}, code: reelq.ValidationNotMedia, media: "text/html"},
		{name: "empty", knobs: providersim.Knobs{OutputBroken: providersim.BrokenEmpty}, code: reelq.ValidationEmpty},
		{name: "duration", knobs: providersim.Knobs{OutputDuration: providersim.Duration(2 * time.Second)}, code: reelq.ValidationDurationMismatch, media: "video/mp4"},
		{name: "wrong-duration", knobs: providersim.Knobs{OutputBroken: providersim.BrokenDuration}, code: reelq.ValidationDurationMismatch, media: "video/mp4"},
		{name: "wrong-type", job: func(j reelq.Job) reelq.Job { j.Expect = &reelq.Expect{Types: []string{"audio/*"}}; return j },
			code: reelq.ValidationWrongType, media: "video/mp4"},
		{name: "no-audio", knobs: providersim.Knobs{OutputBroken: providersim.BrokenNoAudio},
			job: func(j reelq.Job) reelq.Job { j.Expect = &reelq.Expect{Audio: &audio}; return j }, code: reelq.ValidationMissingAudio, media: "video/mp4"},
	}
	checked := map[string]int{}
	for n, c := range cases {
		k := c.knobs
		k.CompleteAfter = quick
		if err := env.Sim.SetKnobs("samsar", k); err != nil {
			t.Fatal(err)
		}
		j := reelqtest.SamsarJob("out-" + c.name)
		if c.job != nil {
			j = c.job(j)
		}
		env.Enqueue(j)
		rs := env.Results(n+1, time.Minute)[j.ID]
		if len(rs) != 1 || len(rs[0].Outputs) != 1 {
			t.Fatalf("%s: %+v, want one result with one output", c.name, rs)
		}
		r, o := rs[0], rs[0].Outputs[0]
		if o.Archive == nil {
			t.Errorf("%s: no archived copy (archive_error %q); the bytes are kept whatever the check says", c.name, o.ArchiveError)
		}
		if o.Media == nil || o.Media.Type != c.media && c.media != "" {
			t.Errorf("%s: media %+v, want type %q", c.name, o.Media, c.media)
		}
		if c.code == "" {
			if r.Status != reelq.StatusSucceeded || o.ValidationError != nil {
				t.Errorf("%s: status %s, validation_error %+v; want a success without one", c.name, r.Status, o.ValidationError)
			}
			if o.Media == nil || o.Media.Duration < 4.5 || o.Media.Duration > 5.5 || len(o.Media.Audio) == 0 {
				t.Errorf("%s: media %+v, want a 5 s video with audio", c.name, o.Media)
			}
			continue
		}
		if o.ValidationError == nil || o.ValidationError.Code != c.code || o.ValidationError.Message == "" {
			t.Errorf("%s: validation_error %+v, want code %s with a message", c.name, o.ValidationError, c.code)
		}
		if r.Status != reelq.StatusFailed || r.Error == nil || r.Error.Code != reelq.CodeInvalidOutput || !strings.Contains(r.Error.Message, c.code) {
			t.Errorf("%s: status %s, error %+v; want failed with invalid_output naming %s", c.name, r.Status, r.Error, c.code)
		}
		if ev := env.NextEvent(invalid, 30*time.Second); ev.JobID != j.ID || ev.Code != c.code {
			t.Errorf("%s: event %+v, want invalid_output for %s with code %s", c.name, ev, j.ID, c.code)
		}
		checked[c.code]++
		if got := testutil.ToFloat64(m.OutputChecks.WithLabelValues("samsar", c.code)); got != float64(checked[c.code]) {
			t.Errorf("%s: reelq_output_checks_total{code=%q} = %v, want %d", c.name, c.code, got, checked[c.code])
		}
	}
	if got := testutil.ToFloat64(m.OutputChecks.WithLabelValues("samsar", "ok")); got != 2 {
		t.Errorf(`reelq_output_checks_total{code="ok"} = %v, want 2`, got)
	}
	if got := totalSubmissions(env, "samsar"); got != len(cases) {
		t.Errorf("provider saw %d submissions, want %d: the default policy never pays again", got, len(cases))
	}
}

// P_OUTPUT_POLICY=retry pays for a new submission after an invalid
// output, but never beyond the job's budget nor P_OUTPUT_RETRIES: a job
// whose batch budget holds two submissions is submitted twice though it
// may retry five times, one without a budget and two retries three
// times; both then fail with invalid_output, their cost and the spend
// counting every submission, pay_once still guaranteed (the second
// payment was on purpose).
func TestOutputRetryStaysWithinBudget(t *testing.T) {
	t.Parallel()
	const perJob = 50.0 // samsar: 10 credits/s x 5 s
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(30 * time.Millisecond),
		OutputBroken: providersim.BrokenHTML}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := env.Inspector.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "test", Amount: 2 * perJob, Unit: "credits"}); err != nil {
		t.Fatal(err)
	}
	budgeted := reelqtest.SamsarJob("retry-budget")
	w1 := env.StartWorker(reelqtest.WorkerOptions{Archive: true, Providers: map[string]reelqtest.Settings{"samsar": {OutputPolicy: worker.OutputRetry, OutputRetries: 5}}})
	env.Enqueue(budgeted)
	r := env.Results(1, time.Minute)[budgeted.ID]
	if len(r) != 1 || r[0].Status != reelq.StatusFailed || r[0].Error == nil || r[0].Error.Code != reelq.CodeInvalidOutput ||
		!strings.Contains(r[0].Error.Message, "budget") {
		t.Fatalf("%s: %+v, want one failed result with invalid_output saying the budget stopped the retries", budgeted.ID, r)
	}
	if r[0].OutputRetries != 1 || r[0].Cost == nil || r[0].Cost.Amount != 2*perJob || r[0].PayOnce != reelq.PayOnceGuaranteed {
		t.Errorf("%s: output_retries %d, cost %+v, pay_once %s; want 1 retry, %v credits, guaranteed", budgeted.ID, r[0].OutputRetries, r[0].Cost, r[0].PayOnce, 2*perJob)
	}
	if got := totalSubmissions(env, "samsar"); got != 2 {
		t.Fatalf("provider saw %d submissions, want 2: the budget's worth", got)
	}
	if sp := waitSpend(t, env, func(s reelq.Spend) bool { return s.Reserved["credits"] == 0 && s.Submissions == 2 }); sp.Spent["credits"] != 2*perJob {
		t.Errorf("spent %v, want %v", sp.Spent, 2*perJob)
	}
	st, _, err := env.States.Get(ctx, budgeted.ID)
	if err != nil || len(st.OutputChecks) != 1 || !strings.Contains(st.OutputChecks[0], reelq.ValidationNotMedia) {
		t.Errorf("state %+v, %v: want the first submission's failed check recorded", st, err)
	}

	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	capped := reelqtest.SamsarJob("retry-capped")
	capped.Batch = "unbudgeted"
	env.StartWorker(reelqtest.WorkerOptions{ID: "w2", Archive: true, Providers: map[string]reelqtest.Settings{"samsar": {OutputPolicy: worker.OutputRetry, OutputRetries: 2}}})
	env.Enqueue(capped)
	r = env.Results(2, time.Minute)[capped.ID]
	if len(r) != 1 || r[0].Status != reelq.StatusFailed || r[0].Error == nil || r[0].Error.Code != reelq.CodeInvalidOutput ||
		!strings.Contains(r[0].Error.Message, "2 of 2 retries") || r[0].OutputRetries != 2 || r[0].Cost == nil || r[0].Cost.Amount != 3*perJob {
		t.Fatalf("%s: %+v, want one failed result after 2 retries costing %v", capped.ID, r, 3*perJob)
	}
	if got := totalSubmissions(env, "samsar"); got != 2+3 {
		t.Errorf("provider saw %d submissions, want 5 (2 + 3)", got)
	}
}

// With archiving off (REELQ_ARCHIVE=off: the Discard store) outputs are
// still downloaded and checked, then dropped: a broken one fails the run
// with invalid_output, a valid one succeeds; neither has an archived
// copy. P_OUTPUT_POLICY=accept records the error and succeeds.
func TestValidationWithArchiveOff(t *testing.T) {
	t.Parallel()
	quick := providersim.Duration(30 * time.Millisecond)
	env := reelqtest.New(t, map[string]providersim.Knobs{
		"samsar": {CompleteAfter: quick, OutputBroken: providersim.BrokenHTML},
		"camb":   {CompleteAfter: quick, OutputBroken: providersim.BrokenEmpty},
	})
	ac := env.ArchiveConfig()
	ac.Store = archive.Discard()
	env.StartWorker(reelqtest.WorkerOptions{Config: worker.Config{Archive: ac},
		Providers: map[string]reelqtest.Settings{"samsar": {}, "camb": {OutputPolicy: worker.OutputAccept}}})
	env.Enqueue(reelqtest.SamsarJob("off-broken"),
		reelq.Job{ID: "off-accept", Provider: "camb", Input: []byte(`{"text":"Once upon a time, a lighthouse keeper found a bottle.","source_language":1}`)})
	rs := env.Results(2, time.Minute)
	r := rs["off-broken"]
	if len(r) != 1 || r[0].Status != reelq.StatusFailed || r[0].Error == nil || r[0].Error.Code != reelq.CodeInvalidOutput ||
		len(r[0].Outputs) != 1 || r[0].Outputs[0].ValidationError == nil || r[0].Outputs[0].ValidationError.Code != reelq.ValidationNotMedia {
		t.Fatalf("off-broken: %+v, want failed with invalid_output, the output's code not_media", r)
	}
	r = rs["off-accept"]
	if len(r) != 1 || r[0].Status != reelq.StatusSucceeded || r[0].Error != nil || len(r[0].Outputs) == 0 {
		t.Fatalf("off-accept: %+v, want a success (policy accept)", r)
	}
	for i, o := range r[0].Outputs {
		if o.ValidationError == nil || o.ValidationError.Code != reelq.ValidationEmpty {
			t.Errorf("off-accept output %d: validation_error %+v, want empty recorded", i, o.ValidationError)
		}
	}
	if err := env.Sim.SetKnobs("samsar", providersim.Knobs{CompleteAfter: quick}); err != nil {
		t.Fatal(err)
	}
	env.Enqueue(reelqtest.SamsarJob("off-valid"))
	r = env.Results(3, time.Minute)["off-valid"]
	if len(r) != 1 || r[0].Status != reelq.StatusSucceeded || len(r[0].Outputs) != 1 || r[0].Outputs[0].ValidationError != nil ||
		r[0].Outputs[0].Media == nil || r[0].Outputs[0].Media.Type != "video/mp4" {
		t.Fatalf("off-valid: %+v, want a success with a checked video", r)
	}
	for id, r := range env.Results(3, time.Minute) {
		for i, o := range r[0].Outputs {
			if o.Archive != nil || o.ArchiveError != "" {
				t.Errorf("%s output %d: archive %+v, archive_error %q; want neither with archiving off", id, i, o.Archive, o.ArchiveError)
			}
		}
	}
}

// startOutputRetry runs a worker (with cfg, and the provider's settings s
// with OutputPolicy retry) whose first submission's output fails its
// media check, the next one's not: the simulator is mended at the
// second reservation (batch "test" has a budget of 500 credits, 50 a
// job), before that submission's paid call.
func startOutputRetry(t *testing.T, cfg worker.Config, s reelqtest.Settings) *reelqtest.Env {
	t.Helper()
	quick := providersim.Duration(30 * time.Millisecond)
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: quick, OutputBroken: providersim.BrokenTruncated}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := env.Inspector.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "test", Amount: 500, Unit: "credits"}); err != nil {
		t.Fatal(err)
	}
	s.OutputPolicy = worker.OutputRetry
	w := env.StartWorker(reelqtest.WorkerOptions{Archive: true, Config: cfg, Providers: map[string]reelqtest.Settings{"samsar": s}})
	var reserved atomic.Int32
	w.W.SetAfterReserve(func(string) {
		if reserved.Add(1) == 2 {
			if err := env.Sim.SetKnobs("samsar", providersim.Knobs{CompleteAfter: quick}); err != nil {
				t.Error(err)
			}
		}
	})
	return env
}

// A retry whose new submission delivers a valid output succeeds: one
// result, output_retries 1, the cost of both submissions, pay_once
// guaranteed, the new output archived under <index>.retry1 while the
// broken one stays under <index>. (The simulator is mended at the
// second reservation, before that submission's paid call.)
func TestOutputRetryThenSuccess(t *testing.T) {
	t.Parallel()
	const perJob = 50.0
	env := startOutputRetry(t, worker.Config{}, reelqtest.Settings{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	j := reelqtest.SamsarJob("retry-ok")
	env.Enqueue(j)
	rs := env.Results(1, time.Minute)[j.ID]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || len(rs[0].Outputs) != 1 || rs[0].Outputs[0].ValidationError != nil {
		t.Fatalf("%s: %+v, want one success with a valid output", j.ID, rs)
	}
	r := rs[0]
	if r.OutputRetries != 1 || r.Cost == nil || r.Cost.Amount != 2*perJob || r.PayOnce != reelq.PayOnceGuaranteed {
		t.Errorf("output_retries %d, cost %+v, pay_once %s; want 1, %v credits, guaranteed", r.OutputRetries, r.Cost, r.PayOnce, 2*perJob)
	}
	if a := r.Outputs[0].Archive; a == nil || a.Key != archive.Key(j.ID, 1, 0)+".retry1" {
		t.Errorf("archived as %+v, want key %s.retry1", a, archive.Key(j.ID, 1, 0))
	}
	store, err := archive.NewJetStreamStore(ctx, env.JS, archive.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := store.Stat(ctx, archive.Key(j.ID, 1, 0)); err != nil || c.Size == 0 {
		t.Errorf("the broken first output's copy: %+v, %v; want it kept", c, err)
	}
	if got := totalSubmissions(env, "samsar"); got != 2 {
		t.Errorf("provider saw %d submissions, want 2", got)
	}
	// The second submission, made within the delivery after the first was
	// recorded, polled and checked, sends the job's original input (the
	// job keeps it once, in its message: see within in intake.go).
	tasks := env.Sim.Tasks("samsar")
	if len(tasks) != 2 {
		t.Errorf("the simulator lists %d tasks, want 2", len(tasks))
	}
	for i, task := range tasks {
		if task.Key != reelqtest.SamsarPrompt(j.ID) {
			t.Errorf("submission %d sent prompt %q, want the job's %q", i+1, task.Key, reelqtest.SamsarPrompt(j.ID))
		}
	}
}
