package worker_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/reelq/reelq"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/worker"
)

// Tests of issue 4: a provider's limits belong to the account, so every
// replica together must stay inside them, and a credit or auth problem
// stops every replica without failing or losing a job.

// startReplicas starts n worker replicas with the same settings.
func startReplicas(env *reelqtest.Env, n int, settings map[string]reelqtest.Settings, cfg worker.Config) []*reelqtest.Running {
	var rs []*reelqtest.Running
	for i := range n {
		rs = append(rs, env.StartWorker(reelqtest.WorkerOptions{ID: fmt.Sprintf("replica-%d", i), Providers: settings, Config: cfg}))
	}
	return rs
}

// checkSucceededOnce asserts that every job has exactly one result, that it
// succeeded on the first attempt, and that the provider saw exactly one
// paid submission for it (key maps a job id to the simulator's
// submission key).
func checkSucceededOnce(t *testing.T, env *reelqtest.Env, provider string, jobs []reelq.Job, results map[string][]reelq.Result, key func(id string) string) {
	t.Helper()
	subs := env.Sim.Stats(0)[provider].Submissions
	for _, j := range jobs {
		rs := results[j.ID]
		if len(rs) != 1 {
			t.Errorf("job %s: %d results, want 1: %+v", j.ID, len(rs), rs)
			continue
		}
		if r := rs[0]; r.Status != reelq.StatusSucceeded || r.Attempts != 1 || r.ProviderTaskID == "" {
			t.Errorf("job %s: status=%s attempts=%d task=%q error=%+v, want succeeded after 1 attempt", j.ID, r.Status, r.Attempts, r.ProviderTaskID, r.Error)
		}
		if got := subs[key(j.ID)]; got != 1 {
			t.Errorf("job %s: submitted %d times, want 1", j.ID, got)
		}
	}
	if got, want := natstest.StreamMsgs(t, env.JS, queue.StreamResults), uint64(len(results)); got != want {
		t.Errorf("RESULTS holds %d events for %d jobs, want one each", got, want)
	}
}

// checkNoAttemptUsed asserts that no job has used an attempt or finished
// in anything but success so far (jobs not yet pulled have no state).
func checkNoAttemptUsed(t *testing.T, env *reelqtest.Env, jobs []reelq.Job) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, j := range jobs {
		st, _, err := env.States.Get(ctx, j.ID)
		if errors.Is(err, jobstate.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if st.Attempts != 0 {
			t.Errorf("job %s: %d attempts used while the provider was paused, want 0 (last error %q)", j.ID, st.Attempts, st.LastError)
		}
		if st.Phase == reelq.PhaseFinished && !strings.Contains(string(st.Result), `"status":"succeeded"`) {
			t.Errorf("job %s finished while the provider was paused: %s", j.ID, st.Result)
		}
	}
}

// (a) Three replicas share one account's rate and concurrency limits: the
// provider's own counters never see more than the limits allow, and every
// job is paid for once and succeeds once.
func TestLimitsHoldAcrossReplicas(t *testing.T) {
	t.Parallel()
	const (
		rate        = 10.0
		burst       = 2
		maxInflight = 4
		n           = 40
	)
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {
		CompleteAfter: providersim.Duration(100 * time.Millisecond), Jitter: providersim.Duration(50 * time.Millisecond)}})
	startReplicas(env, 3, map[string]reelqtest.Settings{"samsar": {
		Rate: rate, Burst: burst, MaxInflight: maxInflight, PollInterval: 200 * time.Millisecond}}, worker.Config{})
	jobs := reelqtest.Jobs(n, "rate", reelqtest.SamsarJob)
	// All three priorities at once: the rate and the cap are the
	// provider's, whatever consumer a job comes from.
	for i := range jobs {
		jobs[i].Priority = reelq.Priorities[i%len(reelq.Priorities)]
	}
	began := time.Now() // no provider call before the jobs exist
	env.Enqueue(jobs...)
	results := env.Results(n, 2*time.Minute)
	checkSucceededOnce(t, env, "samsar", jobs, results, reelqtest.SamsarPrompt)
	for _, j := range jobs {
		if rs := results[j.ID]; len(rs) == 1 && rs[0].Priority.Or() != j.Priority.Or() {
			t.Errorf("%s: result priority %q, want %q", j.ID, rs[0].Priority, j.Priority)
		}
	}

	checkRateOverRun(t, env, "samsar", began, rate, burst)
	st := env.Sim.Stats(0)["samsar"]
	if st.MaxActive > maxInflight {
		t.Errorf("provider saw %d tasks running at once; the cap is %d", st.MaxActive, maxInflight)
	}
	if st.Requests["submit 429"]+st.Requests["poll 429"] != 0 {
		t.Errorf("provider answered 429s: %v", st.Requests)
	}
	t.Logf("provider: %d requests, max %d active (cap %d)", st.TotalRequests, st.MaxActive, maxInflight)
}

