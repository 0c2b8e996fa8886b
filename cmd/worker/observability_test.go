package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/embedded"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

// opsEnviron is the worker environment for a samsar-only worker against
// env's server and simulator; extra entries override earlier ones.
func opsEnviron(env *reelqtest.Env, id string, extra ...string) []string {
	return append([]string{
		"NATS_URL=" + env.Server.ClientURL(),
		"SAMSAR_API_KEY=" + reelqtest.APIKey("samsar"),
		"SAMSAR_BASE_URL=" + env.BaseURL("samsar"),
		"SAMSAR_RATE=200", "SAMSAR_BURST=20", "SAMSAR_MAX_INFLIGHT=8", "SAMSAR_POLL_INTERVAL=50ms",
		"WORKER_HTTP_ADDR=127.0.0.1:0",
		"LOG_FORMAT=json", "LOG_LEVEL=debug",
		"REELQ_WORKER_ID=" + id,
		"REELQ_ACK_WAIT=10s", "REELQ_RETRY_BASE=100ms", "REELQ_RETRY_MAX=1s",
		// The shutdown timeout must cover the longest request timeout plus 10s.
		"SAMSAR_REQUEST_TIMEOUT=5s", "REELQ_SHUTDOWN_TIMEOUT=15s",
	}, extra...)
}

func samsarJobs(prefix string, n int) []reelq.Job {
	var jobs []reelq.Job
	for i := range n {
		jobs = append(jobs, reelqtest.SamsarJob(fmt.Sprintf("%s-%02d", prefix, i)))
	}
	return jobs
}

