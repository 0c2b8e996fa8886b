package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
	"github.com/reelq/reelq/internal/worker"
)

// publishRaw publishes a message as any producer could, bypassing the
// client's checks.
func publishRaw(t *testing.T, env *reelqtest.Env, subj string, data []byte, hdr map[string]string) {
	t.Helper()
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	for k, v := range hdr {
		m.Header.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := env.JS.PublishMsg(ctx, m); err != nil {
		t.Fatalf("publish %s: %v", subj, err)
	}
}

// A message can only ever affect its own job: unreadable, contradictory
// or conflicting messages naming a running job are dead-lettered and
// answered under seq-<stream sequence>, and the victim's state and result
// are untouched. (Before, a malformed message on jobs.samsar.<victim> was
// answered under the victim's id and overwrote its paid state.)
func TestMessageOnlyAffectsItsOwnJob(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(1500 * time.Millisecond)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {PollInterval: 50 * time.Millisecond}}})
	victim := reelqtest.SamsarJob("victim")
	env.Enqueue(victim)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitfor.Job(t, env.JS, "victim", 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseSubmitted })

	other := reelqtest.SamsarJob("victim")
	other.Input = []byte(`{"prompt":"something else entirely","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)
	otherData, _ := json.Marshal(other)
	publishRaw(t, env, "jobs.samsar.victim", []byte("{oops"), nil)                                                               // unreadable
	publishRaw(t, env, "jobs.samsar.victim", []byte(`{"id":"victim","provider":"vimmerse","input":{}}`), nil)                    // wrong provider
	publishRaw(t, env, "jobs.samsar.victim", []byte(`{"id":"someone-else","provider":"samsar","input":{"a":1}}`), nil)           // id disagrees
	publishRaw(t, env, "jobs.samsar.victim", []byte(`{"provider":"samsar","input":{}}`), map[string]string{"Nats-Msg-Id": "x9"}) // msg id disagrees
	publishRaw(t, env, "jobs.samsar.victim", otherData, nil)                                                                     // known id, other content

	results := env.Results(6, time.Minute)
	if rs := results["victim"]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Fatalf("victim: %+v, want exactly one success", rs)
	}
	codes := map[string]int{}
	for id, rs := range results {
		if id == "victim" {
			continue
		}
		if !strings.HasPrefix(id, "seq-") || len(rs) != 1 || rs[0].Status != reelq.StatusFailed || rs[0].Error == nil {
			t.Errorf("%s: %+v, want one failed result under a seq- id", id, rs)
			continue
		}
		codes[rs[0].Error.Code]++
	}
	if codes[reelq.CodeInvalidRequest] != 4 || codes[reelq.CodeConflict] != 1 {
		t.Errorf("codes %v, want 4 invalid_request and 1 conflict", codes)
	}
	st, _, err := env.States.Get(ctx, "victim")
	if err != nil {
		t.Fatal(err)
	}
	if r := st.StoredResult(); st.Phase != reelq.PhaseFinished || r == nil || r.Status != reelq.StatusSucceeded || st.Digest != victim.Digest() {
		t.Errorf("victim state %+v, want finished, succeeded, with its own digest", st)
	}
	if got := totalSubmissions(env, "samsar"); got != 1 {
		t.Errorf("provider saw %d submissions, want 1", got)
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamDLQ); got != 5 {
		t.Errorf("DLQ holds %d messages, want 5", got)
	}
}

// A 2xx submit without a usable task id is a contract break: the job fails
// once with unknown_submission (the raw answer kept), is never resubmitted,
// and the provider pauses for every replica so the rest of the batch does
// not pay for nothing. (Before, it was retried: 5 paid submissions per job,
// for every job.)
func TestUnknownSubmissionFailsOncePausesProvider(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {MissingTaskID: true}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 1}}})
	jobs := reelqtest.Jobs(4, "nid", reelqtest.SamsarJob)
	env.Enqueue(jobs...)
	results := env.Results(1, time.Minute)
	var failed reelq.Result
	for _, rs := range results {
		failed = rs[0]
	}
	if failed.Status != reelq.StatusFailed || failed.Error == nil || failed.Error.Code != reelq.CodeUnknownSubmission || failed.Attempts != 1 {
		t.Fatalf("result %+v, want failed with unknown_submission after 1 attempt", failed)
	}
	st := env.WaitProviderState("samsar", 10*time.Second, func(s providerstate.State) bool { return s.Paused })
	if st.Code != providerstate.CodeUnknownSubmission || st.NextProbeAt != nil {
		t.Errorf("provider state %+v, want paused for an operator with code %s", st, providerstate.CodeUnknownSubmission)
	}
	// Nothing else is paid while paused.
	if got := totalSubmissions(env, "samsar"); got != 1 {
		t.Errorf("provider saw %d submissions, want 1 (never resubmitted, the rest held)", got)
	}
}

// A 403 about one job (a private workflow, a template the account may not
// use) fails that job with forbidden; the provider keeps running. (Before,
// one job's 403 paused the provider for every replica, again after every
// resume.)
func TestForbiddenJobDoesNotPauseProvider(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(30 * time.Millisecond), ForbiddenMarker: providersim.ForbiddenMarker}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 2}}})
	bad := reelqtest.SamsarJob("forbidden-1")
	bad.Input = []byte(`{"prompt":"a private thing ` + providersim.ForbiddenMarker + `","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)
	jobs := append([]reelq.Job{bad}, reelqtest.Jobs(4, "fine", reelqtest.SamsarJob)...)
	env.Enqueue(jobs...)
	results := env.Results(len(jobs), time.Minute)
	if rs := results["forbidden-1"]; len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != reelq.CodeForbidden {
		t.Fatalf("forbidden-1: %+v, want one failed result with code forbidden", rs)
	}
	for _, j := range jobs[1:] {
		if rs := results[j.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
			t.Errorf("%s: %+v, want success (the provider must keep running)", j.ID, rs)
		}
	}
	if st, _, _ := env.ProviderStore().Get(context.Background(), "samsar"); st.Paused {
		t.Errorf("provider paused: %+v", st)
	}
}

// Submits that time out are ambiguous (the provider may have started a
// paid task): after AmbiguousPauseAfter within the window, the provider is
// paused for an operator instead of paying again and again.
func TestAmbiguousSubmitsPauseProvider(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CreateDelayMin: providersim.Duration(2 * time.Second)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {
		MaxInflight: 1, RequestTimeout: 300 * time.Millisecond, AmbiguousPauseAfter: 3, AmbiguousWindow: time.Minute}},
		Config: worker.Config{RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond, MaxAttempts: 10}})
	env.Enqueue(reelqtest.Jobs(3, "amb", reelqtest.SamsarJob)...)
	st := env.WaitProviderState("samsar", 30*time.Second, func(s providerstate.State) bool { return s.Paused })
	if st.Code != providerstate.CodeAmbiguous || st.NextProbeAt != nil || !strings.Contains(st.Reason, "without an answer") {
		t.Errorf("provider state %+v, want paused for an operator with code %s", st, providerstate.CodeAmbiguous)
	}
	if got := totalSubmissions(env, "samsar"); got != 3 {
		t.Errorf("provider charged %d submissions, want exactly 3 (the threshold)", got)
	}
}