// checkRateOverRun asserts that provider saw no more than Burst + Rate·T
// requests in the T since began (before any call could be made): the bound
// the limiter keeps on its decisions, which arrivals can only trail. The
// most requests that arrived within 1 s is logged, a figure: on a busy
// host requests decided apart can arrive together.
// (TestWaitManyWaitersFakeTime checks the window bound exactly.)
func checkRateOverRun(t *testing.T, env *reelqtest.Env, provider string, began time.Time, rate float64, burst int) {
	t.Helper()
	span := time.Since(began)
	st := env.Sim.Stats(time.Second)[provider]
	t.Logf("%s: %d requests in %v (%.1f/s; limit %.0f/s, burst %d), max %d arrived within 1s",
		provider, st.TotalRequests, span.Round(time.Millisecond), float64(st.TotalRequests)/span.Seconds(), rate, burst, st.MaxInWindow)
	if bound := burst + int(rate*span.Seconds()); st.TotalRequests > bound {
		t.Errorf("provider saw %d requests in %v; the limit allows %d (%.0f/s, burst %d)", st.TotalRequests, span, bound, rate, burst)
	}
}

// Every HTTP request counts against the limit, not only the first of each
// provider call: Camb's poll of a finished story reads the status and then
// the result, two requests for one call.
func TestEveryRequestIsRateLimited(t *testing.T) {
	t.Parallel()
	const (
		rate  = 8.0
		burst = 1
		n     = 8
	)
	env := reelqtest.New(t, map[string]providersim.Knobs{"camb": {CompleteAfter: providersim.Duration(50 * time.Millisecond)}})
	startReplicas(env, 2, map[string]reelqtest.Settings{"camb": {
		Rate: rate, Burst: burst, MaxInflight: 4, PollInterval: 150 * time.Millisecond}}, worker.Config{})
	jobs := reelqtest.Jobs(n, "camb", cambJob)
	began := time.Now() // no provider call before the jobs exist
	env.Enqueue(jobs...)
	results := env.Results(n, time.Minute)
	checkSucceededOnce(t, env, "camb", jobs, results, cambText)
	st := env.Sim.Stats(time.Second)["camb"]
	if st.Requests["result 200"] != n {
		t.Fatalf("provider served %d story results, want %d (one per job): %v", st.Requests["result 200"], n, st.Requests)
	}
	checkRateOverRun(t, env, "camb", began, rate, burst)
}

func cambJob(id string) reelq.Job {
	return reelq.Job{ID: id, Provider: "camb", Batch: "test", Input: []byte(`{"text":"` + cambText(id) + `","source_language":1}`)}
}

// cambText is the story cambJob(id) narrates, which the simulator counts
// submissions by.
func cambText(id string) string { return "Once upon a time, job " + id }

// A provider's 429 slows every replica down through the shared limiter
// (Retry-After) and is retried without using any job's attempts. The
// account allows 10/s without a burst: two calls within 100 ms (the first
// jobs start together, our burst is 2) meet a 429, however slow the host.
func TestProvider429UsesNoAttempts(t *testing.T) {
	t.Parallel()
	const n = 9
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {
		CompleteAfter: providersim.Duration(100 * time.Millisecond),
		RateLimit:     10, RateBurst: 1, RetryAfter: providersim.Duration(time.Second)}})
	limited := env.Events("events.samsar.rate_limited")
	// Our limit is set higher than the account's, as after a plan change.
	startReplicas(env, 3, map[string]reelqtest.Settings{"samsar": {
		Rate: 25, Burst: 2, MaxInflight: 4, PollInterval: 50 * time.Millisecond}}, worker.Config{MaxAttempts: 2})
	jobs := reelqtest.Jobs(n, "429", reelqtest.SamsarJob)
	env.Enqueue(jobs...)
	results := env.Results(n, 2*time.Minute)
	checkSucceededOnce(t, env, "samsar", jobs, results, reelqtest.SamsarPrompt)

	st := env.Sim.Stats(0)["samsar"]
	if got := st.Requests["submit 429"] + st.Requests["poll 429"]; got == 0 {
		t.Fatalf("provider answered no 429 (requests %v); the test did not exercise rate limiting", st.Requests)
	}
	if ev := env.NextEvent(limited, 10*time.Second); ev.Until == nil {
		t.Errorf("rate_limited event without until: %+v", ev)
	}
	t.Logf("provider requests: %v", st.Requests)
}

