package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
)

// shippedConfig is the single-server config in deploy/nats, which includes
// the least-privilege users of deploy/nats/auth.conf.
const shippedConfig = "../../deploy/nats/nats-server.conf"

// shippedPasswords are the users' passwords for the tests, given to the
// server through the environment variables auth.conf reads.
var shippedPasswords = map[string]string{
	"admin":    "adm-Pw-4f1c9b7e2d",
	"worker":   "wrk-Pw-8e3a6c1f5b",
	"producer": "prd-Pw-2b7d9e4a1c",
	"results":  "res-Pw-6c4f2a8d3e",
}

var setPasswordsOnce sync.Once

// serverLog collects the NATS server's log (permission violations).
type serverLog struct{ l *opsLog }

func (s serverLog) logf(level, format string, v ...any) {
	fmt.Fprintf(s.l, "[%s] %s\n", level, fmt.Sprintf(format, v...))
}
func (s serverLog) Noticef(format string, v ...any) { s.logf("INF", format, v...) }
func (s serverLog) Warnf(format string, v ...any)   { s.logf("WRN", format, v...) }
func (s serverLog) Fatalf(format string, v ...any)  { s.logf("FTL", format, v...) }
func (s serverLog) Errorf(format string, v ...any)  { s.logf("ERR", format, v...) }
func (s serverLog) Debugf(format string, v ...any)  { s.logf("DBG", format, v...) }
func (s serverLog) Tracef(format string, v ...any)  { s.logf("TRC", format, v...) }