// With the hold policy, a submission whose outcome is unknown is never
// paid twice: the job waits in phase held (holding no slot) until an
// operator resolves it with the task found on the provider's dashboard;
// it then completes with that task and exactly one submission.
func TestAmbiguousHoldAndResolve(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CreateDelayMin: providersim.Duration(1500 * time.Millisecond),
		CompleteAfter: providersim.Duration(50 * time.Millisecond)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {
		RequestTimeout: 300 * time.Millisecond, Ambiguous: worker.AmbiguousHold, AmbiguousPauseAfter: -1}},
		Config: worker.Config{RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}})
	env.Enqueue(reelqtest.SamsarJob("held-1"))
	st := waitfor.Job(t, env.JS, "held-1", 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseHeld })
	if !strings.Contains(st.HeldReason, "enqueue resolve") {
		t.Errorf("held reason %q does not say how to resolve", st.HeldReason)
	}
	if got := totalSubmissions(env, "samsar"); got != 1 {
		t.Fatalf("provider charged %d submissions before the operator, want 1", got)
	}
	// stats shows the held job, for the provider and for its batch.
	if got := waitHeld(t, env, st.Batch, 1); got.Batches != nil && st.Batch != "" && (len(got.Batches) != 1 || got.Batches[0].Held != 1) {
		t.Errorf("batch %q stats %+v, want 1 held", st.Batch, got.Batches)
	}
	// The operator finds the task on the provider's side (here: the
	// simulator's task list) and resolves.
	task := simTaskFor(t, env, "samsar", reelqtest.SamsarPrompt("held-1"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := env.Inspector.Resolve(ctx, "held-1", inspect.ResolveOptions{TaskID: task}); err != nil {
		t.Fatal(err)
	}
	rs := env.Results(1, time.Minute)["held-1"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || rs[0].ProviderTaskID != task {
		t.Fatalf("held-1: %+v, want success with task %s", rs, task)
	}
	if got := totalSubmissions(env, "samsar"); got != 1 {
		t.Errorf("provider charged %d submissions, want 1 (never paid twice)", got)
	}
	waitHeld(t, env, st.Batch, 0)
}

// waitHeld waits until Stats counts want samsar jobs held (the mark is
// written just after the state) and returns those stats.
func waitHeld(t *testing.T, env *reelqtest.Env, batch string, want int) *inspect.Stats {
	t.Helper()
	var s *inspect.Stats
	waitfor.Until(t, 20*time.Second, fmt.Sprintf("stats to count %d held samsar jobs", want), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if s, err = env.Inspector.Stats(ctx, inspect.StatsOptions{Batch: batch}); err != nil {
			return err
		}
		for _, p := range s.Providers {
			if p.Provider == "samsar" && p.Held == want {
				return nil
			}
		}
		return fmt.Errorf("providers %+v", s.Providers)
	})
	return s
}

// simTaskFor finds the simulator's task id for a prompt, as an operator
// looks it up on the provider's dashboard.
func simTaskFor(t *testing.T, env *reelqtest.Env, provider, prompt string) string {
	t.Helper()
	id := env.Sim.TaskFor(provider, prompt)
	if id == "" {
		t.Fatalf("the simulator has no task for %q", prompt)
	}
	return id
}

// 429s never cost attempts: a provider that keeps answering 429 slows
// every replica down, and the job returns to the queue without using an
// attempt. (Before, 50 consecutive 429s counted as a failed attempt.)
func TestRateLimitsNeverCostAttempts(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {RateLimit: 0.001, RateBurst: 1, RetryAfter: providersim.Duration(time.Millisecond)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 2, Rate: 5000, Burst: 100}},
		Config: worker.Config{RateLimitBackoff: 5 * time.Millisecond}})
	// Burn the simulator's one-request burst so every submit is a 429.
	env.Enqueue(reelqtest.SamsarJob("rl-first"), reelqtest.SamsarJob("rl-1"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitfor.Until(t, 30*time.Second, "the provider to answer 80 submits with 429", func() error {
		if r := env.Sim.Stats(0)["samsar"].Requests; r["submit 429"] < 80 {
			return fmt.Errorf("requests %v", r)
		}
		return nil
	})
	// More than 50 429s in a row on rl-1's submit: still no attempt used.
	st, _, err := env.States.Get(ctx, "rl-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Attempts != 0 || st.Phase == reelq.PhaseFinished {
		t.Errorf("rl-1: %+v, want no attempt used and not finished", st)
	}
}

// SIGTERM (the worker's context ending) starts no new paid call: jobs
// pulled ahead go back to the queue at once, the call in flight finishes
// and is recorded, and nothing reaches the provider's create endpoint after
// the stop began.
func TestShutdownStartsNoPaidCall(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CreateDelayMin: providersim.Duration(400 * time.Millisecond),
		CompleteAfter: providersim.Duration(5 * time.Second)}})
	w := env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 4}},
		Config: worker.Config{ShutdownTimeout: 10 * time.Second}})
	env.Enqueue(reelqtest.Jobs(10, "term", reelqtest.SamsarJob)...)
	// Stop while a paid call is in flight.
	waitfor.Until(t, 30*time.Second, "a task to be created", func() bool { return env.Sim.Stats(0)["samsar"].Tasks > 0 })
	stopAt := time.Now()
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	// A call sent before the stop may arrive after it, however late on a
	// busy host; each holds one of the 4 slots, so at most 4 do. A worker
	// that started calls during its shutdown would start more as those in
	// flight ended.
	late := 0
	for _, created := range env.Sim.TaskTimes("samsar") {
		if created.After(stopAt) {
			late++
		}
	}
	if late > 4 {
		t.Errorf("%d paid calls reached the provider after the stop began, want at most the 4 that may have been in flight (%v)", late, env.Sim.TaskTimes("samsar"))
	}
	// Every created task is recorded: the next worker polls it, never pays again.
	env.StartWorker(reelqtest.WorkerOptions{ID: "second", Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 10}}})
	env.Sim.SetKnobs("samsar", providersim.Knobs{APIKey: reelqtest.APIKey("samsar"), CompleteAfter: providersim.Duration(50 * time.Millisecond)})
	results := env.Results(10, time.Minute)
	for id, rs := range results {
		if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || rs[0].Attempts != 1 {
			t.Errorf("%s: %+v, want one success after 1 attempt", id, rs)
		}
	}
	for prompt, n := range env.Sim.Stats(0)["samsar"].Submissions {
		if n != 1 {
			t.Errorf("%q paid %d times", prompt, n)
		}
	}
}