// Retryable failures use attempts, with back-off, until MaxAttempts; then
// the job fails naming the last error. A task the provider failed is not
// retried at all.
func TestRetryableErrorsUseAttemptsThenFail(t *testing.T) {
	t.Parallel()
	const maxAttempts = 3
	env := reelqtest.New(t, map[string]providersim.Knobs{
		"samsar":   {ErrorRate: 1},
		"vimmerse": {CompleteAfter: providersim.Duration(50 * time.Millisecond), FailRate: 1},
	})
	retries := env.Events("events.samsar.retry")
	env.StartWorker(reelqtest.WorkerOptions{
		Providers: map[string]reelqtest.Settings{"samsar": {}, "vimmerse": {}},
		Config:    worker.Config{MaxAttempts: maxAttempts, RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond},
	})
	env.Enqueue(reelqtest.SamsarJob("always-5xx"), reelqtest.VimmerseJob("task-fails"))
	results := env.Results(2, time.Minute)

	r := results["always-5xx"]
	if len(r) != 1 || r[0].Status != reelq.StatusFailed || r[0].Error == nil {
		t.Fatalf("always-5xx: %+v, want one failed result", r)
	}
	if r[0].Attempts != maxAttempts {
		t.Errorf("always-5xx: attempts = %d, want %d", r[0].Attempts, maxAttempts)
	}
	if r[0].Error.Code != "unavailable" {
		t.Errorf("always-5xx: code %q, want unavailable (the last error's class)", r[0].Error.Code)
	}
	for _, want := range []string{fmt.Sprintf("gave up after %d attempts", maxAttempts), "last error: samsar submit: provider temporarily unavailable (HTTP 50"} {
		if !strings.Contains(r[0].Error.Message, want) {
			t.Errorf("always-5xx: error %q does not say %q", r[0].Error.Message, want)
		}
	}
	st := env.Sim.Stats(0)["samsar"]
	if got := st.Requests["submit 503"]; got != maxAttempts {
		t.Errorf("provider saw %d submissions, want one per attempt (%d): %v", got, maxAttempts, st.Requests)
	}
	for i := 1; i < maxAttempts; i++ {
		if ev := env.NextEvent(retries, 10*time.Second); ev.Attempt != i || ev.Code != "unavailable" || ev.Until == nil {
			t.Errorf("retry event %d: %+v, want attempt %d, code unavailable, with until", i, ev, i)
		}
	}
	js, _, err := env.States.Get(context.Background(), "always-5xx")
	if err != nil {
		t.Fatal(err)
	}
	if js.Attempts != maxAttempts {
		t.Errorf("job state attempts = %d, want %d", js.Attempts, maxAttempts)
	}

	v := results["task-fails"]
	if len(v) != 1 || v[0].Status != reelq.StatusFailed || v[0].Error == nil || v[0].Error.Code != "provider_failed" || v[0].Attempts != 1 {
		t.Fatalf("task-fails: %+v, want one failed result with code provider_failed after 1 attempt", v)
	}
	if got := env.Sim.Stats(0)["vimmerse"].Submissions[reelqtest.VimmerseTitle("task-fails")]; got != 1 {
		t.Errorf("task-fails submitted %d times, want 1 (a failed task is not retried)", got)
	}
}