// startShippedServer loads the shipped config with nats-server's own
// loader and starts it on a random loopback port with a temporary store.
func startShippedServer(t testing.TB) (*server.Server, *opsLog) {
	t.Helper()
	setPasswordsOnce.Do(func() {
		for user, pw := range shippedPasswords {
			// The variables auth.conf reads; the same values in every test.
			os.Setenv("REELQ_NATS_"+strings.ToUpper(user)+"_PASSWORD", pw)
		}
	})
	opts, err := server.ProcessConfigFile(shippedConfig)
	if err != nil {
		t.Fatalf("load %s: %v", shippedConfig, err)
	}
	if !opts.SyncAlways || !opts.JetStream {
		t.Errorf("%s: jetstream %v sync_interval always %v, want both", shippedConfig, opts.JetStream, opts.SyncAlways)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.HTTPHost, opts.HTTPPort = "", 0
	opts.StoreDir = t.TempDir()
	opts.NoSigs = true
	opts.LameDuckDuration, opts.LameDuckGracePeriod = 0, 0
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("server from %s: %v", shippedConfig, err)
	}
	log := &opsLog{}
	s.SetLoggerV2(serverLog{log}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s, log
}

func connectAs(t testing.TB, s *server.Server, user string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, shippedPasswords[user]), nats.Name("test-"+user),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// simServer serves the simulator (wrapped by wrap, if set) over HTTP.
func simServer(t testing.TB, knobs map[string]providersim.Knobs, wrap func(http.Handler) http.Handler) (*providersim.Server, string) {
	t.Helper()
	all := map[string]providersim.Knobs{}
	for _, p := range providersim.Providers {
		k := knobs[p]
		k.APIKey = reelqtest.APIKey(p)
		all[p] = k
	}
	sim := providersim.New(all, 11)
	var h http.Handler = sim
	if wrap != nil {
		h = wrap(sim)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return sim, hs.URL
}

func writeSecret(t testing.TB, name, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func workerEnviron(natsURL, simURL, id string, extra ...string) []string {
	return append([]string{
		"NATS_URL=" + natsURL,
		"SAMSAR_BASE_URL=" + simURL,
		"SAMSAR_RATE=200", "SAMSAR_BURST=20", "SAMSAR_MAX_INFLIGHT=8", "SAMSAR_POLL_INTERVAL=50ms",
		"WORKER_HTTP_ADDR=127.0.0.1:0",
		"LOG_FORMAT=json", "LOG_LEVEL=debug",
		"REELQ_WORKER_ID=" + id,
		"REELQ_ACK_WAIT=10s", "REELQ_RETRY_BASE=100ms", "REELQ_RETRY_MAX=1s", "REELQ_SHUTDOWN_TIMEOUT=5s",
	}, extra...)
}

// deniedChecks runs checks that must fail, concurrently: a request the
// server refuses gets no answer, so each one waits for its 2s timeout.
type deniedChecks struct {
	t  *testing.T
	wg sync.WaitGroup
}

func (d *deniedChecks) check(what string, fn func(ctx context.Context) error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := fn(ctx); err == nil {
			d.t.Errorf("allowed: %s", what)
		}
	}()
}

// publish checks that a JetStream publish to subject is refused.
func (d *deniedChecks) publish(who string, js jetstream.JetStream, subject string) {
	d.check(who+" publishes to "+subject, func(ctx context.Context) error {
		_, err := js.Publish(ctx, subject, []byte(`{"id":"forged"}`))
		return err
	})
}

// The shipped least-privilege users (deploy/nats/auth.conf, loaded through
// deploy/nats/nats-server.conf with nats-server's config loader): the worker
// user runs a batch end to end (streams, consumers, KV, results, events,
// pause/resume), with its NATS password and API key read from files; the
// producer user publishes jobs but cannot publish results, pause providers
// or consume jobs; the results user reads results (ordered and durable
// consumers) but cannot publish jobs or results; nobody can log in with a
// wrong password.
func TestShippedPermissions(t *testing.T) {
	t.Parallel()
	s, slog := startShippedServer(t)
	_, simURL := simServer(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(100 * time.Millisecond)}}, nil)

	w := startOpsWorker(t, workerEnviron(s.ClientURL(), simURL, "perm-worker",
		"NATS_USER=worker",
		"NATS_PASSWORD_FILE="+writeSecret(t, "nats-password", shippedPasswords["worker"]),
		"SAMSAR_API_KEY_FILE="+writeSecret(t, "samsar-key", reelqtest.APIKey("samsar")),
	))
	if code, body, _ := w.get("/readyz"); code != 200 {
		t.Fatalf("worker not ready: %d %s", code, body)
	}

	// Producer: what enqueue publish does (layout check, job-state claim,
	// job message).
	_, pjs := connectAs(t, s, "producer")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := queue.Ensure(ctx, pjs, queue.Layout{}); err != nil {
		t.Fatalf("producer: layout check: %v", err)
	}
	kv, err := pjs.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		t.Fatalf("producer: job state bucket: %v", err)
	}
	const n = 6
	jobs := samsarJobs("perm", n)
	prod := &queue.Producer{JS: pjs, States: jobstate.New(kv)}
	out, err := prod.Publish(ctx, jobs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Err != nil || o.Status != "published" {
			t.Fatalf("producer: publish %s: %s %v\nserver log:\n%s", o.ID, o.Status, o.Err, slog)
		}
	}

	// Results consumer: an ordered consumer (enqueue results) sees every
	// job's result.
	_, rjs := connectAs(t, s, "results")
	oc, err := rjs.OrderedConsumer(ctx, queue.StreamResults, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("results: ordered consumer: %v\nserver log:\n%s", err, slog)
	}
	got := map[string]string{}
	for len(got) < n {
		m, err := oc.Next(jetstream.FetchMaxWait(30 * time.Second))
		if err != nil {
			t.Fatalf("results: %d of %d results: %v\nworker log:\n%s\nserver log:\n%s", len(got), n, err, w.Log, slog)
		}
		var r queue.Result
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			t.Fatal(err)
		}
		got[r.ID] = r.Status
	}
	for _, j := range jobs {
		if got[j.ID] != queue.StatusSucceeded {
			t.Errorf("job %s: %q, want succeeded", j.ID, got[j.ID])
		}
	}
	// ...and a durable pull consumer with acks (a downstream service).
	dc, err := rjs.CreateOrUpdateConsumer(ctx, queue.StreamResults, jetstream.ConsumerConfig{Durable: "billing", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("results: durable consumer: %v\nserver log:\n%s", err, slog)
	}
	batch, err := dc.Fetch(n, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Errorf("results: ack: %v", err)
		}
		acked++
	}
	if acked != n {
		t.Errorf("results: durable consumer got %d results, want %d", acked, n)
	}
	if _, err := queue.LastResult(ctx, rjs, "samsar", jobs[0].ID); err != nil {
		t.Errorf("results: look up one result: %v", err)
	}

	// Denials.
	_, wjs := connectAs(t, s, "worker")
	d := &deniedChecks{t: t}
	d.publish("producer", pjs, queue.ResultSubject("samsar", "forged"))
	d.publish("producer", pjs, queue.DLQSubject("samsar", "forged"))
	d.publish("producer", pjs, "$KV."+queue.BucketProviders+".samsar") // pause a provider
	d.publish("results", rjs, queue.JobSubject("samsar", "forged"))
	d.publish("results", rjs, queue.ResultSubject("samsar", "forged"))
	d.publish("worker", wjs, queue.JobSubject("samsar", "forged"))
	d.check("results user opens the job state bucket", func(ctx context.Context) error {
		_, err := rjs.KeyValue(ctx, queue.BucketJobs)
		return err
	})
	d.check("producer reads the jobs consumer", func(ctx context.Context) error {
		_, err := pjs.Consumer(ctx, queue.StreamJobs, "samsar")
		return err
	})
	d.check("producer deletes the JOBS stream", func(ctx context.Context) error {
		return pjs.DeleteStream(ctx, queue.StreamJobs)
	})
	d.check("worker deletes the RESULTS stream", func(ctx context.Context) error {
		return wjs.DeleteStream(ctx, queue.StreamResults)
	})
	d.wg.Wait()

	// Nothing forged landed anywhere.
	_, ajs := connectAs(t, s, "admin")
	for stream, want := range map[string]uint64{queue.StreamResults: n, queue.StreamJobs: 0, queue.StreamDLQ: 0} {
		st, err := ajs.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != want {
			t.Errorf("%s holds %d messages, want %d", stream, info.State.Msgs, want)
		}
	}
	if _, err := nats.Connect(s.ClientURL(), nats.UserInfo("worker", "wrong-password")); err == nil {
		t.Error("connected with a wrong password")
	}
	// The worker itself never hit a permission violation.
	if err := w.Stop(); err != nil {
		t.Errorf("worker: %v", err)
	}
	for _, l := range w.Log.Lines() {
		if strings.Contains(strings.ToLower(fmt.Sprint(l)), "permission") {
			t.Errorf("worker log: %v", l)
		}
	}
	for _, line := range strings.Split(slog.String(), "\n") {
		if strings.Contains(line, "Violation") && strings.Contains(line, "reelq-worker/") {
			t.Errorf("worker permission violation: %s", line)
		}
	}
	if t.Failed() {
		t.Logf("server log:\n%s", slog)
	}
}

