package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/metrics"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
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
	if err := env.Inspector.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "test", Amount: n * perJob, Unit: "credits"}); err != nil {
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
	if err := env.Inspector.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "test", Amount: (n + m) * perJob, Unit: "credits"}); err != nil {
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
	return waitSpendKey(t, env, wire.BudgetSpendKey(reelq.ScopeBatch, "test", 0), cond)
}

// waitSpendKey watches the spend at key until cond holds.
func waitSpendKey(t *testing.T, env *reelqtest.Env, key string, cond func(reelq.Spend) bool) reelq.Spend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := env.JS.KeyValue(ctx, wire.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	var sp reelq.Spend
	waitfor.Key(t, kv, key, 30*time.Second, "spend "+key, func(e jetstream.KeyValueEntry) bool {
		sp = reelq.Spend{}
		return e != nil && json.Unmarshal(e.Value(), &sp) == nil && cond(sp)
	})
	return sp
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
	// The counters are flushed every 250 ms: Stats is polled.
	waitfor.Until(t, 30*time.Second, "150 credits spent by batch test and by samsar (3 jobs x 50)", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := env.Inspector.Stats(ctx, inspect.StatsOptions{Batch: "test"})
		if err != nil {
			return err
		}
		var batch, provider float64
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
		if batch != 150 || provider != 150 {
			return fmt.Errorf("spent: batch %v, provider %v credits", batch, provider)
		}
		return nil
	})
}

// A job paid twice through the documented ambiguous-submission window
// (the first paid call outlives its request timeout, P_AMBIGUOUS=resubmit,
// no idempotency key honoured) counts twice everywhere: the result's cost
// is twice the estimate, the batch's spend (the budget's and the stats')
// has both payments, and a batch budget of exactly that spend lets no
// further job of the batch be submitted.
func TestPaidTwiceCountsTwiceAgainstBudget(t *testing.T) {
	t.Parallel()
	const perJob = 50.0 // samsar: 10 credits/s x 5 s
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {
		CreateDelayMin: providersim.Duration(1500 * time.Millisecond), CompleteAfter: providersim.Duration(30 * time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := env.Inspector.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "test", Amount: 2 * perJob, Unit: "credits"}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	// The retry after the timed-out call waits 2 s: long enough to make
	// the provider answer at once before the resubmission.
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {
		RequestTimeout: 300 * time.Millisecond, Ambiguous: worker.AmbiguousResubmit, AmbiguousPauseAfter: -1}},
		Config: worker.Config{RetryBase: 2 * time.Second, RetryMax: 2 * time.Second, Metrics: metrics.New(reg)}})
	env.Enqueue(reelqtest.SamsarJob("twice-1"))

	// The first create is charged when it arrives; its answer comes after
	// the worker gave up on it.
	waitfor.Until(t, 30*time.Second, "the first submission to reach the provider", func() bool { return env.Sim.Stats(0)["samsar"].Tasks >= 1 })
	k := env.Sim.Knobs("samsar")
	k.CreateDelayMin = 0
	if err := env.Sim.SetKnobs("samsar", k); err != nil {
		t.Fatal(err)
	}

	rs := env.Results(1, time.Minute)["twice-1"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Fatalf("twice-1: %+v, want one success", rs)
	}
	if got := env.Sim.Stats(0)["samsar"].Submissions[reelqtest.SamsarPrompt("twice-1")]; got != 2 {
		t.Fatalf("provider charged %d submissions, want 2 (the ambiguous window)", got)
	}
	if c := rs[0].Cost; c == nil || c.Amount != 2*perJob || c.Unit != "credits" || !strings.Contains(c.Basis, "x2 submissions") {
		t.Errorf("result cost %+v, want %v credits (twice the estimate, said in the basis)", c, 2*perJob)
	}
	spend := waitSpend(t, env, func(s reelq.Spend) bool { return s.Reserved["credits"] == 0 && s.Submissions >= 2 })
	if spend.Spent["credits"] != 2*perJob || spend.Submissions != 2 {
		t.Errorf("budget spend %+v, want %v credits in 2 submissions", spend, 2*perJob)
	}
	if got, err := env.Inspector.BatchSpend(ctx, "test"); err != nil || got.Spent["credits"] != 2*perJob {
		t.Errorf("BatchSpend = %+v, %v; want %v credits", got, err, 2*perJob)
	}
	if got := waitBatchStatsSpent(t, env, 2*perJob); got != 2*perJob {
		t.Errorf("stats: batch spent %v credits, want %v", got, 2*perJob)
	}
	if got := counterSum(t, reg, "reelq_estimated_spend_total"); got != 2*perJob {
		t.Errorf("reelq_estimated_spend_total = %v, want %v", got, 2*perJob)
	}

	// The budget is exactly the spend: the next job of the batch waits
	// with reason budget, unsubmitted and without using an attempt.
	paused := env.Events("events.samsar." + reelq.EventBudgetPaused)
	next := reelqtest.SamsarJob("twice-2")
	env.Enqueue(next)
	if ev := env.NextEvent(paused, 30*time.Second); ev.Code != "budget" || ev.Batch != "test" || ev.Cost == nil || ev.Cost.Amount != 2*perJob {
		t.Errorf("budget event %+v, want code budget for batch test with its limit", ev)
	}
	if got := totalSubmissions(env, "samsar"); got != 2 {
		t.Errorf("provider saw %d submissions, want 2 (nothing after the budget was spent)", got)
	}
	checkNoAttemptUsed(t, env, []reelq.Job{next})
}