// Camb reports missing credits on the poll, so a successful create proves
// nothing: after a credit pause the provider resumes only when the probe
// job's poll answers something other than PAYMENT_REQUIRED. (Before, any
// create that went through resumed it: 6 pause/resume cycles in 20 s and
// 16-19 unpaid tasks per outage.)
func TestCambResumesOnlyWhenThePollIsPaid(t *testing.T) {
	t.Parallel()
	credits := 0.0
	env := reelqtest.New(t, map[string]providersim.Knobs{"camb": {CompleteAfter: providersim.Duration(50 * time.Millisecond), Credits: &credits}})
	resumed := env.Events("events.camb." + reelq.EventProviderResumed)
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"camb": {MaxInflight: 2, PollInterval: 20 * time.Millisecond}},
		Config: worker.Config{ProbeInterval: 200 * time.Millisecond, MaxProbeInterval: 400 * time.Millisecond}})
	var jobs []reelq.Job
	for i := range 6 {
		jobs = append(jobs, reelq.Job{ID: "camb-" + string(rune('a'+i)), Provider: "camb", Batch: "test",
			Input: []byte(`{"text":"A story number ` + string(rune('a'+i)) + `, told slowly.","source_language":1}`)})
	}
	env.Enqueue(jobs...)
	env.WaitProviderState("camb", 10*time.Second, func(s providerstate.State) bool { return s.Paused })
	// Let several probes run while the account stays empty.
	waitfor.Until(t, 20*time.Second, "4 credit probes", func() error {
		if r := env.Sim.Stats(0)["camb"].Requests; r["submit credits"] < 4 {
			return fmt.Errorf("requests %v", r)
		}
		return nil
	})
	select {
	case ev := <-resumed:
		t.Fatalf("resumed while credits were still missing: %+v", ev)
	default:
	}
	if err := env.Sim.SetCredits("camb", 1e6, false); err != nil {
		t.Fatal(err)
	}
	env.NextEvent(resumed, 20*time.Second)
	results := env.Results(len(jobs), time.Minute)
	for _, j := range jobs {
		if rs := results[j.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
			t.Errorf("%s: %+v", j.ID, rs)
		}
	}
}