// echoKey is a provider that puts the caller's API key into its error
// bodies, on the paths a worker reports: a 422 (a failed result), a 500 on
// submit (a retry event), a 401 (the provider is paused for auth) and a 503
// on a poll (a warning). Each fault hits once per job whose prompt asks for it.
type echoKey struct {
	next http.Handler
	mu   sync.Mutex
	done map[string]bool
}

func (e *echoKey) once(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done[key] {
		return false
	}
	e.done[key] = true
	return true
}

func (e *echoKey) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	fault := func(status int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `{"message":%q}`, msg)
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/video/create") {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		switch {
		case strings.Contains(string(body), "echo-422"):
			fault(422, "prompt refused for key "+key)
			return
		case strings.Contains(string(body), "echo-500") && e.once("500"):
			fault(500, "upstream failure while billing key="+key)
			return
		case strings.Contains(string(body), "echo-401") && e.once("401"):
			fault(401, "Invalid API key: "+key)
			return
		}
	}
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "status") && e.once("poll503") {
		fault(503, "status backend down (caller "+key+")")
		return
	}
	e.next.ServeHTTP(w, r)
}

// A batch run with known API keys and NATS passwords (from the environment,
// from files, and embedded in NATS_URL) leaves no trace of them: not in any
// worker log line (debug level, both replicas' stderr), event (EVENTS),
// result (RESULTS), dead letter (DLQ, payload and headers), job or
// provider state, nor in the error messages of failed jobs — although the
// provider echoed the key in its error bodies on four different paths.
func TestNoSecretsLeak(t *testing.T) {
	t.Parallel()
	s, slog := startShippedServer(t)
	wrap := func(h http.Handler) http.Handler { return &echoKey{next: h, done: map[string]bool{}} }
	_, simURL := simServer(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(150 * time.Millisecond)}}, wrap)
	apiKey := reelqtest.APIKey("samsar")
	workerPW := shippedPasswords["worker"]

	w1 := startOpsWorker(t, workerEnviron(s.ClientURL(), simURL, "leak-1",
		"NATS_USER=worker", "NATS_PASSWORD="+workerPW, "SAMSAR_API_KEY="+apiKey))
	u, _ := url.Parse(s.ClientURL())
	u.User = url.UserPassword("worker", workerPW)
	w2 := startOpsWorker(t, workerEnviron(u.String(), simURL, "leak-2",
		"SAMSAR_API_KEY_FILE="+writeSecret(t, "samsar-key", apiKey)))

	_, ajs := connectAs(t, s, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kv, err := ajs.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	prod := &queue.Producer{JS: ajs, States: jobstate.New(kv)}
	var jobs []queue.Job
	for _, tag := range []string{"plain-1", "plain-2", "plain-3", "echo-422", "echo-500", "echo-401"} {
		j := reelqtest.SamsarJob("leak-" + tag)
		j.Input = json.RawMessage(strings.Replace(string(j.Input), "a lighthouse", "a lighthouse "+tag, 1))
		jobs = append(jobs, j)
	}
	if _, err := prod.Publish(ctx, jobs, nil); err != nil {
		t.Fatal(err)
	}
	// And one message that is not a job at all: it is dead-lettered.
	if _, err := ajs.Publish(ctx, "jobs.samsar.leak-garbage", []byte(`{"provider":"samsar","input":`), jetstream.WithMsgID("leak-garbage")); err != nil {
		t.Fatal(err)
	}

	// The 401 pauses samsar for every replica until an operator resumes it.
	pkv, err := ajs.KeyValue(ctx, queue.BucketProviders)
	if err != nil {
		t.Fatal(err)
	}
	ps := providerstate.New(ajs, pkv, queue.StreamJobs)
	waitFor(t, 30*time.Second, "the auth pause", func() bool {
		st, _, err := ps.Get(ctx, "samsar")
		return err == nil && st.Paused && st.Code == providerstate.CodeAuth
	})
	if _, err := ps.Resume(ctx, "samsar", "test"); err != nil {
		t.Fatal(err)
	}

	results := map[string]queue.Result{}
	oc, err := ajs.OrderedConsumer(ctx, queue.StreamResults, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for len(results) < len(jobs)+1 {
		m, err := oc.Next(jetstream.FetchMaxWait(60 * time.Second))
		if err != nil {
			t.Fatalf("%d of %d results: %v\nworker log:\n%s", len(results), len(jobs)+1, err, w1.Log)
		}
		var r queue.Result
		_ = json.Unmarshal(m.Data(), &r)
		results[r.ID] = r
	}
	for id, r := range results {
		want := queue.StatusSucceeded
		if id == "leak-echo-422" || id == "leak-garbage" {
			want = queue.StatusFailed
		}
		if r.Status != want {
			t.Errorf("%s: %s (%+v), want %s", id, r.Status, r.Error, want)
		}
	}
	if e := results["leak-echo-422"].Error; e == nil || !strings.Contains(e.Message, "[REDACTED]") {
		t.Errorf("echo-422 error %+v: want the echoed key shown as [REDACTED]", e)
	}
	if err := w1.Stop(); err != nil {
		t.Error(err)
	}
	if err := w2.Stop(); err != nil {
		t.Error(err)
	}

	// Everything the system wrote, in one place.
	var corpus []string
	corpus = append(corpus, w1.Log.String(), w2.Log.String())
	for _, name := range []string{queue.StreamEvents, queue.StreamResults, queue.StreamDLQ, "KV_" + queue.BucketJobs, "KV_" + queue.BucketProviders} {
		c, err := ajs.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := ajs.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := uint64(0); i < info.State.Msgs; i++ {
			m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
			if err != nil {
				t.Fatalf("read %s: %v", name, err)
			}
			corpus = append(corpus, fmt.Sprintf("%s %s %v %s", name, m.Subject(), m.Headers(), m.Data()))
		}
		if name == queue.StreamDLQ && info.State.Msgs == 0 {
			t.Error("no dead letter to check")
		}
	}
	all := strings.Join(corpus, "\n")
	secrets := map[string]string{"SAMSAR_API_KEY": apiKey, "worker NATS password": workerPW}
	for what, sec := range secrets {
		for _, line := range strings.Split(all, "\n") {
			if strings.Contains(line, sec) {
				t.Errorf("%s leaked: %s", what, line)
			}
		}
	}
	if strings.Contains(all, "handler panic") {
		t.Error("a job handler panicked (see the worker log)")
	}
	// The faults really happened, and were redacted where reported.
	for _, want := range []string{"[REDACTED]", "provider_paused", "upstream failure while billing", "status backend down", "prompt refused for key"} {
		if !strings.Contains(all, want) {
			t.Errorf("nothing written mentions %q: the fault path did not run", want)
		}
	}
	if t.Failed() {
		t.Logf("server log:\n%s", slog)
	}
}
