package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/worker"
)

// A batch budget of exactly N jobs' worth, with three replicas racing on a
// backlog of 3N: exactly N are submitted (the provider counts), the batch
// waits with reason budget, and raising the budget by M jobs' worth
// submits exactly M more. Nothing fails and no attempt is used.
func TestBatchBudgetIsExactAcrossReplicas(t *testing.T) {
	t.Parallel()
	const n, m = 5, 3
	const perJob = 50.0 // samsar: 10 credits/s x 5 s
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(30 * time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := env.Client.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "test", Amount: n * perJob, Unit: "credits"}); err != nil {
		t.Fatal(err)
	}
	paused := env.Events("events.samsar." + reelq.EventBudgetPaused)
	startReplicas(env, 3, map[string]reelqtest.Settings{"samsar": {MaxInflight: 6}}, worker.Config{})
	jobs := reelqtest.Jobs(3*n, "budget", reelqtest.SamsarJob)
	env.Enqueue(jobs...)

	if ev := env.NextEvent(paused, 30*time.Second); ev.Code != "budget" || ev.Batch != "test" || ev.Cost == nil || ev.Cost.Amount != n*perJob {
		t.Errorf("budget event %+v, want code budget for batch test with its limit", ev)
	}
	env.Results(n, time.Minute)
	spend := waitSpend(t, env, func(s reelq.Spend) bool { return s.Submissions == n && s.Reserved["credits"] == 0 })
	if got := totalSubmissions(env, "samsar"); got != n {
		t.Fatalf("provider saw %d submissions, want exactly %d (the budget's worth)", got, n)
	}
	if spend.Spent["credits"] != n*perJob {
		t.Errorf("spent %v, want %v", spend.Spent, n*perJob)
	}

	// Raise it by M jobs' worth: exactly M more run.
	if err := env.Client.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "test", Amount: (n + m) * perJob, Unit: "credits"}); err != nil {
		t.Fatal(err)
	}
	results := env.Results(n+m, time.Minute)
	waitSpend(t, env, func(s reelq.Spend) bool { return s.Submissions == n+m && s.Reserved["credits"] == 0 })
	if got := totalSubmissions(env, "samsar"); got != n+m {
		t.Fatalf("provider saw %d submissions after raising the budget, want exactly %d", got, n+m)
	}
	for id, rs := range results {
		if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || rs[0].Attempts != 1 {
			t.Errorf("%s: %+v, want one success after 1 attempt", id, rs)
		}
	}
	checkNoAttemptUsed(t, env, jobs)
}

// waitSpend watches the batch's spend until cond holds.
func waitSpend(t *testing.T, env *reelqtest.Env, cond func(reelq.Spend) bool) reelq.Spend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := env.JS.KeyValue(ctx, reelq.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, reelq.BudgetSpendKey(reelq.ScopeBatch, "test", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	var last reelq.Spend
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			_ = json.Unmarshal(e.Value(), &last)
			if cond(last) {
				return last
			}
		case <-ctx.Done():
			t.Fatalf("spend never reached the expected state; last %+v", last)
		}
	}
}

func totalSubmissions(env *reelqtest.Env, provider string) int {
	n := 0
	for _, c := range env.Sim.Stats(0)[provider].Submissions {
		n += c
	}
	return n
}

// Spend is counted for every batch and provider, budget or not: the
// estimated cost of the finished runs. Stats also shows the provider's
// rate limit and cap as the worker runs them.
func TestSpendWithoutBudget(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(10 * time.Millisecond)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	env.Enqueue(reelqtest.Jobs(3, "spend", reelqtest.SamsarJob)...)
	env.Results(3, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var batch, provider float64
	for ctx.Err() == nil {
		st, err := env.Client.Stats(ctx, reelq.StatsOptions{Batch: "test"})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range st.Batches {
			batch = b.Spent["credits"]
		}
		for _, p := range st.Providers {
			if p.Provider == "samsar" {
				provider = p.Spent["credits"]
				if p.Rate != 200 || p.Burst != 10 || p.Cap != 8 {
					t.Fatalf("samsar stats rate %v burst %d cap %d, want the worker's 200, 10, 8", p.Rate, p.Burst, p.Cap)
				}
			}
		}
		if batch == 150 && provider == 150 {
			return
		}
		// The counters are flushed every 250 ms; nothing to wait on.
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("spent: batch %v, provider %v credits; want 150 each (3 jobs x 50)", batch, provider)
}