// A failing balance endpoint (503 here) backs the probe off like an empty
// balance: every replica together calls it a handful of times, not at the
// full rate limit. (Before: 423 balance calls in 85 s, the whole budget,
// and the pause never ended by itself.)
func TestFailingBalanceEndpointBacksOff(t *testing.T) {
	t.Parallel()
	credits := 0.0
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {Credits: &credits, BalanceStatus: 503}})
	paused := env.Events("events.samsar." + reelq.EventProviderPaused)
	startReplicas(env, 3, map[string]reelqtest.Settings{"samsar": {MaxInflight: 2, Rate: 100}},
		worker.Config{ProbeInterval: 200 * time.Millisecond, MaxProbeInterval: 800 * time.Millisecond})
	env.Enqueue(reelqtest.Jobs(3, "bal", reelqtest.SamsarJob)...)
	env.NextEvent(paused, 20*time.Second)
	// Over the next ~3 s at most: probes at +0.2, +0.4 (doubled to 0.8 max) ...
	for range 3 {
		env.NextEvent(paused, 10*time.Second)
	}
	calls := 0
	for k, n := range env.Sim.Stats(0)["samsar"].Requests {
		if strings.HasPrefix(k, "credits ") || strings.HasPrefix(k, "balance ") {
			calls += n
		}
	}
	if calls == 0 || calls > 6 {
		t.Errorf("balance endpoint called %d times for 4 pauses (3 failed probes), want 3-6: %v", calls, env.Sim.Stats(0)["samsar"].Requests)
	}
}