// The real worker command serves /healthz, /readyz and /metrics on
// WORKER_HTTP_ADDR. After a batch (with injected provider 5xx errors and
// one invalid job) the key series exist with values that match what the
// simulator saw; a pause shows in the paused gauges; /readyz answers 503
// while NATS is gone (liveness and metrics keep answering) and 200 again
// once it is back.
func TestWorkerMetricsAndProbes(t *testing.T) {
	t.Parallel()
	storeDir := t.TempDir()
	s := natstest.ServerAt(t, storeDir)
	env := reelqtest.NewOn(t, s, map[string]providersim.Knobs{"samsar": {
		CompleteAfter: providersim.Duration(150 * time.Millisecond), Jitter: providersim.Duration(100 * time.Millisecond),
		ErrorRate: 0.1,
	}})
	w := startOpsWorker(t, opsEnviron(env, "ops-metrics"))

	if code, body, err := w.get("/healthz"); err != nil || code != 200 {
		t.Fatalf("/healthz: %d %q %v", code, body, err)
	}
	if code, body, err := w.get("/readyz"); err != nil || code != 200 || !strings.Contains(body, "ready") {
		t.Fatalf("/readyz: %d %q %v", code, body, err)
	}

	const n = 12
	env.Enqueue(samsarJobs("metrics", n)...)
	// One job that breaks Samsar's rules, published as a producer that
	// skipped validation would: a failed outcome.
	bad := reelq.Job{ID: "metrics-invalid", Provider: "samsar", Input: json.RawMessage(`{"prompt":"` + strings.Repeat("x", 501) + `","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)}
	msg := reelqtest.JobMsg(&bad)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(bad.ID)); err != nil {
		t.Fatal(err)
	}
	env.Results(n+1, time.Minute)

	var m []promSample
	waitfor.Until(t, 10*time.Second, "reelq_jobs_total to count every job", func() bool {
		code, body, err := w.get("/metrics")
		if err != nil || code != 200 {
			return false
		}
		m = parseProm(t, body)
		sum, _ := promSum(m, "reelq_jobs_total", nil)
		// A job counts as done when its result is published; its handler
		// returns (in-flight gauge) and its ack lands (consumer in flight)
		// just after, so wait for those to settle too.
		inflight, _ := promSum(m, "reelq_jobs_in_flight", map[string]string{"provider": "samsar"})
		ackPending, _ := promSum(m, "reelq_queue_ack_pending", map[string]string{"provider": "samsar"})
		return sum == n+1 && inflight == 0 && ackPending == 0
	})
	sim := env.Sim.Stats(0)["samsar"]
	samsar := map[string]string{"provider": "samsar"}
	with := func(kv ...string) map[string]string {
		out := map[string]string{"provider": "samsar"}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	expect := func(name string, labels map[string]string, want float64) {
		t.Helper()
		got, ok := promSum(m, name, labels)
		if !ok {
			t.Errorf("%s%v: missing", name, labels)
		} else if got != want {
			t.Errorf("%s%v = %g, want %g", name, labels, got, want)
		}
	}
	atLeast := func(name string, labels map[string]string, want float64) float64 {
		t.Helper()
		got, ok := promSum(m, name, labels)
		if !ok {
			t.Errorf("%s%v: missing", name, labels)
		} else if got < want {
			t.Errorf("%s%v = %g, want >= %g", name, labels, got, want)
		}
		return got
	}

	// The build, for a fleet's versions, and in the start log.
	bi := buildinfo.Get()
	expect("reelq_build_info", map[string]string{"version": bi.Version, "revision": bi.Revision, "go_version": bi.GoVersion}, 1)
	started := false
	for _, l := range w.Log.Lines() {
		started = started || l["msg"] == "worker starting" && l["version"] == bi.Version && l["go_version"] == bi.GoVersion
	}
	if !started {
		t.Errorf("no start line with the version %q in the log:\n%s", bi.Version, w.Log)
	}

	// Jobs by provider and outcome, and how long they took.
	expect("reelq_jobs_total", with("outcome", "succeeded"), n)
	expect("reelq_jobs_total", with("outcome", "failed"), 1)
	expect("reelq_job_duration_seconds_count", with("outcome", "succeeded"), n)
	// In flight on this replica and cluster-wide, and the queue depth.
	expect("reelq_jobs_in_flight", samsar, 0)
	expect("reelq_queue_depth", samsar, 0)
	expect("reelq_queue_ack_pending", samsar, 0)
	expect("reelq_queue_redelivered", samsar, 0)
	// Provider calls by op and status: one paid submission per valid job,
	// the injected 5xx counted under their codes, as the simulator saw.
	expect("reelq_provider_calls_total", with("op", "submit", "code", "200"), n)
	if sim.Requests["submit 200"] != n {
		t.Errorf("simulator accepted %d submissions, want %d", sim.Requests["submit 200"], n)
	}
	atLeast("reelq_provider_calls_total", with("op", "poll", "code", "200"), n)
	var fivexx float64
	for _, c := range []string{"500", "502", "503"} {
		v, _ := promSum(m, "reelq_provider_calls_total", with("code", c))
		fivexx += v
	}
	if want := float64(sim.Requests["submit 503"] + sim.Requests["poll 503"]); fivexx != want {
		t.Errorf("5xx calls in metrics %g, simulator answered %g", fivexx, want)
	}
	// Attempts: every failed submission is one retried attempt.
	if subErr := sim.Requests["submit 503"]; subErr > 0 {
		expect("reelq_job_attempts_total", with("result", "retry"), float64(subErr))
	} else if _, ok := promSum(m, "reelq_job_attempts_total", samsar); ok {
		t.Errorf("attempts counted without any failed submission")
	}
	// Latency histograms and rate-limit waits: one observation per call.
	calls, _ := promSum(m, "reelq_provider_calls_total", samsar)
	expect("reelq_provider_call_duration_seconds_count", samsar, calls)
	if float64(sim.TotalRequests) != calls {
		t.Errorf("metrics count %g provider calls, simulator saw %d", calls, sim.TotalRequests)
	}
	expect("reelq_rate_limit_wait_seconds_count", samsar, calls)
	// Estimated spend: 10 credits/s x 5 s per Samsar job.
	expect("reelq_estimated_spend_total", with("unit", "credits"), 50*n)
	// Paused state: known and zero.
	for _, code := range []string{"credits_exhausted", "auth", "manual", "ambiguous_submits", "unknown_submission"} {
		expect("reelq_provider_paused", with("code", code), 0)
	}
	expect("reelq_consumer_paused", samsar, 0)
	expect("reelq_jobs_held", samsar, 0)
	expect("reelq_batch_budgets", map[string]string{"usage": "over_80"}, 0)
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if len(promFind(m, name, nil)) == 0 {
			t.Errorf("%s missing", name)
		}
	}

	// An operator pause shows on every replica's gauges; the consumer stays
	// unpaused on the server (a pause holds paid calls, not deliveries).
	kv, err := env.JS.KeyValue(ctx, queue.BucketProviders)
	if err != nil {
		t.Fatal(err)
	}
	ps := providerstate.New(env.JS, kv, queue.StreamJobs, queue.ConsumerNames)
	if _, _, err := ps.Pause(ctx, "samsar", providerstate.CodeManual, "test pause", "test", 0); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 15*time.Second, "paused gauges", func() bool {
		_, body, err := w.get("/metrics")
		if err != nil {
			return false
		}
		m = parseProm(t, body)
		p, _ := promSum(m, "reelq_provider_paused", with("code", "manual"))
		c, _ := promSum(m, "reelq_consumer_paused", samsar)
		return p == 1 && c == 0
	})
	if _, err := ps.Resume(ctx, "samsar", "test"); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 15*time.Second, "paused gauges back to 0", func() bool {
		_, body, err := w.get("/metrics")
		if err != nil {
			return false
		}
		m = parseProm(t, body)
		p, _ := promSum(m, "reelq_provider_paused", with("code", "manual"))
		c, _ := promSum(m, "reelq_consumer_paused", samsar)
		return p == 0 && c == 0
	})

	// NATS goes away: not ready, but alive (a liveness restart would not
	// help) and still scrapeable.
	addr := s.Addr().(*net.TCPAddr)
	embedded.Stop(s)
	waitfor.Until(t, 15*time.Second, "/readyz to answer 503 without NATS", func() bool {
		code, body, err := w.get("/readyz")
		return err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, "not ready")
	})
	if code, _, err := w.get("/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz without NATS: %d %v, want 200", code, err)
	}
	// (The queue collector bounds its NATS calls per scrape; a scrape
	// that waited on NATS would time out the client.)
	if code, body, err := w.get("/metrics"); err != nil || code != 200 || !strings.Contains(body, "reelq_jobs_total") {
		t.Errorf("/metrics without NATS: %d %v", code, err)
	}

	// NATS comes back on the same address and store: ready again, and work
	// continues.
	s2, err := embedded.Start(embedded.Options{Name: "test", Listen: addr.String(), StoreDir: storeDir})
	if err != nil {
		t.Fatalf("restart nats: %v", err)
	}
	t.Cleanup(func() { embedded.Stop(s2) })
	waitfor.Until(t, 20*time.Second, "/readyz to answer 200 after NATS returned", func() bool {
		code, _, err := w.get("/readyz")
		return err == nil && code == 200
	})
	env.Enqueue(reelqtest.SamsarJob("metrics-after-restart"))
	waitfor.Until(t, 30*time.Second, "a job after the NATS restart", func() bool {
		r, err := queue.LastResult(ctx, env.JS, "samsar", "metrics-after-restart")
		return err == nil && r.Status == reelq.StatusSucceeded
	})
	if err := w.Stop(); err != nil {
		t.Errorf("worker stopped with %v", err)
	}
}

// A traceparent header on a job message is carried to the worker's log
// lines for that job (trace_id, including the submission line with the
// provider's task id) and to the result event, as a header and as the
// traceparent field; jobs without one carry none.
func TestWorkerTraceparent(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(300 * time.Millisecond)}})
	w := startOpsWorker(t, opsEnviron(env, "ops-trace"))

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	tp := "00-" + traceID + "-00f067aa0ba902b7-01"
	traced := reelqtest.SamsarJob("traced-job")
	msg := reelqtest.JobMsg(&traced)
	msg.Header.Set(wire.HeaderTraceparent, tp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(traced.ID)); err != nil {
		t.Fatal(err)
	}
	env.Enqueue(reelqtest.SamsarJob("untraced-job"))
	env.Results(2, time.Minute)

	stream, err := env.JS.Stream(ctx, queue.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stream.GetLastMsgForSubject(ctx, wire.ResultSubject("samsar", traced.ID))
	if err != nil {
		t.Fatal(err)
	}
	if got := raw.Header.Get(wire.HeaderTraceparent); got != tp {
		t.Errorf("result header traceparent = %q, want %q", got, tp)
	}
	var res reelq.Result
	if err := json.Unmarshal(raw.Data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Traceparent != tp || res.Status != reelq.StatusSucceeded {
		t.Errorf("result: traceparent %q status %s, want %q succeeded", res.Traceparent, res.Status, tp)
	}
	other, err := stream.GetLastMsgForSubject(ctx, wire.ResultSubject("samsar", "untraced-job"))
	if err != nil {
		t.Fatal(err)
	}
	if h := other.Header.Get(wire.HeaderTraceparent); h != "" || strings.Contains(string(other.Data), "traceparent") {
		t.Errorf("untraced job's result carries a trace: header %q body %s", h, other.Data)
	}

	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	var tracedLines, callLines int
	msgs := map[string]bool{}
	for _, l := range w.Log.Lines() {
		switch l["job_id"] {
		case traced.ID:
			tracedLines++
			msgs[fmt.Sprint(l["msg"])] = true
			if l["trace_id"] != traceID {
				t.Errorf("log line for the traced job without trace_id %s: %v", traceID, l)
			}
			if _, ok := l["task_id"]; ok || l["msg"] == "progress" {
				callLines++ // lines about a provider call (submit, poll)
			}
		case "untraced-job":
			if _, ok := l["trace_id"]; ok {
				t.Errorf("log line for the untraced job has a trace_id: %v", l)
			}
		}
	}
	// The engine logs a job's submission (with the provider's task id) and
	// its end; polls log nothing unless they fail.
	if tracedLines < 2 || callLines < 1 || !msgs["submitted"] || !msgs["job finished"] {
		t.Errorf("traced job: %d log lines, %d about provider calls, messages %v; want submitted (with its task id) and job finished",
			tracedLines, callLines, msgs)
	}
}

// The budget gauges on /metrics follow the budgets in force: a provider
// budget from SAMSAR_BUDGET / SAMSAR_BUDGET_PERIOD shows its limit and
// what was spent against it once jobs ran; batch budgets set with the
// client are counted by usage band (two 50-credit jobs exhaust batch
// test's 100 credits, and the third waits; batch idle spent nothing), and
// no series names a batch (their number is unbounded).
func TestWorkerBudgetMetrics(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(30 * time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := env.Inspector.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "test", Amount: 100, Unit: "credits"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Inspector.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "idle", Amount: 1000, Unit: "credits"}); err != nil {
		t.Fatal(err)
	}
	w := startOpsWorker(t, opsEnviron(env, "ops-budget", "SAMSAR_BUDGET=200credits", "SAMSAR_BUDGET_PERIOD=168h"))
	env.Enqueue(samsarJobs("budget", 3)...) // batch test
	env.Results(2, time.Minute)

	provider := map[string]string{"scope": reelq.ScopeProvider, "name": "samsar", "unit": "credits"}
	var m []promSample
	ok := func(name string, labels map[string]string, want float64) bool {
		got, found := promSum(m, name, labels)
		return found && got == want
	}
	waitfor.Until(t, 15*time.Second, "budget gauges of provider samsar 200/100 credits, one batch budget exhausted and one under 80%", func() error {
		_, body, err := w.get("/metrics")
		if err != nil {
			return err
		}
		m = parseProm(t, body)
		if ok("reelq_budget_limit", provider, 200) && ok("reelq_budget_spent", provider, 100) &&
			ok("reelq_batch_budgets", map[string]string{"usage": "exhausted"}, 1) && ok("reelq_batch_budgets", map[string]string{"usage": "under_80"}, 1) &&
			ok("reelq_batch_budgets", map[string]string{"usage": "over_80"}, 0) {
			return nil
		}
		return fmt.Errorf("limits %+v, spent %+v, batch budgets %+v", promFind(m, "reelq_budget_limit", nil), promFind(m, "reelq_budget_spent", nil),
			promFind(m, "reelq_batch_budgets", nil))
	})
	for _, sample := range m {
		for k, v := range sample.Labels {
			if v == "test" || v == "idle" {
				t.Errorf("%s has label %s=%q: a batch name", sample.Name, k, v)
			}
		}
	}
	if got := env.Sim.Stats(0)["samsar"].Tasks; got != 2 {
		t.Errorf("provider ran %d tasks, want 2 (the batch budget's worth)", got)
	}
}