// (b) Credits run out mid-batch with three replicas: every replica pauses
// the provider (server-side consumer pause, provider state, event), no job
// fails or uses an attempt, a probe checks back (and fails once, backing
// off), and when credits are topped up every job finishes exactly once.
func TestCreditsExhaustedPausesEveryReplica(t *testing.T) {
	t.Parallel()
	cases := []struct {
		provider string
		job      func(id string) reelq.Job
		key      func(id string) string
		credits  float64 // enough for a few jobs, then exactly 0
		probe    string  // how the provider is probed
	}{
		{"samsar", reelqtest.SamsarJob, reelqtest.SamsarPrompt, 150, "credit endpoint"},    // 50 per job
		{"vimmerse", reelqtest.VimmerseJob, reelqtest.VimmerseTitle, 200, "one job alone"}, // 100 per job
		{"fal", falJob, hubPrompt, 2.8, "one job alone"},                                   // $1.40 per job; 403 "User is locked"
		{"replicate", replicateJob, hubPrompt, 0.7, "one job alone"},                       // $0.35 per job; 402 "Insufficient credit"
	}
	for _, tc := range cases {
		t.Run(tc.provider, func(t *testing.T) {
			t.Parallel()
			const n = 10
			p := tc.provider
			credits := tc.credits
			env := reelqtest.New(t, map[string]providersim.Knobs{p: {CompleteAfter: providersim.Duration(100 * time.Millisecond), Credits: &credits}})
			paused := env.Events("events." + p + "." + reelq.EventProviderPaused)
			resumed := env.Events("events." + p + "." + reelq.EventProviderResumed)
			replicas := startReplicas(env, 3, map[string]reelqtest.Settings{p: {MaxInflight: 4, PollInterval: 50 * time.Millisecond}},
				worker.Config{ProbeInterval: time.Second, MaxProbeInterval: 2 * time.Second})
			jobs := reelqtest.Jobs(n, "credits-"+p, tc.job)
			env.Enqueue(jobs...)

			ev := env.NextEvent(paused, 30*time.Second)
			if ev.Code != providerstate.CodeCredits || ev.Until == nil {
				t.Errorf("paused event %+v, want code %s with the probe time", ev, providerstate.CodeCredits)
			}
			// A pause holds paid calls, not deliveries.
			if info := env.ConsumerInfo(p); info.Paused {
				t.Errorf("consumer %s paused on the server", p)
			}
			st := env.WaitProviderState(p, 10*time.Second, func(s providerstate.State) bool { return s.Paused })
			if st.Code != providerstate.CodeCredits || st.Since == nil || st.NextProbeAt == nil || !strings.Contains(st.Reason, "credits") {
				t.Errorf("provider state %+v, want paused with code %s, since, next probe and a reason", st, providerstate.CodeCredits)
			}
			for _, r := range replicas {
				env.WaitReplicaView(r, p, 10*time.Second, func(s providerstate.State) bool { return s.Paused })
			}
			checkNoAttemptUsed(t, env, jobs)

			// The first probe finds no credits: paused again, for longer.
			ev2 := env.NextEvent(paused, 10*time.Second)
			if ev2.Code != providerstate.CodeCredits || ev2.Until == nil || !ev2.Until.After(*ev.Until) {
				t.Errorf("paused event after the probe (%s) %+v, want code %s and a later probe time than %v", tc.probe, ev2, providerstate.CodeCredits, ev.Until)
			}
			checkNoAttemptUsed(t, env, jobs)

			if err := env.Sim.SetCredits(p, 1e6, false); err != nil {
				t.Fatal(err)
			}
			results := env.Results(n, time.Minute)
			checkSucceededOnce(t, env, p, jobs, results, tc.key)
			if ev := env.NextEvent(resumed, 10*time.Second); ev.Provider != p {
				t.Errorf("resumed event %+v", ev)
			}
			if st, _, err := env.ProviderStore().Get(context.Background(), p); err != nil || st.Paused {
				t.Errorf("provider state after top-up: %+v, %v; want not paused", st, err)
			}
			if info := env.ConsumerInfo(p); info.Paused {
				t.Errorf("consumer %s still paused on the server", p)
			}
			stats := env.Sim.Stats(0)[p]
			if p == "samsar" && stats.Requests["credits 200"] < 2 {
				t.Errorf("credit endpoint called %d times, want a failed and a successful probe", stats.Requests["credits 200"])
			}
			// Refused submissions: the jobs in flight when credits ran out
			// (at most MaxInflight) plus, without a credit endpoint, one
			// per failed probe; never a stampede.
			if got, limit := stats.Requests["submit credits"], 4+1; got > limit {
				t.Errorf("provider refused %d submissions for credits, want at most %d", got, limit)
			}
			t.Logf("%s requests: %v", p, stats.Requests)
		})
	}
}