// waitBatchStatsSpent polls Stats (its counters are flushed every 250 ms)
// until batch test has spent want credits, or 20 s passed; it returns the
// last value seen.
func waitBatchStatsSpent(t *testing.T, env *reelqtest.Env, want float64) float64 {
	t.Helper()
	got := 0.0
	_ = waitfor.Poll(20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := env.Inspector.Stats(ctx, inspect.StatsOptions{Batch: "test"})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range st.Batches {
			got = b.Spent["credits"]
		}
		if got != want {
			return waitfor.ErrNotYet
		}
		return nil
	})
	return got
}

// counterSum adds up every series of the named metric in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// A provider's budget per period from the worker's configuration
// (P_BUDGET, P_BUDGET_PERIOD) is reached end to end: exactly the cap's
// worth of jobs is submitted, the provider is paused for every replica
// with code budget and a budget event says until when, the jobs left wait
// without using an attempt, and raising the limit ('enqueue budget set
// --provider') lets exactly the new room's worth through.
func TestProviderBudgetPausesProvider(t *testing.T) {
	t.Parallel()
	const perJob, fit, raise = 50.0, 3, 1 // samsar: 10 credits/s x 5 s
	const period = 7 * 24 * time.Hour     // far from a rollover during the test
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(30 * time.Millisecond)}})
	paused := env.Events("events.samsar." + reelq.EventBudgetPaused)
	// One job at a time: the jobs beyond the cap meet it in the local
	// view, before any reservation.
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 1}},
		Config: worker.Config{ProviderBudgets: map[string]worker.ProviderBudget{
			"samsar": {Limit: reelq.Cost{Amount: fit * perJob, Unit: "credits"}, Period: period}}}})
	jobs := reelqtest.Jobs(fit+2, "pcap", reelqtest.SamsarJob)
	env.Enqueue(jobs...)

	ev := env.NextEvent(paused, 30*time.Second)
	if ev.Code != "budget" || ev.Provider != "samsar" || ev.Batch != "" || ev.Cost == nil || ev.Cost.Amount != fit*perJob || ev.Cost.Unit != "credits" {
		t.Errorf("budget event %+v, want code budget for provider samsar with its limit", ev)
	}
	if ev.Until == nil || !ev.Until.After(time.Now()) {
		t.Errorf("budget event until %v, want the end of the period", ev.Until)
	}
	st := env.WaitProviderState("samsar", 30*time.Second, func(s providerstate.State) bool { return s.Paused })
	if st.Code != "budget" || !st.Auto() || !strings.Contains(st.Reason, "budget") {
		t.Errorf("provider state %+v, want an automatic pause with code budget", st)
	}
	results := env.Results(fit, time.Minute)
	for id, rs := range results {
		if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || rs[0].Attempts != 1 {
			t.Errorf("%s: %+v, want one success after 1 attempt", id, rs)
		}
	}
	spend := waitProviderSpend(t, env, period, func(s reelq.Spend) bool { return s.Submissions == fit && s.Reserved["credits"] == 0 })
	if spend.Spent["credits"] != fit*perJob {
		t.Errorf("provider spent %v, want %v credits", spend.Spent, fit*perJob)
	}
	if got := totalSubmissions(env, "samsar"); got != fit {
		t.Fatalf("provider saw %d submissions, want exactly %d (the cap's worth)", got, fit)
	}
	checkNoAttemptUsed(t, env, jobs)

	// An operator raises the limit by one job's worth: the pause ends and
	// exactly one more job is submitted.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.Inspector.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeProvider, Name: "samsar",
		Amount: (fit + raise) * perJob, Unit: "credits", Period: period}); err != nil {
		t.Fatal(err)
	}
	env.Results(fit+raise, 30*time.Second)
	waitProviderSpend(t, env, period, func(s reelq.Spend) bool { return s.Submissions == fit+raise && s.Reserved["credits"] == 0 })
	if got := totalSubmissions(env, "samsar"); got != fit+raise {
		t.Errorf("provider saw %d submissions after the raise, want exactly %d", got, fit+raise)
	}
	checkNoAttemptUsed(t, env, jobs)
}