// JobTimeout polls once more before failing, then cancels the task at the
// provider where the API allows (Vimmerse): nothing runs on unseen.
func TestJobTimeoutPollsLastAndCancels(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"vimmerse": {CompleteAfter: providersim.Duration(time.Hour)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"vimmerse": {JobTimeout: 300 * time.Millisecond, PollInterval: 100 * time.Millisecond}}})
	env.Enqueue(reelqtest.VimmerseJob("slow-1"))
	rs := env.Results(1, time.Minute)["slow-1"]
	if len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != reelq.CodeTimeout {
		t.Fatalf("slow-1: %+v, want failed with timeout", rs)
	}
	st := env.Sim.Stats(0)["vimmerse"]
	if st.Requests["cancel 200"]+st.Requests["delete 200"] != 1 {
		t.Errorf("the task was not cancelled at the provider: %v", st.Requests)
	}
}

// The job timeout looks once more before failing: a task that finished
// before the poll that noticed the deadline had passed is a success, not
// a paid task thrown away (before, the deadline failed the job without
// that last poll). The deadline is 300 ms and the first poll comes at
// about 1 s, never earlier however loaded the host, so it is always that
// last look; the task ended at 100 ms.
func TestJobTimeoutLooksOnceMoreBeforeFailing(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"vimmerse": {CompleteAfter: providersim.Duration(100 * time.Millisecond)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"vimmerse": {JobTimeout: 300 * time.Millisecond, PollInterval: time.Second}}})
	env.Enqueue(reelqtest.VimmerseJob("late-done-1"))
	rs := env.Results(1, time.Minute)["late-done-1"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Fatalf("late-done-1: %+v, want succeeded (the last poll finds the task done)", rs)
	}
	if st := env.Sim.Stats(0)["vimmerse"]; st.Requests["cancel 200"]+st.Requests["delete 200"] != 0 {
		t.Errorf("a finished task was cancelled: %v", st.Requests)
	}
}

// A submitted job that runs out of attempts (its task's status cannot be
// read) has its task cancelled at the provider where the API allows, so it
// does not run on unseen and billed; it is never submitted again.
func TestAttemptsExhaustedCancelTheTask(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"vimmerse": {CompleteAfter: providersim.Duration(time.Hour), PollErrorRate: 1}})
	env.StartWorker(reelqtest.WorkerOptions{
		Providers: map[string]reelqtest.Settings{"vimmerse": {PollInterval: 20 * time.Millisecond, PollErrorBudget: 200 * time.Millisecond}},
		Config:    worker.Config{MaxAttempts: 2, RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}})
	env.Enqueue(reelqtest.VimmerseJob("unreadable-1"))
	rs := env.Results(1, time.Minute)["unreadable-1"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusFailed || rs[0].Attempts != 2 || rs[0].Error == nil || !strings.Contains(rs[0].Error.Message, "gave up after 2 attempts") {
		t.Fatalf("unreadable-1: %+v, want failed after 2 attempts", rs)
	}
	st := env.Sim.Stats(0)["vimmerse"]
	if st.Requests["cancel 200"]+st.Requests["delete 200"] != 1 || st.Tasks != 1 || st.Active != 0 {
		t.Errorf("provider: requests %v, tasks %d, active %d; want its one task cancelled", st.Requests, st.Tasks, st.Active)
	}
}