// The probe of a paused provider is not held up by long jobs the probing
// replica is still following.
func TestProbeNotBlockedByRunningJobs(t *testing.T) {
	t.Parallel()
	credits := 100.0 // one Vimmerse job
	env := reelqtest.New(t, map[string]providersim.Knobs{"vimmerse": {CompleteAfter: providersim.Duration(time.Minute), Credits: &credits}})
	submitted := env.Events("events.vimmerse." + reelq.EventSubmitted)
	paused := env.Events("events.vimmerse." + reelq.EventProviderPaused)
	env.StartWorker(reelqtest.WorkerOptions{
		Providers: map[string]reelqtest.Settings{"vimmerse": {MaxInflight: 3, PollInterval: 50 * time.Millisecond}},
		Config:    worker.Config{ProbeInterval: 300 * time.Millisecond, ShutdownTimeout: 500 * time.Millisecond},
	})
	env.Enqueue(reelqtest.VimmerseJob("long"))
	env.NextEvent(submitted, 30*time.Second)
	k := env.Sim.Knobs("vimmerse")
	k.CompleteAfter = providersim.Duration(50 * time.Millisecond)
	if err := env.Sim.SetKnobs("vimmerse", k); err != nil {
		t.Fatal(err)
	}
	jobs := reelqtest.Jobs(4, "short", reelqtest.VimmerseJob)
	env.Enqueue(jobs...)
	env.NextEvent(paused, 30*time.Second)
	if err := env.Sim.SetCredits("vimmerse", 1e6, false); err != nil {
		t.Fatal(err)
	}
	// "long" keeps running for a minute; the short jobs must not wait for it.
	results := env.Results(len(jobs), 20*time.Second)
	for _, j := range jobs {
		if rs := results[j.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || rs[0].Attempts != 1 {
			t.Errorf("job %s: %+v", j.ID, rs)
		}
	}
	if _, ok := results["long"]; ok {
		t.Errorf("the long job finished early: %+v", results["long"])
	}
}

// (c) A rejected key pauses the provider with code auth for every replica;
// no probe ends it, other providers keep working meanwhile, and only an
// operator's resume (after the key is fixed) lets the jobs run.
func TestAuthFailurePausesUntilOperatorResumes(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{
		"samsar":   {CompleteAfter: providersim.Duration(50 * time.Millisecond)},
		"vimmerse": {CompleteAfter: providersim.Duration(300 * time.Millisecond)},
	})
	paused := env.Events("events.samsar." + reelq.EventProviderPaused)
	cfg := worker.Config{ProbeInterval: 50 * time.Millisecond} // a probe would come quickly
	bad := env.StartWorker(reelqtest.WorkerOptions{ID: "bad-key", Config: cfg, Providers: map[string]reelqtest.Settings{
		"samsar":   {MaxInflight: 1, APIKey: "wrong-key-0123456789"},
		"vimmerse": {},
	}})
	samsarJobs := reelqtest.Jobs(4, "auth", reelqtest.SamsarJob)
	env.Enqueue(samsarJobs...)

	ev := env.NextEvent(paused, 30*time.Second)
	if ev.Code != providerstate.CodeAuth || strings.Contains(ev.Reason, "wrong-key") {
		t.Errorf("paused event %+v, want code auth and no key in the reason", ev)
	}
	st := env.WaitProviderState("samsar", 10*time.Second, func(s providerstate.State) bool { return s.Paused })
	if st.Code != providerstate.CodeAuth || st.NextProbeAt != nil || st.Since == nil {
		t.Errorf("provider state %+v, want paused with code auth, since, and no probe", st)
	}
	if info := env.ConsumerInfo("samsar"); info.Paused {
		t.Error("samsar consumer paused on the server (a pause holds paid calls, not deliveries)")
	}

	// Vimmerse keeps working on the same replica while Samsar is paused;
	// its jobs take longer than several probe intervals.
	vimJobs := reelqtest.Jobs(3, "other", reelqtest.VimmerseJob)
	env.Enqueue(vimJobs...)
	results := env.Results(len(vimJobs), time.Minute)
	for _, j := range vimJobs {
		if rs := results[j.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
			t.Errorf("vimmerse job %s: %+v", j.ID, rs)
		}
	}
	for _, j := range samsarJobs {
		if _, ok := results[j.ID]; ok {
			t.Errorf("samsar job %s has a result while samsar is paused: %+v", j.ID, results[j.ID])
		}
	}
	if got := env.Sim.Stats(0)["samsar"].TotalRequests; got != 1 {
		t.Errorf("samsar saw %d requests, want only the one refused (no probe for an auth pause)", got)
	}
	if st, _, _ := env.ProviderStore().Get(context.Background(), "samsar"); !st.Paused || st.Code != providerstate.CodeAuth {
		t.Errorf("samsar state %+v, want still paused for auth", st)
	}
	checkNoAttemptUsed(t, env, samsarJobs)

	// The operator fixes the key (restarting the replica with it): the
	// pause stays until they resume.
	if err := bad.Stop(); err != nil {
		t.Fatal(err)
	}
	fixed := env.StartWorker(reelqtest.WorkerOptions{ID: "fixed-key", Config: cfg, Providers: map[string]reelqtest.Settings{"samsar": {}}})
	env.WaitReplicaView(fixed, "samsar", 10*time.Second, func(s providerstate.State) bool { return s.Paused && s.Code == providerstate.CodeAuth })
	if got := env.Sim.Stats(0)["samsar"].TotalRequests; got != 1 {
		t.Errorf("samsar saw %d requests after a replica started, want still only the one refused", got)
	}
	changed, err := env.ProviderStore().Resume(context.Background(), "samsar", "enqueue")
	if err != nil || !changed {
		t.Fatalf("resume: changed=%v err=%v", changed, err)
	}
	results = env.Results(len(vimJobs)+len(samsarJobs), time.Minute)
	checkSucceededOnce(t, env, "samsar", samsarJobs, results, reelqtest.SamsarPrompt)
}