// waitProviderSpend watches samsar's spend for the current period until
// cond holds.
func waitProviderSpend(t *testing.T, env *reelqtest.Env, period time.Duration, cond func(reelq.Spend) bool) reelq.Spend {
	t.Helper()
	return waitSpendKey(t, env, wire.BudgetSpendKey(reelq.ScopeProvider, "samsar", wire.PeriodStart(time.Now(), period)), cond)
}

// A replica that dies between its budget reservation and the state write
// that records it leaves no reservation behind: the job's next delivery
// (on another replica) finds the dead delivery's hold, which no state can
// ever name, and releases it. (Confirmed before the fix: the reservation
// stayed in the batch's spend for good, and with a budget one job wide
// the job itself could never run again.)
func TestReservationOfADeadReplicaIsReleased(t *testing.T) {
	t.Parallel()
	const perJob = 50.0 // samsar: 10 credits/s x 5 s
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(30 * time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := env.Inspector.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "test", Amount: 10 * perJob, Unit: "credits"}); err != nil {
		t.Fatal(err)
	}
	cfg := worker.Config{AckWait: time.Second}
	a := env.StartWorker(reelqtest.WorkerOptions{ID: "a", Providers: map[string]reelqtest.Settings{"samsar": {}}, Config: cfg})
	died := make(chan struct{})
	a.W.SetAfterReserve(func(string) {
		// The replica is gone from here on: no state write, no release.
		a.NC.Close()
		close(died)
	})
	env.Enqueue(reelqtest.SamsarJob("orphan"))
	<-died
	if s := waitSpend(t, env, func(s reelq.Spend) bool { return s.Reserved["credits"] == perJob }); s.Submissions != 0 {
		t.Fatalf("spend after the death %+v, want one reservation and nothing paid", s)
	}
	_ = a.Stop()
	env.StartWorker(reelqtest.WorkerOptions{ID: "b", Providers: map[string]reelqtest.Settings{"samsar": {}}, Config: cfg})
	if rs := env.Results(1, 30*time.Second)["orphan"]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Fatalf("orphan: %+v, want one success", rs)
	}
	s := waitSpend(t, env, func(s reelq.Spend) bool { return s.Submissions == 1 })
	if s.Reserved["credits"] != 0 || s.Spent["credits"] != perJob || len(s.Holds) != 0 {
		t.Errorf("spend %+v, want one job spent and nothing reserved", s)
	}
}

