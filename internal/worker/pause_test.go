package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/worker"
)

// A pause stops new paid calls only. A job already submitted when its
// worker stopped is redelivered to another replica while the provider is
// paused (by an operator here; budget, auth, ambiguous and credit pauses
// are the same gate), and that replica polls and archives it: its output
// links would expire while it waited. A job enqueued during the pause is
// not submitted until the pause ends. Before, the pause paused the
// provider's consumers on the server: the redelivery never came.
func TestPauseKeepsPaidJobsGoing(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"vimmerse": {CompleteAfter: providersim.Duration(time.Second)}})
	submitted := env.Events("events.vimmerse." + reelq.EventSubmitted)
	settings := map[string]reelqtest.Settings{"vimmerse": {PollInterval: 50 * time.Millisecond}}
	a := env.StartWorker(reelqtest.WorkerOptions{ID: "a", Providers: settings, Archive: true})
	env.Enqueue(reelqtest.VimmerseJob("paid-1"))
	env.NextEvent(submitted, 30*time.Second)
	if err := a.Stop(); err != nil { // returns the submitted job to the queue
		t.Fatal(err)
	}
	ops := env.ProviderStore()
	ctx := context.Background()
	if _, _, err := ops.Pause(ctx, "vimmerse", providerstate.CodeManual, "maintenance", "enqueue", 0); err != nil {
		t.Fatal(err)
	}
	env.Enqueue(reelqtest.VimmerseJob("new-1"))
	b := env.StartWorker(reelqtest.WorkerOptions{ID: "b", Providers: settings, Archive: true})
	env.WaitReplicaView(b, "vimmerse", 10*time.Second, func(s providerstate.State) bool { return s.Paused })

	rs := env.Results(1, 30*time.Second)
	if r := rs["paid-1"]; len(r) != 1 || r[0].Status != reelq.StatusSucceeded || len(r[0].Outputs) == 0 || r[0].Outputs[0].Archive == nil {
		t.Fatalf("paid-1 during the pause: %+v, want succeeded with its output archived", r)
	}
	if r, ok := rs["new-1"]; ok {
		t.Errorf("new-1 ran during the pause: %+v", r)
	}
	subs := env.Sim.Stats(0)["vimmerse"].Submissions
	if got := subs[reelqtest.VimmerseTitle("paid-1")]; got != 1 {
		t.Errorf("paid-1 submitted %d times, want 1", got)
	}
	if got := subs[reelqtest.VimmerseTitle("new-1")]; got != 0 {
		t.Errorf("new-1 submitted %d times during the pause, want 0", got)
	}

	if _, err := ops.Resume(ctx, "vimmerse", "enqueue"); err != nil {
		t.Fatal(err)
	}
	if r := env.Results(2, 30*time.Second)["new-1"]; len(r) != 1 || r[0].Status != reelq.StatusSucceeded {
		t.Errorf("new-1 after the resume: %+v", r)
	}
}

// Credits are back but the balance endpoint answers 503: a probe job's
// submission ends the pause (as for a provider without a balance
// endpoint), and every job runs. Before, the probe only backed off and
// the pause never ended.
func TestBrokenBalanceEndpointProbesWithAJob(t *testing.T) {
	t.Parallel()
	credits := 0.0
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {Credits: &credits, BalanceStatus: 503, CompleteAfter: providersim.Duration(100 * time.Millisecond)}})
	paused := env.Events("events.samsar." + reelq.EventProviderPaused)
	resumed := env.Events("events.samsar." + reelq.EventProviderResumed)
	startReplicas(env, 2, map[string]reelqtest.Settings{"samsar": {MaxInflight: 2, PollInterval: 50 * time.Millisecond}},
		worker.Config{ProbeInterval: 200 * time.Millisecond, MaxProbeInterval: 800 * time.Millisecond})
	jobs := reelqtest.Jobs(6, "bal503", reelqtest.SamsarJob)
	env.Enqueue(jobs...)
	env.NextEvent(paused, 20*time.Second)
	if err := env.Sim.SetCredits("samsar", 1e6, false); err != nil {
		t.Fatal(err)
	}
	if ev := env.NextEvent(resumed, 20*time.Second); ev.Provider != "samsar" {
		t.Errorf("resumed event %+v", ev)
	}
	results := env.Results(len(jobs), time.Minute)
	checkSucceededOnce(t, env, "samsar", jobs, results, reelqtest.SamsarPrompt)
	t.Logf("samsar requests: %v", env.Sim.Stats(0)["samsar"].Requests)
}