// A job-state outage (the bucket gone) loses no job and marks none as
// poison: the messages stay held and heartbeated, using no delivery, and
// every job finishes once the bucket is back. (Before, each failed state
// read was a Nak(5s) counted against MaxDeliver: an outage of ~8 minutes
// swept queued jobs as poison.)
func TestJobStateOutageLosesNothing(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(30 * time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}},
		Config: worker.Config{MaxDeliver: 3, AckWait: 2 * time.Second}})
	// The outage begins before the worker sees any job.
	if err := env.JS.DeleteKeyValue(ctx, queue.BucketJobs); err != nil {
		t.Fatal(err)
	}
	jobs := reelqtest.Jobs(5, "outage", reelqtest.SamsarJob)
	for _, j := range jobs {
		publishRaw(t, env, wire.JobSubject("samsar", "", j.ID), mustJSON(t, j), map[string]string{wire.HeaderMsgID: j.ID})
	}
	// Long enough for MaxDeliver 3 to be used up many times over by the
	// old behaviour (a Nak per failed read), and for heartbeats to matter.
	outage := time.NewTimer(6 * time.Second)
	<-outage.C
	if _, err := env.JS.CreateKeyValue(ctx, (queue.Layout{}).KeyValueConfigs()[0]); err != nil {
		t.Fatal(err)
	}
	results := env.Results(len(jobs), time.Minute)
	for _, j := range jobs {
		if rs := results[j.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
			t.Errorf("%s: %+v, want one success", j.ID, rs)
		}
	}
	if n := natstest.StreamMsgs(t, env.JS, queue.StreamDLQ); n != 0 {
		t.Errorf("%d messages dead-lettered during the outage", n)
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

// A provider whose engine cannot start stops the engines already started:
// Run returns the error, and no goroutine is left behind (goleak checks in
// TestMain). (Before, the pullers already started spun in a hot Nak loop.)
func TestEngineStartFailureStopsTheOthers(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, nil)
	nc, js := natstest.Connect(t, env.Server)
	kv, err := js.KeyValue(context.Background(), queue.BucketRateLimit)
	if err != nil {
		t.Fatal(err)
	}
	lim := ratelimit.New(ratelimit.NewKVStore(kv), "samsar", ratelimit.Config{Rate: 100})
	rts := map[string]*worker.Runtime{
		"samsar": {Provider: env.Provider("samsar"), Limiter: lim, MaxInflight: 2},
		"bo.gus": {Provider: env.Provider("samsar"), Limiter: lim, MaxInflight: 2}, // not a valid consumer name: its consumers cannot exist
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := worker.New(ctx, nc, js, worker.Config{WorkerID: "start-fail"}, rts)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(ctx); err == nil || !strings.Contains(err.Error(), "bo.gus") {
		t.Fatalf("Run = %v, want the bogus provider's error", err)
	}
}

// Without P_AMBIGUOUS, a provider that cannot recover a lost submission
// (Recovery none) holds a job whose estimate is above its HoldAbove
// (Samsar: 600 credits) and submits a cheaper one again; every result
// says whether its run was paid once: best_effort for the resubmitted
// job, guaranteed for the held one resolved with its task and for a job
// answered at once. (Before, the default resubmitted every job.)
func TestAmbiguousDefaultFollowsTheEstimate(t *testing.T) {
	t.Parallel()
	slow := providersim.Knobs{CreateDelayMin: providersim.Duration(1500 * time.Millisecond), CompleteAfter: providersim.Duration(50 * time.Millisecond)}
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": slow})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {
		RequestTimeout: 300 * time.Millisecond, AmbiguousPauseAfter: -1}},
		Config: worker.Config{RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}})
	dear := reelqtest.SamsarJob("dear-1")
	dear.Input = []byte(`{"prompt":"` + reelqtest.SamsarPrompt("dear-1") + `","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":90}`)
	env.Enqueue(dear, reelqtest.SamsarJob("cheap-1"))
	// Both first creates are charged and answered too late; then the
	// provider answers at once.
	charged := func(id string) int { return env.Sim.Stats(0)["samsar"].Submissions[reelqtest.SamsarPrompt(id)] }
	waitfor.Until(t, 30*time.Second, "both first creates charged", func() bool { return charged("dear-1") >= 1 && charged("cheap-1") >= 1 })
	fast := slow
	fast.CreateDelayMin, fast.APIKey = 0, reelqtest.APIKey("samsar")
	if err := env.Sim.SetKnobs("samsar", fast); err != nil {
		t.Fatal(err)
	}
	st := waitfor.Job(t, env.JS, "dear-1", 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseHeld })
	if !strings.Contains(st.HeldReason, "enqueue resolve") {
		t.Errorf("held reason %q", st.HeldReason)
	}
	rs := env.Results(1, time.Minute)["cheap-1"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || rs[0].PayOnce != reelq.PayOnceBestEffort || charged("cheap-1") < 2 {
		t.Fatalf("cheap-1: %+v after %d charges, want success, pay_once best_effort, charged at least twice", rs, charged("cheap-1"))
	}
	if n := charged("dear-1"); n != 1 {
		t.Fatalf("dear-1 charged %d times before the operator, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := env.Inspector.Resolve(ctx, "dear-1", inspect.ResolveOptions{TaskID: simTaskFor(t, env, "samsar", reelqtest.SamsarPrompt("dear-1"))}); err != nil {
		t.Fatal(err)
	}
	env.Enqueue(reelqtest.SamsarJob("plain-1"))
	results := env.Results(3, time.Minute)
	for _, id := range []string{"dear-1", "plain-1"} {
		if rs := results[id]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || rs[0].PayOnce != reelq.PayOnceGuaranteed {
			t.Errorf("%s: %+v, want success with pay_once guaranteed", id, rs)
		}
	}
	if n := charged("dear-1"); n != 1 {
		t.Errorf("dear-1 charged %d times, want 1", n)
	}
}