// After the budgets bucket loses its history (an admin's purge here; a
// producer's rollup before buckets refused them), the worker pays nothing
// more from an empty view: the next reservation finds the loss, every
// provider is paused for an operator (code budgets_lost), and the pause
// outlives a restart. The operator sets the budget again (a request the
// workers carry out) and resumes: the waiting job runs.
func TestBudgetsLostPausesEveryProvider(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(10 * time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	settings := map[string]reelqtest.Settings{"samsar": {}}
	r := env.StartWorker(reelqtest.WorkerOptions{ID: "before", Providers: settings})
	limit := reelq.BudgetLimit{Scope: reelq.ScopeProvider, Name: "samsar", Amount: 1000, Unit: "credits"}
	if err := env.Inspector.SetBudget(ctx, limit); err != nil {
		t.Fatal(err)
	}
	env.Enqueue(reelqtest.SamsarJob("lost-1"))
	env.Results(1, time.Minute)
	s, err := env.JS.Stream(ctx, "KV_"+wire.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	env.Enqueue(reelqtest.SamsarJob("lost-2"))
	for _, p := range reelq.Providers {
		st := env.WaitProviderState(p, 30*time.Second, func(s providerstate.State) bool { return s.Paused })
		if st.Code != "budgets_lost" || st.Auto() || !strings.Contains(st.Reason, "budget set") {
			t.Errorf("%s: %+v, want a pause for an operator with code budgets_lost", p, st)
		}
	}
	if got := totalSubmissions(env, "samsar"); got != 1 {
		t.Errorf("%d submissions, want 1 (none after the loss)", got)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	env.StartWorker(reelqtest.WorkerOptions{ID: "after", Providers: settings})
	if st, _, err := env.ProviderStore().Get(ctx, "samsar"); err != nil || !st.Paused || st.Code != "budgets_lost" {
		t.Errorf("after a restart: %+v %v, want still paused", st, err)
	}
	if err := env.Inspector.SetBudget(ctx, limit); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Inspector.Resume(ctx, "samsar"); err != nil {
		t.Fatal(err)
	}
	if res := env.Results(2, time.Minute); res["lost-2"] == nil || res["lost-2"][0].Status != reelq.StatusSucceeded {
		t.Errorf("lost-2 after the resume: %+v", res)
	}
	if got := totalSubmissions(env, "samsar"); got != 2 {
		t.Errorf("%d submissions, want 2", got)
	}
}

// A provider limit is kept until it is changed, whatever the job state TTL
// (an operator's limit silently disappeared after REELQ_JOB_STATE_TTL):
// the budgets bucket has no MaxAge, batch limits and spend expire one by
// one (a per-message TTL of the job state TTL, 2s here), provider limits
// never. The batch limit expires; the provider limit, set at the same
// time, stays.
func TestProviderBudgetNeverExpires(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(10 * time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// As Setup with REELQ_JOB_STATE_TTL=2s would make it (other streams
	// refuse so short a MaxAge for their duplicate windows).
	const ttl = 2 * time.Second
	s, err := env.JS.Stream(ctx, "KV_"+wire.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Metadata[wire.BudgetsKeyTTLMetadata] = ttl.String()
	if _, err := env.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	if err := env.Inspector.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeProvider, Name: "samsar", Amount: 1000, Unit: "credits"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Inspector.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "test", Amount: 1000, Unit: "credits"}); err != nil {
		t.Fatal(err)
	}
	env.Enqueue(reelqtest.SamsarJob("ttl-1"))
	env.Results(1, time.Minute)
	if age := cfg.MaxAge; age != 0 {
		t.Errorf("the budgets bucket keeps messages for %s, want no MaxAge", age)
	}
	period := wire.PeriodStart(time.Now(), 24*time.Hour)
	for key, want := range map[string]string{
		wire.BudgetLimitKey(reelq.ScopeProvider, "samsar"):         "",
		wire.BudgetLimitKey(reelq.ScopeBatch, "test"):              ttl.String(),
		wire.BudgetSpendKey(reelq.ScopeBatch, "test", 0):           ttl.String(),
		wire.BudgetSpendKey(reelq.ScopeProvider, "samsar", period): ttl.String(),
	} {
		m, err := s.GetLastMsgForSubject(ctx, "$KV."+wire.BucketBudgets+"."+key)
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		if got := m.Header.Get("Nats-TTL"); got != want {
			t.Errorf("%s: Nats-TTL %q, want %q", key, got, want)
		}
	}
	kv, err := env.JS.KeyValue(ctx, wire.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	b := backoff.WithContext(backoff.NewConstantBackOff(100*time.Millisecond), ctx)
	if err := backoff.Retry(func() error {
		if _, err := kv.Get(ctx, wire.BudgetLimitKey(reelq.ScopeBatch, "test")); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("the batch limit is still there: %v", err)
		}
		return nil
	}, b); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, wire.BudgetLimitKey(reelq.ScopeProvider, "samsar")); err != nil {
		t.Errorf("the provider limit after the batch limit expired: %v", err)
	}
}