// (d) A manual pause (the code path of `enqueue pause`) holds a provider's
// jobs on every replica: delivered, never submitted; resume releases them.
func TestManualPauseHoldsJobs(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{
		"samsar":   {CompleteAfter: providersim.Duration(50 * time.Millisecond)},
		"vimmerse": {CompleteAfter: providersim.Duration(200 * time.Millisecond)},
	})
	ops := env.ProviderStore()
	ctx := context.Background()
	replicas := startReplicas(env, 2, map[string]reelqtest.Settings{"samsar": {}, "vimmerse": {}}, worker.Config{ProbeInterval: 50 * time.Millisecond})
	st, changed, err := ops.Pause(ctx, "samsar", providerstate.CodeManual, "maintenance window", "enqueue", 0)
	if err != nil || !changed || !st.Paused {
		t.Fatalf("pause: %+v changed=%v err=%v", st, changed, err)
	}
	for _, r := range replicas {
		env.WaitReplicaView(r, "samsar", 10*time.Second, func(s providerstate.State) bool { return s.Paused })
	}
	samsarJobs := reelqtest.Jobs(6, "held", reelqtest.SamsarJob)
	vimJobs := reelqtest.Jobs(3, "free", reelqtest.VimmerseJob)
	env.Enqueue(samsarJobs...)
	env.Enqueue(vimJobs...)
	// The Vimmerse jobs run meanwhile; the Samsar ones are not submitted.
	results := env.Results(len(vimJobs), time.Minute)
	for _, j := range vimJobs {
		if rs := results[j.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
			t.Errorf("vimmerse job %s: %+v", j.ID, rs)
		}
	}
	if info := env.ConsumerInfo("samsar"); info.Paused {
		t.Error("samsar consumer paused on the server (a pause holds paid calls, not deliveries)")
	}
	if got := env.Sim.Stats(0)["samsar"].TotalRequests; got != 0 {
		t.Errorf("samsar saw %d requests while paused", got)
	}
	// Pausing again is a no-op that keeps the reason.
	if st, changed, err := ops.Pause(ctx, "samsar", providerstate.CodeManual, "again", "enqueue", 0); err != nil || changed || st.Reason != "maintenance window" {
		t.Errorf("second pause: %+v changed=%v err=%v", st, changed, err)
	}

	if changed, err := ops.Resume(ctx, "samsar", "enqueue"); err != nil || !changed {
		t.Fatalf("resume: changed=%v err=%v", changed, err)
	}
	results = env.Results(len(vimJobs)+len(samsarJobs), time.Minute)
	checkSucceededOnce(t, env, "samsar", samsarJobs, results, reelqtest.SamsarPrompt)
}
