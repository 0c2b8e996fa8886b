package main

// Tests of the shipped NATS permissions (deploy/nats/auth.conf, loaded
// through deploy/nats/nats-server.conf with nats-server's own loader) on a
// real server, with the real worker command and the real public client.
// SECURITY.md's table is checked against TestPermissionMatrix by
// TestSecurityTable.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/archive"
	"github.com/reelq/reelq/internal/dashboard"
	"github.com/reelq/reelq/internal/heartbeat"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

// shippedConfig is the single-server config in deploy/nats, which includes
// the identities of deploy/nats/auth.conf.
const shippedConfig = "../../deploy/nats/nats-server.conf"

// identities are the shipped NATS users, in the order of SECURITY.md's
// table columns.
var identities = []string{"worker", "producer", "results", "operator", "admin"}

// shippedPasswords are the users' passwords for the tests, given to the
// server through the environment variables auth.conf reads.
var shippedPasswords = map[string]string{
	"admin":     "adm-Pw-4f1c9b7e2d",
	"worker":    "wrk-Pw-8e3a6c1f5b",
	"producer":  "prd-Pw-2b7d9e4a1c",
	"results":   "res-Pw-6c4f2a8d3e",
	"operator":  "opr-Pw-9d1e7b3c5a",
	"dashboard": "dsh-Pw-3e8b1d6f2a",
	"forwarder": "fwd-Pw-7a2c5e9b4d",
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

// violations returns the server's permission-violation lines of clients
// whose name contains name.
func violations(log *opsLog, name string) []string {
	var out []string
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, "Violation") && strings.Contains(line, name) {
			out = append(out, line)
		}
	}
	return out
}

// startShippedServer loads the shipped config with nats-server's own
// loader and starts it on a random loopback port with a temporary store.
func startShippedServer(t testing.TB) (*server.Server, *opsLog) {
	t.Helper()
	return startConfigServer(t, shippedConfig)
}

// startConfigServer is startShippedServer for the config at path (the
// shipped one, or a copy of it the test changed).
func startConfigServer(t testing.TB, path string) (*server.Server, *opsLog) {
	t.Helper()
	setPasswordsOnce.Do(func() {
		for user, pw := range shippedPasswords {
			// The variables auth.conf reads; the same values in every test.
			os.Setenv("REELQ_NATS_"+strings.ToUpper(user)+"_PASSWORD", pw)
		}
	})
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	if !opts.SyncAlways || !opts.JetStream {
		t.Errorf("%s: jetstream %v sync_interval always %v, want both", path, opts.JetStream, opts.SyncAlways)
	}
	if opts.HTTPHost != "127.0.0.1" {
		t.Errorf("%s: monitoring on %q, want 127.0.0.1 only", path, opts.HTTPHost)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.HTTPHost, opts.HTTPPort = "", 0
	opts.StoreDir = t.TempDir()
	opts.NoSigs = true
	opts.LameDuckDuration, opts.LameDuckGracePeriod = 0, 0
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("server from %s: %v", path, err)
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

// ident is one connection as a shipped identity, with its own reply
// prefix (_INBOX_<user>), as NATS_INBOX_PREFIX gives the worker.
type ident struct {
	user string
	nc   *nats.Conn
	js   jetstream.JetStream
	// errs receives the connection's asynchronous errors (permission
	// violations of subscriptions, say).
	errs chan error
}

// connectGuard bounds a test connection's handshake as a hang guard. The
// client's 2 s default is a speed bound: under the consumer floods, with
// the shipped config's sync_interval always, on a loaded 2-core machine
// the server answered later (TestConsumerExhaustion: "connect as
// producer: read tcp ...: i/o timeout").
var connectGuard = nats.Timeout(time.Minute)

func connectAs(t testing.TB, s *server.Server, user string) *ident {
	t.Helper()
	id := &ident{user: user, errs: make(chan error, 64)}
	nc, err := nats.Connect(s.ClientURL(), connectGuard, nats.UserInfo(user, shippedPasswords[user]), nats.Name("reelq-test/"+user),
		nats.CustomInboxPrefix("_INBOX_"+user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case id.errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	id.nc, id.js = nc, js
	return id
}

// clients are the public client and the inspector over one connection.
type clients struct {
	*reelq.Client
	*inspect.Inspector
}

// client is the public client and the inspector over id's connection,
// with the consumer prefix the deployment gives that identity (its user
// name).
func (id *ident) client(t testing.TB) clients {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := reelq.Options{ProviderEnv: map[string]string{}, By: id.user, ConsumerPrefix: id.user, Timeout: 5 * time.Second}
	c, err := reelq.NewClient(ctx, id.nc, o)
	if err != nil {
		t.Fatalf("client as %s: %v", id.user, err)
	}
	ins, err := inspect.New(ctx, id.nc, o)
	if err != nil {
		t.Fatalf("inspector as %s: %v", id.user, err)
	}
	return clients{c, ins}
}

// simServer serves the simulator (wrapped by wrap, if set) over HTTP.
func simServer(t testing.TB, knobs map[string]providersim.Knobs, wrap func(http.Handler) http.Handler) (*providersim.Server, string) {
	t.Helper()
	every := map[string]providersim.Knobs{}
	for _, p := range all.Names() {
		k := knobs[p]
		k.APIKey = reelqtest.APIKey(p)
		every[p] = k
	}
	sim := all.Simulator(every, 11)
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

// workerEnviron is a samsar-only worker as the worker identity would run
// it (its reply prefix included); extra entries override earlier ones.
func workerEnviron(natsURL, simURL, id string, extra ...string) []string {
	return append([]string{
		"NATS_URL=" + natsURL,
		"NATS_INBOX_PREFIX=_INBOX_worker",
		"SAMSAR_BASE_URL=" + simURL,
		"SAMSAR_RATE=200", "SAMSAR_BURST=20", "SAMSAR_MAX_INFLIGHT=8", "SAMSAR_POLL_INTERVAL=50ms",
		"WORKER_HTTP_ADDR=127.0.0.1:0",
		"LOG_FORMAT=json", "LOG_LEVEL=debug",
		"REELQ_WORKER_ID=" + id,
		"REELQ_ACK_WAIT=10s", "REELQ_RETRY_BASE=100ms", "REELQ_RETRY_MAX=1s",
		"SAMSAR_REQUEST_TIMEOUT=5s", "REELQ_SHUTDOWN_TIMEOUT=15s",
		"REELQ_ARCHIVE_ALLOW_HOSTS=127.0.0.1",
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
func (d *deniedChecks) publish(id *ident, subject string, data []byte) {
	d.check(id.user+" publishes to "+subject, func(ctx context.Context) error {
		_, err := id.js.Publish(ctx, subject, data)
		return err
	})
}

func cambJob(id, batch string) reelq.Job {
	return reelq.Job{ID: id, Provider: "camb", Batch: batch, Input: []byte(`{"text":"A lighthouse keeper found a bottle (` + id + `).","source_language":1}`)}
}

func samsarJob(id, batch string) reelq.Job {
	j := reelqtest.SamsarJob(id)
	j.Batch = batch
	return j
}

// holdCreate makes the first Samsar submission of the job whose prompt
// names id go unanswered until the worker gives up on it (its request
// timeout): a submission whose outcome is unknown.
func holdCreate(id string) func(http.Handler) http.Handler {
	var once sync.Once
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/video/create") {
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(strings.NewReader(string(body)))
				if strings.Contains(string(body), reelqtest.SamsarPrompt(id)) {
					held := false
					once.Do(func() { held = true })
					if held {
						<-r.Context().Done()
						return
					}
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// waitState polls job id's state through c until cond holds.
func waitState(t *testing.T, c clients, id string, what string, cond func(*reelq.JobState) bool) *reelq.JobState {
	t.Helper()
	var last *reelq.JobState
	waitfor.Until(t, time.Minute, id+" "+what, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.Get(ctx, id)
		if err != nil {
			return false
		}
		last = st
		return cond(st)
	})
	return last
}

// A whole batch through the shipped permissions, every identity doing
// what it is for with the real public client, and the real worker command
// running as the worker identity (its NATS password and API key read from
// files, its own reply prefix): enqueue with the batched known-checks,
// get (queued in JOBS and from job state), wait, follow, cancel (one job
// and a batch, carried out by the canceller), retry, stats, batch listing
// (the batch index), batch budget, archived outputs from the object store;
// the operator's pause and resume, resolve of a held job through CONTROL,
// dead letters (the sweeper's poison job and the worker's invalid message)
// and redrive; an automatic pause for credits ended by the worker's probe;
// the results identity's durable consumer and follow; and the enqueue
// command as each role runs it, every command the role is documented to
// use (shippedCLI). Nobody hits a permission violation.
func TestShippedPermissions(t *testing.T) {
	t.Parallel()
	s, slog := startShippedServer(t)
	sim, simURL := simServer(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(100 * time.Millisecond)}},
		func(h http.Handler) http.Handler { return holdCreate("perm-held")(holdCreate("perm-cli-held")(h)) })

	w := startOpsWorker(t, workerEnviron(s.ClientURL(), simURL, "perm-worker",
		"NATS_USER=worker",
		"NATS_PASSWORD_FILE="+writeSecret(t, "nats-password", shippedPasswords["worker"]),
		"SAMSAR_API_KEY_FILE="+writeSecret(t, "samsar-key", reelqtest.APIKey("samsar")),
		"SAMSAR_REQUEST_TIMEOUT=2s", "SAMSAR_AMBIGUOUS=hold", "SAMSAR_AMBIGUOUS_PAUSE_AFTER=-1",
		"REELQ_PROBE_INTERVAL=300ms", "REELQ_MAX_PROBE_INTERVAL=1s",
	))
	if code, body, _ := w.get("/readyz"); code != 200 {
		t.Fatalf("worker not ready: %d %s", code, body)
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\nworker log:\n%s\nserver log:\n%s", append(args, w.Log, slog)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	prodID := connectAs(t, s, "producer")
	prod := prodID.client(t)
	opID := connectAs(t, s, "operator")
	op := opID.client(t)
	res := connectAs(t, s, "results").client(t)
	admin := connectAs(t, s, "admin")

	// Producer: a batch of Samsar jobs and Camb jobs no worker runs (they
	// stay queued).
	after, err := prod.ResultsSeq(ctx)
	if err != nil {
		fail("producer: results sequence: %v", err)
	}
	const n = 6
	var jobs []reelq.Job
	var ids []string
	for i := range n {
		j := samsarJob(fmt.Sprintf("perm-%02d", i), "perm")
		jobs, ids = append(jobs, j), append(ids, j.ID)
	}
	jobs = append(jobs, cambJob("perm-camb-1", "perm-camb"), cambJob("perm-camb-2", "perm-camb2"), cambJob("perm-camb-3", "perm-camb"))
	out, err := prod.EnqueueBatch(ctx, jobs, reelq.BatchOptions{})
	if err != nil {
		fail("producer: enqueue: %v", err)
	}
	for _, o := range out {
		if o.Status != reelq.Published {
			fail("producer: enqueue %s: %s %v", o.ID, o.Status, o.Err)
		}
	}
	// The known-checks: the same batch again publishes nothing.
	again, err := prod.EnqueueBatch(ctx, jobs, reelq.BatchOptions{})
	if err != nil {
		fail("producer: enqueue again: %v", err)
	}
	for _, o := range again {
		if o.Status != reelq.Known {
			t.Errorf("producer: enqueue %s again: %s %v, want known", o.ID, o.Status, o.Err)
		}
	}
	got, err := reelqtest.WaitAll(ctx, prod.Client, ids, reelq.WaitOptions{From: after + 1})
	if err != nil {
		fail("producer: wait all: %d of %d: %v", len(got), n, err)
	}
	var archived *reelq.ArchivedCopy
	for _, id := range ids {
		r := got[id]
		if r == nil || r.Status != reelq.StatusSucceeded {
			t.Errorf("job %s: %+v, want succeeded", id, r)
			continue
		}
		for _, o := range r.Outputs {
			if o.Archive != nil && archived == nil {
				archived = o.Archive
			}
		}
	}
	if r, err := prod.Wait(ctx, ids[0]); err != nil || r.Status != reelq.StatusSucceeded {
		t.Errorf("producer: wait %s: %+v %v", ids[0], r, err)
	}
	st, err := prod.Get(ctx, "perm-camb-3")
	if err != nil || st.Phase != reelq.PhaseQueued || st.Seq == 0 {
		fail("producer: get a queued job: %+v %v", st, err)
	}
	poisonSeq := st.Seq

	// Cancel: one job, and a batch; the canceller (a worker) finishes them.
	if o, err := prod.Cancel(ctx, "perm-camb-1"); err != nil || o.Status != reelq.CancelRequested {
		fail("producer: cancel: %+v %v", o, err)
	}
	requested := 0
	for o, err := range prod.CancelBatch(ctx, "perm-camb2", "test") {
		if err != nil {
			fail("producer: cancel batch: %+v %v", o, err)
		}
		if o.Status == reelq.CancelRequested {
			requested++
		}
	}
	if requested != 1 {
		fail("producer: cancel batch: %d requested, want 1", requested)
	}
	for _, id := range []string{"perm-camb-1", "perm-camb-2"} {
		if r, err := prod.Wait(ctx, id); err != nil || r.Status != reelq.StatusCancelled {
			fail("producer: wait for cancelled %s: %+v %v", id, r, err)
		}
	}
	// Retry a cancelled job: run 2 is queued again.
	if run, err := prod.Retry(ctx, "perm-camb-1"); err != nil || run != 2 {
		fail("producer: retry: %d %v", run, err)
	}

	// Stats (counters, consumers, slots, pause state), the batch listing
	// (batch index and queue), a batch budget, an archived output.
	var stats *inspect.Stats
	if err := waitfor.Poll(time.Minute, func() error {
		var err error
		if stats, err = prod.Stats(ctx, inspect.StatsOptions{Batch: "perm"}); err == nil && stats.Folded.Behind() > 0 {
			return fmt.Errorf("counts folded through %d of %d", stats.Folded.Through, stats.Folded.Results)
		}
		return err
	}); err != nil {
		fail("producer: stats: %v", err)
	}
	if len(stats.Batches) != 1 || stats.Batches[0].Enqueued != n || stats.Batches[0].Succeeded != n {
		t.Errorf("producer: stats of batch perm: %+v, want %d enqueued and succeeded", stats.Batches, n)
	}
	bj, err := prod.BatchJobs(ctx, "perm")
	if err != nil || len(bj) != n {
		t.Errorf("producer: batch jobs: %d %v, want %d", len(bj), err, n)
	}
	if err := prod.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "perm", Amount: 1000, Unit: "credits"}); err != nil {
		t.Errorf("producer: batch budget: %v", err)
	}
	if archived == nil {
		fail("no result carries an archived output")
	}
	for _, c := range []clients{prod, res} {
		dst := filepath.Join(t.TempDir(), "out.mp4")
		if _, err := c.DownloadOutput(ctx, *archived, dst, nil); err != nil {
			t.Errorf("download the archived output: %v", err)
		} else if b, err := os.ReadFile(dst); err != nil || int64(len(b)) != archived.Size {
			t.Errorf("downloaded %d bytes (%v), want %d", len(b), err, archived.Size)
		} else if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != archived.SHA256 {
			t.Error("downloaded output does not match its SHA-256")
		}
	}

	// Operator: pause and resume (the job waits, then runs).
	if _, err := op.Pause(ctx, "samsar", "test"); err != nil {
		fail("operator: pause: %v", err)
	}
	if st, err := op.Stats(ctx, inspect.StatsOptions{Recent: -1}); err != nil {
		fail("operator: stats: %v", err)
	} else {
		for _, p := range st.Providers {
			if p.Provider == "samsar" && (p.Pause == nil || p.Pause.Code != providerstate.CodeManual) {
				t.Errorf("samsar pause %+v, want manual", p.Pause)
			}
		}
	}
	if _, err := op.Resume(ctx, "samsar"); err != nil {
		fail("operator: resume: %v", err)
	}
	// Resolve a held job: its first submission went unanswered.
	if _, err := prod.Enqueue(ctx, samsarJob("perm-held", "perm-ops")); err != nil {
		t.Fatal(err)
	}
	waitState(t, prod, "perm-held", "held", func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseHeld })
	if st, err := op.Resolve(ctx, "perm-held", inspect.ResolveOptions{Resubmit: true}); err != nil {
		fail("operator: resolve: %+v %v", st, err)
	}
	if r, err := prod.Wait(ctx, "perm-held"); err != nil || r.Status != reelq.StatusSucceeded {
		fail("held job after resolve: %+v %v", r, err)
	}

	// Dead letters: the sweeper moves a job the server reports as
	// delivered too often (the advisory is what the server publishes), and
	// the worker dead-letters a message that is no job.
	adv, _ := json.Marshal(map[string]any{"type": "io.nats.jetstream.advisory.v1.max_deliver", "stream": queue.StreamJobs,
		"consumer": "camb", "stream_seq": poisonSeq, "deliveries": 100})
	if _, err := admin.js.Publish(ctx, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.JOBS.camb", adv); err != nil {
		fail("advisory: %v", err)
	}
	if r, err := prod.Wait(ctx, "perm-camb-3"); err != nil || r.Status != reelq.StatusFailed || r.Error == nil || r.Error.Code != reelq.CodePoison {
		fail("swept job: %+v %v", r, err)
	}
	if _, err := prodID.js.Publish(ctx, "jobs.samsar.perm-garbage", []byte(`{"provider":"samsar","input":`)); err != nil {
		fail("producer: publish garbage: %v", err)
	}
	var dls []inspect.DeadLetter
	waitfor.Until(t, 30*time.Second, "two dead letters", func() bool {
		dls, err = op.DeadLetters(ctx)
		return err == nil && len(dls) == 2
	})
	for _, d := range dls {
		switch {
		case d.JobID == "perm-camb-3":
			// The poison job runs again as run 2, and its dead letter
			// is removed.
			if what, err := op.Redrive(ctx, d, false); what.Action != inspect.RedriveRetried || err != nil {
				t.Errorf("operator: redrive: %q %v", what, err)
			}
		default:
			// The operator removes a dead letter.
			dlq, err := opID.js.Stream(ctx, queue.StreamDLQ)
			if err != nil {
				fail("operator: DLQ stream: %v", err)
			}
			if err := dlq.DeleteMsg(ctx, d.Seq); err != nil {
				t.Errorf("operator: delete dead letter %d: %v", d.Seq, err)
			}
		}
	}
	if dls, err = op.DeadLetters(ctx); err != nil || len(dls) != 0 {
		t.Errorf("operator: %d dead letters after the redrive and the deletion (%v), want none", len(dls), err)
	}
	if err := op.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeProvider, Name: "samsar", Amount: 1e9, Unit: "credits"}); err != nil {
		t.Errorf("operator: provider budget: %v", err)
	}

	// Out of credits: the worker pauses samsar and probes until credits
	// are back.
	if err := sim.SetCredits("samsar", 0, false); err != nil {
		t.Fatal(err)
	}
	followFrom, err := res.ResultsSeq(ctx)
	if err != nil {
		fail("results: results sequence: %v", err)
	}
	if _, err := prod.Enqueue(ctx, samsarJob("perm-credits", "perm-ops")); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, time.Minute, "the credits pause", func() bool {
		st, err := prod.Stats(ctx, inspect.StatsOptions{Recent: -1})
		if err != nil {
			return false
		}
		for _, p := range st.Providers {
			if p.Provider == "samsar" && p.Pause != nil && p.Pause.Code == providerstate.CodeCredits {
				return true
			}
		}
		return false
	})
	if err := sim.SetCredits("samsar", 1e9, false); err != nil {
		t.Fatal(err)
	}
	if r, err := prod.Wait(ctx, "perm-credits"); err != nil || r.Status != reelq.StatusSucceeded {
		fail("job after the credits pause: %+v %v", r, err)
	}

	// Results identity: its durable consumer (results_main) and follow.
	rctx, rcancel := context.WithCancel(ctx)
	seen := 0
	for d, err := range res.Results(rctx, reelq.ResultsOptions{Name: "main", Provider: "samsar"}) {
		if err != nil {
			fail("results: durable consumer: %v", err)
		}
		if err := d.Ack(ctx); err != nil {
			t.Errorf("results: ack: %v", err)
		}
		if seen++; seen == n {
			break
		}
	}
	rcancel()
	if err := res.DeleteResults(ctx, "main"); err != nil {
		t.Errorf("results: delete its durable consumer: %v", err)
	}
	fctx, fcancel := context.WithCancel(ctx)
	for d, err := range res.Results(fctx, reelq.ResultsOptions{After: followFrom, Follow: true, FromNow: followFrom == 0, Provider: "samsar"}) {
		if err != nil {
			fail("results: follow: %v", err)
		}
		if d.Result.ID == "perm-credits" {
			break
		}
	}
	fcancel()

	shippedCLI(t, s, prod, admin)

	if err := w.Stop(); err != nil {
		t.Errorf("worker: %v", err)
	}
	for _, l := range w.Log.Lines() {
		if strings.Contains(strings.ToLower(fmt.Sprint(l)), "permission") {
			t.Errorf("worker log: %v", l)
		}
	}
	for _, who := range []string{"reelq-worker/", "reelq-test/producer", "reelq-test/operator", "reelq-test/results", "reelq-enqueue"} {
		for _, line := range violations(slog, who) {
			t.Errorf("permission violation: %s", line)
		}
	}
	if t.Failed() {
		t.Logf("server log:\n%s", slog)
	}
}

// victimState is a finished job's state as a worker writes it.
func victimState(t *testing.T, kv jetstream.KeyValue, id string) (*reelq.JobState, uint64) {
	t.Helper()
	e, err := kv.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("state of %s: %v", id, err)
	}
	var st reelq.JobState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		t.Fatal(err)
	}
	return &st, e.Revision()
}

// Producers cannot write job state at all ($KV.reelq_jobs.> is denied):
// a producer cannot publish a forged result as another job's output (the
// reviewer's https://evil.example/malware.mp4 as victim-9's), reset a
// submitted job to queued, mark a job finished or cancelled, delete or
// purge a job's state, or claim an id; nor write the other buckets only
// workers or operators write, results, dead letters, operator requests or
// advisories. The victim's state is untouched and still shows its real
// output through the producer's own client.
func TestProducerCannotWriteJobState(t *testing.T) {
	t.Parallel()
	s, slog := startShippedServer(t)
	_, simURL := simServer(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(100 * time.Millisecond)}}, nil)
	w := startOpsWorker(t, workerEnviron(s.ClientURL(), simURL, "forge-worker",
		"NATS_USER=worker", "NATS_PASSWORD="+shippedPasswords["worker"], "SAMSAR_API_KEY="+reelqtest.APIKey("samsar")))
	defer func() { _ = w.Stop() }()

	pid := connectAs(t, s, "producer")
	prod := pid.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := prod.Enqueue(ctx, samsarJob("victim-9", "victims")); err != nil {
		t.Fatal(err)
	}
	r, err := prod.Wait(ctx, "victim-9")
	if err != nil || r.Status != reelq.StatusSucceeded || len(r.Outputs) == 0 {
		t.Fatalf("victim-9: %+v %v", r, err)
	}
	realURL := r.Outputs[0].URL

	admin := connectAs(t, s, "admin")
	akv, err := admin.js.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	before, rev := victimState(t, akv, "victim-9")
	pkv, err := pid.js.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		t.Fatalf("producer opens the job state bucket (for reading): %v", err)
	}
	forge := func(mut func(st *reelq.JobState)) []byte {
		st := *before
		mut(&st)
		b, _ := json.Marshal(st)
		return b
	}
	evil := forge(func(st *reelq.JobState) {
		fake := *r
		fake.Outputs = []reelq.Output{{URL: "https://evil.example/malware.mp4", ContentType: "video/mp4"}}
		st.Result, _ = json.Marshal(fake)
		st.Outputs = fake.Outputs
	})
	requeued := forge(func(st *reelq.JobState) { st.Phase, st.Result, st.Task = reelq.PhaseQueued, nil, nil })
	cancelled := forge(func(st *reelq.JobState) {
		fake := *r
		fake.Status, fake.Outputs = reelq.StatusCancelled, nil
		st.Result, _ = json.Marshal(fake)
	})

	d := &deniedChecks{t: t}
	d.check("producer forges victim-9's output (KV update)", func(ctx context.Context) error {
		_, err := pkv.Update(ctx, "victim-9", evil, rev)
		return err
	})
	d.check("producer forges victim-9's output (KV put)", func(ctx context.Context) error {
		_, err := pkv.Put(ctx, "victim-9", evil)
		return err
	})
	d.check("producer resets victim-9 to queued", func(ctx context.Context) error {
		_, err := pkv.Put(ctx, "victim-9", requeued)
		return err
	})
	d.check("producer marks victim-9 cancelled", func(ctx context.Context) error {
		_, err := pkv.Put(ctx, "victim-9", cancelled)
		return err
	})
	d.check("producer deletes victim-9's state", func(ctx context.Context) error { return pkv.Delete(ctx, "victim-9") })
	d.check("producer purges victim-9's state", func(ctx context.Context) error { return pkv.Purge(ctx, "victim-9") })
	d.check("producer claims a new job id", func(ctx context.Context) error {
		_, err := pkv.Create(ctx, "victim-10", requeued)
		return err
	})
	d.publish(pid, "$KV."+queue.BucketJobs+".victim-9", evil)
	d.publish(pid, "$KV."+queue.BucketProviders+".samsar", []byte(`{"paused":true}`))
	d.publish(pid, "$KV."+queue.BucketSlots+".samsar", []byte(`{}`))
	d.publish(pid, "$KV."+queue.BucketRateLimit+".samsar", []byte(`{}`))
	d.publish(pid, "$KV."+wire.BucketBudgets+"."+wire.BudgetLimitKey(reelq.ScopeProvider, "samsar"), []byte(`{}`))
	d.publish(pid, "$KV."+wire.BucketBudgets+"."+wire.BudgetSpendKey(reelq.ScopeBatch, "victims", 0), []byte(`{}`))
	d.publish(pid, wire.ResultSubject("samsar", "victim-9"), evil)
	d.publish(pid, wire.DLQSubject("samsar", "victim-9"), evil)
	d.publish(pid, wire.ControlSubject("resolve", "victim-9"), []byte(`{"resubmit":true}`))
	d.publish(pid, wire.BatchCounterSubject("victims", "done_succeeded"), nil)
	d.publish(pid, "$KV."+wire.BucketTallies+"."+wire.TallyKey("batch", "victims", "done_succeeded"), []byte(`{"val":"1000000"}`))
	d.publish(pid, "$KV."+wire.BucketTallies+"."+wire.TallyThroughKey, []byte(`{"through":999999999}`))
	d.publish(pid, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.JOBS.samsar", []byte(`{"stream":"JOBS","stream_seq":1}`))
	d.publish(pid, "$O.reelq_outputs.M.forged", evil)
	d.wg.Wait()

	after, rev2 := victimState(t, akv, "victim-9")
	if rev2 != rev || after.Phase != reelq.PhaseFinished || !after.Succeeded() {
		t.Errorf("victim-9's state changed: revision %d -> %d, %+v", rev, rev2, after)
	}
	if _, err := akv.Get(ctx, "victim-10"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("victim-10 claimed: %v", err)
	}
	st, err := prod.Get(ctx, "victim-9")
	if err != nil || st.StoredResult() == nil || st.StoredResult().Outputs[0].URL != realURL {
		t.Errorf("victim-9 as the producer reads it: %+v %v, want output %s", st, err, realURL)
	}
	if v := violations(slog, "reelq-test/producer"); len(v) == 0 || !strings.Contains(strings.Join(v, "\n"), "$KV.reelq_jobs.victim-9") {
		t.Errorf("no permission violation on $KV.reelq_jobs.victim-9 in the server log:\n%s", strings.Join(v, "\n"))
	}
}

// Each identity creates and deletes only its own consumers. The producer
// and results identities cannot delete a downstream `billing` consumer on
// RESULTS, nor a consumer of KV_reelq_jobs, nor the workers' JOBS
// consumers, nor each other's declared durables (results_main,
// producer_main), which they cannot re-create (update) or pull from
// either; each creates, uses and deletes its own (Results(Name: "main")
// with ConsumerPrefix = its user name), and nothing else: a durable that
// auth.conf does not declare cannot be reconfigured or deleted by any
// client role (they need no consumer of any other name: the client reads
// by direct get).
func TestConsumerOwnership(t *testing.T) {
	t.Parallel()
	s, _ := startShippedServer(t)
	admin := connectAs(t, s, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := queue.Setup(ctx, admin.js, queue.Layout{}); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.EnsureConsumers(ctx, admin.js, "samsar", queue.ConsumerSettings{}); err != nil {
		t.Fatal(err)
	}
	billing := jetstream.ConsumerConfig{Durable: "billing", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "results.>"}
	if _, err := admin.js.CreateOrUpdateConsumer(ctx, queue.StreamResults, billing); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.js.CreateOrUpdateConsumer(ctx, "KV_"+queue.BucketJobs, jetstream.ConsumerConfig{Durable: "audit", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.js.Publish(ctx, wire.ResultSubject("samsar", "own-1"), []byte(`{"id":"own-1","provider":"samsar","status":"succeeded","run":1}`)); err != nil {
		t.Fatal(err)
	}

	ids := map[string]*ident{}
	for _, u := range []string{"producer", "results", "operator"} {
		ids[u] = connectAs(t, s, u)
	}
	d := &deniedChecks{t: t}
	for _, u := range []string{"producer", "results", "operator"} {
		id := ids[u]
		d.check(u+" deletes billing on RESULTS", func(ctx context.Context) error {
			return id.js.DeleteConsumer(ctx, queue.StreamResults, "billing")
		})
		d.check(u+" reconfigures billing on RESULTS", func(ctx context.Context) error {
			cfg := billing
			cfg.FilterSubject = "results.none.>"
			_, err := id.js.CreateOrUpdateConsumer(ctx, queue.StreamResults, cfg)
			return err
		})
		d.check(u+" pulls from billing on RESULTS", func(ctx context.Context) error {
			_, err := id.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.RESULTS.billing", []byte(`{"batch":1,"no_wait":true}`))
			return err
		})
		d.check(u+" deletes audit on KV_reelq_jobs", func(ctx context.Context) error {
			return id.js.DeleteConsumer(ctx, "KV_"+queue.BucketJobs, "audit")
		})
		d.check(u+" creates a consumer on KV_reelq_jobs", func(ctx context.Context) error {
			_, err := id.js.CreateOrUpdateConsumer(ctx, "KV_"+queue.BucketJobs, jetstream.ConsumerConfig{Name: u + "_spy", AckPolicy: jetstream.AckNonePolicy})
			return err
		})
		d.check(u+" deletes the samsar consumer on JOBS", func(ctx context.Context) error {
			return id.js.DeleteConsumer(ctx, queue.StreamJobs, "samsar")
		})
		d.check(u+" pulls from the samsar consumer on JOBS", func(ctx context.Context) error {
			_, err := id.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.JOBS.samsar", []byte(`{"batch":1,"no_wait":true}`))
			return err
		})
		for _, other := range []string{"producer", "results", "operator"} {
			if other == u {
				continue
			}
			name := other + "_main"
			d.check(u+" re-creates "+name, func(ctx context.Context) error {
				_, err := id.js.CreateOrUpdateConsumer(ctx, queue.StreamResults, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy})
				return err
			})
			d.check(u+" pulls from "+name, func(ctx context.Context) error {
				_, err := id.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.RESULTS."+name, []byte(`{"batch":1,"no_wait":true}`))
				return err
			})
		}
	}
	// Each creates, uses and deletes its own; the declared durables exist
	// while the others try to take them over.
	for _, u := range []string{"producer", "results", "operator"} {
		c := ids[u].client(t)
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		for dl, err := range c.Results(rctx, reelq.ResultsOptions{Name: "main"}) {
			if err != nil {
				t.Errorf("%s: its own durable: %v", u, err)
				break
			}
			if err := dl.Ack(ctx); err != nil {
				t.Errorf("%s: ack on its own durable: %v", u, err)
			}
			break
		}
		rcancel()
	}
	d.wg.Wait()
	for _, u := range []string{"producer", "results", "operator"} {
		if err := ids[u].client(t).DeleteResults(ctx, "main"); err != nil {
			t.Errorf("%s: delete its own durable %s_main: %v", u, u, err)
		}
	}
	for stream, name := range map[string]string{queue.StreamResults: "billing", "KV_" + queue.BucketJobs: "audit", queue.StreamJobs: "samsar"} {
		if _, err := admin.js.Consumer(ctx, stream, name); err != nil {
			t.Errorf("consumer %s on %s: %v", name, stream, err)
		}
	}
	if _, err := admin.js.Consumer(ctx, "KV_"+queue.BucketJobs, "producer_spy"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("producer_spy on KV_reelq_jobs: %v, want not found", err)
	}
	// A durable on RESULTS that auth.conf does not declare (the reviewer's
	// billing-eu, created by admin) is out of every client role's reach
	// too: they may create, reconfigure and delete only their own.
	undeclared := jetstream.ConsumerConfig{Durable: "billing-eu", AckPolicy: jetstream.AckExplicitPolicy}
	if _, err := admin.js.CreateOrUpdateConsumer(ctx, queue.StreamResults, undeclared); err != nil {
		t.Fatal(err)
	}
	d = &deniedChecks{t: t}
	for _, u := range []string{"producer", "results", "operator"} {
		id := ids[u]
		d.check(u+" reconfigures an undeclared durable", func(ctx context.Context) error {
			cfg := undeclared
			cfg.Description = "reconfigured by " + u
			_, err := id.js.CreateOrUpdateConsumer(ctx, queue.StreamResults, cfg)
			return err
		})
		d.check(u+" deletes an undeclared durable", func(ctx context.Context) error {
			return id.js.DeleteConsumer(ctx, queue.StreamResults, "billing-eu")
		})
	}
	d.wg.Wait()
	if _, err := admin.js.Consumer(ctx, queue.StreamResults, "billing-eu"); err != nil {
		t.Errorf("the undeclared durable billing-eu: %v", err)
	}
}

// Inbox isolation: every identity gets its replies under its own prefix
// (_INBOX_<user>) and may subscribe to nothing else. No identity can
// subscribe to the shared _INBOX.>, to another identity's prefix or to
// everything (the reviewer's results identity read job payloads and KV
// replies meant for workers through _INBOX.>); the server refuses each
// subscription and never registers it, while a worker is busy answering
// through its own prefix. An identity that connects without its prefix
// gets no JetStream answers at all.
func TestInboxIsolation(t *testing.T) {
	t.Parallel()
	s, _ := startShippedServer(t)
	_, simURL := simServer(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(100 * time.Millisecond)}}, nil)
	w := startOpsWorker(t, workerEnviron(s.ClientURL(), simURL, "inbox-worker",
		"NATS_USER=worker", "NATS_PASSWORD="+shippedPasswords["worker"], "SAMSAR_API_KEY="+reelqtest.APIKey("samsar")))
	defer func() { _ = w.Stop() }()

	for _, u := range []string{"worker", "producer", "results", "operator"} {
		id := connectAs(t, s, u)
		subjects := []string{"_INBOX.>", ">", "_INBOX_*.>"}
		for _, other := range []string{"worker", "producer", "results", "operator", "admin"} {
			if other != u {
				subjects = append(subjects, "_INBOX_"+other+".>")
			}
		}
		for _, subj := range subjects {
			sub, err := id.nc.SubscribeSync(subj)
			if err != nil {
				t.Fatal(err)
			}
			if err := id.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-id.errs:
				if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), subj) {
					t.Errorf("%s subscribing to %s: %v", u, subj, err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("%s subscribed to %s: no permission violation", u, subj)
			}
			_ = sub.Unsubscribe()
		}
		// Its own prefix works: a JetStream request is answered.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := id.nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO."+queue.StreamResults, nil); err != nil {
			t.Errorf("%s: request under its own prefix: %v", u, err)
		}
		cancel()
	}
	// Nothing but the identities' own inboxes is subscribed on the server.
	cz, err := s.Connz(&server.ConnzOptions{Subscriptions: true, Username: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cz.Conns {
		for _, sub := range c.Subs {
			want := "_INBOX_" + c.AuthorizedUser + "."
			if !strings.HasPrefix(sub, want) {
				t.Errorf("connection %s (%s) is subscribed to %s", c.Name, c.AuthorizedUser, sub)
			}
		}
	}
	// Without its prefix an identity gets no answers.
	nc, err := nats.Connect(s.ClientURL(), connectGuard, nats.UserInfo("results", shippedPasswords["results"]), nats.Name("reelq-test/results-default-inbox"),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO."+queue.StreamResults, nil); err == nil {
		t.Error("results got a JetStream answer on the shared _INBOX prefix")
	}
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

	admin := connectAs(t, s, "admin")
	ajs := admin.js
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var jobs []reelq.Job
	for _, tag := range []string{"plain-1", "plain-2", "plain-3", "echo-422", "echo-500", "echo-401"} {
		j := reelqtest.SamsarJob("leak-" + tag)
		j.Input = json.RawMessage(strings.Replace(string(j.Input), "a lighthouse", "a lighthouse "+tag, 1))
		jobs = append(jobs, j)
	}
	out, err := connectAs(t, s, "producer").client(t).EnqueueBatch(ctx, jobs, reelq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Err != nil {
			t.Fatalf("enqueue %s: %v", o.ID, o.Err)
		}
	}
	// And one message that is not a job at all: it is dead-lettered.
	if _, err := ajs.Publish(ctx, "jobs.samsar.leak-garbage", []byte(`{"provider":"samsar","input":`), jetstream.WithMsgID("leak-garbage")); err != nil {
		t.Fatal(err)
	}

	// The 401 pauses samsar for every replica until an operator resumes it.
	op := connectAs(t, s, "operator").client(t)
	waitfor.Until(t, 30*time.Second, "the auth pause", func() bool {
		st, err := op.Stats(ctx, inspect.StatsOptions{Recent: -1})
		if err != nil {
			return false
		}
		for _, p := range st.Providers {
			if p.Provider == "samsar" && p.Pause != nil && p.Pause.Code == providerstate.CodeAuth {
				return true
			}
		}
		return false
	})
	if _, err := op.Resume(ctx, "samsar"); err != nil {
		t.Fatal(err)
	}

	results := map[string]reelq.Result{}
	oc, err := ajs.OrderedConsumer(ctx, queue.StreamResults, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for len(results) < len(jobs)+1 {
		m, err := oc.Next(jetstream.FetchMaxWait(60 * time.Second))
		if err != nil {
			t.Fatalf("%d of %d results: %v\nworker log:\n%s", len(results), len(jobs)+1, err, w1.Log)
		}
		var r reelq.Result
		_ = json.Unmarshal(m.Data(), &r)
		results[r.ID] = r
	}
	for id, r := range results {
		want := reelq.StatusSucceeded
		if id == "leak-echo-422" || strings.HasPrefix(id, "seq-") {
			want = reelq.StatusFailed
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

// matrixRow is one operation of SECURITY.md's table: what each identity
// (in the order of identities) is allowed, and the operation itself, run
// on a connection of its own as that identity.
type matrixRow struct {
	slug, what string
	allowed    [5]bool // worker, producer, results, operator, admin
	// refused cells fail without a permission violation: the server's
	// stream settings refuse what the permissions let through (headers).
	refused [5]bool
	// late rows run after the others (admin's destructive cells).
	late bool
	op   func(ctx context.Context, m *matrixEnv, id *ident) error
}

// matrixEnv is the seeded server the matrix runs on.
type matrixEnv struct {
	admin  *ident
	copy   reelq.ArchivedCopy
	dlqSeq map[string]uint64
}

func (m *matrixEnv) client(ctx context.Context, id *ident) (clients, error) {
	o := reelq.Options{ProviderEnv: map[string]string{}, By: id.user, ConsumerPrefix: id.user, Timeout: 3 * time.Second}
	c, err := reelq.NewClient(ctx, id.nc, o)
	if err != nil {
		return clients{}, err
	}
	ins, err := inspect.New(ctx, id.nc, o)
	return clients{c, ins}, err
}

// directGet asks stream for req's message and fails unless one comes back.
func directGet(ctx context.Context, id *ident, stream string, req string) error {
	msg, err := id.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream, []byte(req))
	if err != nil {
		return err
	}
	if st := msg.Header.Get("Status"); st != "" || len(msg.Data) == 0 {
		return fmt.Errorf("direct get on %s: status %s %s", stream, st, msg.Header.Get("Description"))
	}
	return nil
}

func kvPut(ctx context.Context, id *ident, bucket, key string, value []byte) error {
	kv, err := id.js.KeyValue(ctx, bucket)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, key, value)
	return err
}

// otherInbox is an identity whose replies id must not read.
func otherInbox(user string) string {
	if user == "worker" {
		return "producer"
	}
	return "worker"
}

var (
	A = true  // allowed
	D = false // denied
)

// matrix is SECURITY.md's table, operation by operation.
var matrix = []matrixRow{
	{slug: "publish_jobs", what: "publish jobs", allowed: [5]bool{A, A, D, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			j := samsarJob("m-"+id.user, "matrix")
			b, _ := json.Marshal(j)
			_, err := id.js.Publish(ctx, wire.JobSubject("samsar", "", j.ID), b, jetstream.WithMsgID(j.ID))
			return err
		}},
	{slug: "write_job_state", what: "write job state", allowed: [5]bool{A, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			return kvPut(ctx, id, queue.BucketJobs, "m-"+id.user, []byte(`{"id":"m","provider":"samsar","phase":"finished"}`))
		}},
	{slug: "read_job_state", what: "read job state (inputs, outputs)", allowed: [5]bool{A, A, D, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			return directGet(ctx, id, "KV_"+queue.BucketJobs, `{"last_by_subj":"$KV.reelq_jobs.seed"}`)
		}},
	{slug: "read_jobs", what: "read queued jobs (payloads in JOBS)", allowed: [5]bool{A, A, D, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			return directGet(ctx, id, queue.StreamJobs, `{"last_by_subj":"jobs.samsar.seed"}`)
		}},
	{slug: "take_jobs", what: "take jobs from the queue (pull a provider consumer)", allowed: [5]bool{A, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			_, err := id.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.JOBS.samsar-low", []byte(`{"batch":1,"no_wait":true}`))
			return err
		}},
	{slug: "write_results", what: "write results", allowed: [5]bool{A, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			_, err := id.js.Publish(ctx, wire.ResultSubject("samsar", "m-"+id.user), []byte(`{"id":"m","status":"succeeded"}`))
			return err
		}},
	{slug: "read_results", what: "read results", allowed: [5]bool{A, A, A, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			return directGet(ctx, id, queue.StreamResults, `{"last_by_subj":"results.samsar.seed"}`)
		}},
	{slug: "own_consumers", what: "create and delete its own consumers", allowed: [5]bool{A, A, A, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			stream, cfg := queue.StreamResults, jetstream.ConsumerConfig{Durable: id.user + "_main", AckPolicy: jetstream.AckExplicitPolicy}
			if id.user == "worker" { // its KV watches
				stream, cfg = "KV_"+queue.BucketProviders, jetstream.ConsumerConfig{Name: "matrix-watch", FilterSubject: "$KV.reelq_providers.>", AckPolicy: jetstream.AckNonePolicy}
			}
			c, err := id.js.CreateOrUpdateConsumer(ctx, stream, cfg)
			if err != nil {
				return err
			}
			return id.js.DeleteConsumer(ctx, stream, c.CachedInfo().Name)
		}},
	{slug: "others_consumers", what: "delete others' consumers (the downstream durable billing)", allowed: [5]bool{D, D, D, D, A}, late: true,
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			return id.js.DeleteConsumer(ctx, queue.StreamResults, "billing")
		}},
	{slug: "other_named_consumer", what: "create a consumer of another name on RESULTS (a second one)", allowed: [5]bool{D, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			name := "spare_" + id.user
			if _, err := id.js.CreateOrUpdateConsumer(ctx, queue.StreamResults, jetstream.ConsumerConfig{Name: name, AckPolicy: jetstream.AckNonePolicy}); err != nil {
				return err
			}
			return id.js.DeleteConsumer(ctx, queue.StreamResults, name)
		}},
	{slug: "undeclared_durable", what: "delete an undeclared durable on RESULTS (billing-eu)", allowed: [5]bool{D, D, D, D, A}, late: true,
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			return id.js.DeleteConsumer(ctx, queue.StreamResults, "billing-eu")
		}},
	{slug: "rollup_headers", what: "erase a bucket with Nats-Rollup: all, on a key it may write", allowed: [5]bool{D, D, D, D, D}, refused: [5]bool{A, A, D, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			subj := map[string]string{"worker": "$KV.reelq_jobs.m-worker", "producer": "$KV.reelq_budgets.limit.batch.zz",
				"results": "$KV.reelq_cancel.m-results", "operator": "$KV.reelq_cancel.m-operator", "admin": "$KV.reelq_budgets.limit.batch.zz"}[id.user]
			_, err := id.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: []byte(`{}`), Header: nats.Header{"Nats-Rollup": {"all"}}})
			return err
		}},
	{slug: "budgets_witness", what: "write the budgets bucket's witness (epoch)", allowed: [5]bool{A, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			return kvPut(ctx, id, wire.BucketBudgets, queue.EpochKey, []byte(`{"id":"matrix","mark":"`+id.user+`"}`))
		}},
	{slug: "job_events", what: "publish an event in a job's timeline", allowed: [5]bool{A, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			_, err := id.js.Publish(ctx, wire.JobEventSubject("samsar", reelq.EventCancelRequested, "seed"), []byte(`{"kind":"cancel_requested","provider":"samsar","job_id":"seed"}`))
			return err
		}},
	{slug: "other_inboxes", what: "read other identities' inboxes", allowed: [5]bool{D, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			subj := "_INBOX_" + otherInbox(id.user) + ".matrix-" + id.user
			sub, err := id.nc.SubscribeSync("_INBOX_" + otherInbox(id.user) + ".>")
			if err != nil {
				return err
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := id.nc.Flush(); err != nil {
				return err
			}
			if err := m.admin.nc.Publish(subj, []byte("a reply meant for someone else")); err != nil {
				return err
			}
			return heardOrRefused(ctx, id, sub)
		}},
	{slug: "cancel_job", what: "cancel a job (any job)", allowed: [5]bool{D, A, D, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			return kvPut(ctx, id, queue.BucketCancel, "seed", []byte(`{"provider":"samsar","by":"`+id.user+`"}`))
		}},
	{slug: "pause_provider", what: "pause a provider", allowed: [5]bool{A, D, D, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			kv, err := id.js.KeyValue(ctx, queue.BucketProviders)
			if err != nil {
				return err
			}
			// Each identity pauses a provider of its own: a pause finding
			// the provider already paused writes nothing, so identities
			// sharing one would race (a denied one "succeeding" whenever an
			// allowed one paused it first).
			p := reelq.Providers[slices.Index(identities, id.user)%len(reelq.Providers)]
			ps := providerstate.New(id.js, kv, queue.StreamJobs, queue.ConsumerNames)
			if _, _, err := ps.Pause(ctx, p, providerstate.CodeManual, "matrix", id.user, 0); err != nil {
				return err
			}
			_, err = ps.Resume(ctx, p, id.user)
			return err
		}},
	{slug: "resolve_held_job", what: "resolve a held job (CONTROL)", allowed: [5]bool{D, D, D, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			_, err := id.js.Publish(ctx, wire.ControlSubject("resolve", "seed"), []byte(`{"resubmit":true,"by":"`+id.user+`"}`))
			return err
		}},
	{slug: "batch_budget", what: "set a batch's budget (any batch)", allowed: [5]bool{D, A, D, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			c, err := m.client(ctx, id)
			if err != nil {
				return err
			}
			return c.SetBudget(ctx, reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: "matrix", Amount: 10, Unit: "usd"})
		}},
	{slug: "provider_budget", what: "request a provider's budget (CONTROL; a worker writes it)", allowed: [5]bool{D, D, D, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			// What Client.SetBudget sends (no worker runs here to carry it out).
			b, _ := json.Marshal(reelq.BudgetLimit{Scope: reelq.ScopeProvider, Name: "samsar", Amount: 1000, Unit: "credits", Period: time.Hour})
			_, err := id.js.Publish(ctx, wire.ControlSubject("budget", "samsar"), b)
			return err
		}},
	{slug: "write_provider_limit", what: "write a provider's limit in reelq_budgets", allowed: [5]bool{A, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			return kvPut(ctx, id, wire.BucketBudgets, wire.BudgetLimitKey(reelq.ScopeProvider, "vimmerse"), []byte(`{"scope":"provider","name":"vimmerse","amount":1,"unit":"usd"}`))
		}},
	{slug: "write_spend", what: "write budget spend", allowed: [5]bool{A, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			return kvPut(ctx, id, wire.BucketBudgets, wire.BudgetSpendKey(reelq.ScopeBatch, "matrix-"+id.user, 0), []byte(`{}`))
		}},
	{slug: "archived_outputs", what: "read archived outputs", allowed: [5]bool{A, A, A, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			c, err := m.client(ctx, id)
			if err != nil {
				return err
			}
			_, err = c.DownloadOutput(ctx, m.copy, filepath.Join(os.TempDir(), fmt.Sprintf("reelq-matrix-%d-%s", os.Getpid(), id.user)), nil)
			_ = os.Remove(filepath.Join(os.TempDir(), fmt.Sprintf("reelq-matrix-%d-%s", os.Getpid(), id.user)))
			return err
		}},
	{slug: "dead_letters", what: "list and delete dead letters", allowed: [5]bool{D, D, D, A, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			if err := directGet(ctx, id, queue.StreamDLQ, fmt.Sprintf(`{"seq":%d}`, m.dlqSeq[id.user])); err != nil {
				return err
			}
			s, err := id.js.Stream(ctx, queue.StreamDLQ)
			if err != nil {
				return err
			}
			return s.DeleteMsg(ctx, m.dlqSeq[id.user])
		}},
	{slug: "stream_admin", what: "create or update reelq's streams", allowed: [5]bool{A, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			for _, cfg := range (queue.Layout{}).StreamConfigs() {
				if cfg.Name == queue.StreamEvents {
					_, err := id.js.UpdateStream(ctx, cfg)
					return err
				}
			}
			return errors.New("no EVENTS stream in the layout")
		}},
	{slug: "wakes", what: "publish and hear callback wakes (reelq.wake.>)", allowed: [5]bool{A, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			sub, err := id.nc.SubscribeSync(wire.WakeFilter("samsar"))
			if err != nil {
				return err
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := id.nc.Publish(wire.WakeSubject("samsar", "matrix-"+id.user), nil); err != nil {
				return err
			}
			if err := id.nc.Flush(); err != nil {
				return err
			}
			return heardOrRefused(ctx, id, sub)
		}},
	{slug: "delete_stream", what: "delete a stream", allowed: [5]bool{D, D, D, D, A},
		op: func(ctx context.Context, m *matrixEnv, id *ident) error {
			return id.js.DeleteStream(ctx, "SCRATCH_"+id.user)
		}},
}

// Every cell of SECURITY.md's table, on the shipped config: each identity
// runs each operation on a connection of its own. A cell is allowed when
// the operation succeeds with no permission violation, denied when it
// fails and the server logged a permission violation for that connection
// (a failure for any other reason fails the test).
func TestPermissionMatrix(t *testing.T) {
	t.Parallel()
	s, slog := startShippedServer(t)
	m := &matrixEnv{admin: connectAs(t, s, "admin"), dlqSeq: map[string]uint64{}}
	ajs := m.admin.js
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := queue.Setup(ctx, ajs, queue.Layout{Outputs: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.EnsureConsumers(ctx, ajs, "samsar", queue.ConsumerSettings{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"billing", "billing-eu"} {
		if _, err := ajs.CreateOrUpdateConsumer(ctx, queue.StreamResults, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
			t.Fatal(err)
		}
	}
	seed := samsarJob("seed", "matrix")
	b, _ := json.Marshal(seed)
	for subj, data := range map[string][]byte{"jobs.samsar.seed": b, "results.samsar.seed": []byte(`{"id":"seed","provider":"samsar","status":"succeeded","run":1}`)} {
		if _, err := ajs.Publish(ctx, subj, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := kvPut(ctx, m.admin, queue.BucketJobs, "seed", []byte(`{"id":"seed","provider":"samsar","phase":"held","run":1}`)); err != nil {
		t.Fatal(err)
	}
	store, err := archive.NewJetStreamStore(ctx, ajs, archive.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("archived output ", 1000)
	cp, err := store.Put(ctx, "seed-1.mp4", strings.NewReader(body), int64(len(body)), "video/mp4")
	if err != nil {
		t.Fatal(err)
	}
	m.copy = reelq.ArchivedCopy{Store: cp.Store, Bucket: cp.Bucket, Key: cp.Key, Size: cp.Size, ContentType: cp.ContentType, SHA256: cp.SHA256}
	for _, u := range identities {
		ack, err := ajs.Publish(ctx, wire.DLQSubject("samsar", "m-"+u), []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		m.dlqSeq[u] = ack.Sequence
		if _, err := ajs.CreateStream(ctx, jetstream.StreamConfig{Name: "SCRATCH_" + u, Subjects: []string{"scratch." + u}}); err != nil {
			t.Fatal(err)
		}
	}

	type cell struct {
		err  error
		name string
	}
	results := map[string]*cell{}
	run := func(late bool) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, row := range matrix {
			if row.late != late {
				continue
			}
			for _, u := range identities {
				name := "reelq-matrix/" + u + "/" + row.slug
				id := &ident{user: u, errs: make(chan error, 16)}
				nc, err := nats.Connect(s.ClientURL(), connectGuard, nats.UserInfo(u, shippedPasswords[u]), nats.Name(name),
					nats.CustomInboxPrefix("_INBOX_"+u),
					nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
						select {
						case id.errs <- err:
						default:
						}
					}))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(nc.Close)
				id.nc = nc
				id.js, _ = jetstream.New(nc)
				wg.Add(1)
				go func() {
					defer wg.Done()
					cctx, cancel := context.WithTimeout(ctx, 8*time.Second)
					defer cancel()
					err := row.op(cctx, m, id)
					mu.Lock()
					results[row.slug+"/"+u] = &cell{err: err, name: name}
					mu.Unlock()
				}()
			}
		}
		wg.Wait()
	}
	run(false)
	run(true)

	for _, row := range matrix {
		t.Run(row.slug, func(t *testing.T) {
			for i, u := range identities {
				c := results[row.slug+"/"+u]
				viol := violations(slog, c.name+`"`)
				switch {
				case row.allowed[i] && (c.err != nil || len(viol) > 0):
					t.Errorf("%s: %s must be allowed: %v %v", u, row.what, c.err, viol)
				case !row.allowed[i] && c.err == nil:
					t.Errorf("%s: %s must be denied, and succeeded", u, row.what)
				case row.refused[i] && len(viol) > 0:
					t.Errorf("%s: %s must be refused by the stream, not by a permission: %v", u, row.what, viol)
				case row.refused[i]:
				case !row.allowed[i] && len(viol) == 0:
					t.Errorf("%s: %s failed without a permission violation (the test does not test the permission): %v", u, row.what, c.err)
				}
			}
		})
	}
	if t.Failed() {
		t.Logf("server log:\n%s", slog)
	}
}

var tableRow = regexp.MustCompile("^\\|\\s*([^|]+?)\\s*\\|\\s*(allowed|denied|refused)\\s*\\|\\s*(allowed|denied|refused)\\s*\\|\\s*(allowed|denied|refused)\\s*\\|\\s*(allowed|denied|refused)\\s*\\|\\s*(allowed|denied|refused)\\s*\\|\\s*`(TestPermissionMatrix/[a-z_]+)`\\s*\\|\\s*$")

// SECURITY.md's table of identities and operations says exactly what
// TestPermissionMatrix checks: the same rows, in the same order, the same
// cells, each row naming its test.
func TestSecurityTable(t *testing.T) {
	b, err := os.ReadFile("../../SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for _, line := range strings.Split(string(b), "\n") {
		if m := tableRow.FindStringSubmatch(line); m != nil {
			rows = append(rows, m[1:])
		}
	}
	if len(rows) != len(matrix) {
		t.Fatalf("SECURITY.md has %d table rows, TestPermissionMatrix %d", len(rows), len(matrix))
	}
	for i, row := range matrix {
		got := rows[i]
		if got[0] != row.what || got[6] != "TestPermissionMatrix/"+row.slug {
			t.Errorf("row %d: %q (%s), want %q (TestPermissionMatrix/%s)", i+1, got[0], got[6], row.what, row.slug)
		}
		for j, u := range identities {
			want := map[bool]string{true: "allowed", false: "denied"}[row.allowed[j]]
			if row.refused[j] {
				want = "refused"
			}
			if got[j+1] != want {
				t.Errorf("%s, %s: SECURITY.md says %s, the test checks %s", row.what, u, got[j+1], want)
			}
		}
	}
}

// What a producer can put into JOBS is bounded on the server, whatever the
// client: a message over MaxMsgSize (64 KiB) is refused, and once the
// stream holds MaxBytes (1 GiB by default; REELQ_JOBS_MAX_BYTES, 16 KiB
// here) new jobs are refused at publish time (discard new) instead of old
// ones being dropped. The public client refuses inputs over
// REELQ_MAX_INPUT_BYTES and metadata over REELQ_MAX_METADATA_BYTES before
// publishing anything.
func TestJobsSizeLimits(t *testing.T) {
	t.Parallel()
	s, _ := startShippedServer(t)
	admin := connectAs(t, s, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := queue.Setup(ctx, admin.js, queue.Layout{JobsMaxBytes: 16 << 10}); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range (queue.Layout{}).StreamConfigs() {
		if cfg.Name == queue.StreamJobs && (cfg.MaxMsgSize != reelq.MaxJobBytes || cfg.MaxBytes != 1<<30 || cfg.Discard != jetstream.DiscardNew) {
			t.Errorf("default JOBS: MaxMsgSize %d MaxBytes %d discard %v, want %d, 1 GiB, new", cfg.MaxMsgSize, cfg.MaxBytes, cfg.Discard, reelq.MaxJobBytes)
		}
	}
	prod := connectAs(t, s, "producer")
	if _, err := prod.js.Publish(ctx, "jobs.samsar.big", make([]byte, reelq.MaxJobBytes+1)); err == nil {
		t.Errorf("a %d-byte job was stored", reelq.MaxJobBytes+1)
	}
	c := prod.client(t)
	big := samsarJob("big-input", "limits")
	big.Input = json.RawMessage(`{"prompt":"` + strings.Repeat("x", reelq.MaxInputBytes) + `"}`)
	meta := samsarJob("big-meta", "limits")
	meta.Metadata = json.RawMessage(`{"note":"` + strings.Repeat("x", reelq.MaxMetadataBytes) + `"}`)
	out, err := c.EnqueueBatch(ctx, []reelq.Job{big, meta}, reelq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Status != reelq.Failed || !errors.Is(o.Err, reelq.ErrInvalidJob) || !strings.Contains(fmt.Sprint(o.Err), "bytes; the limit is") {
			t.Errorf("%s: %s %v, want refused for its size", o.ID, o.Status, o.Err)
		}
	}
	// Fill JOBS to its MaxBytes: the next job is refused, the first kept.
	var refused error
	for i := 0; i < 100 && refused == nil; i++ {
		_, refused = prod.js.Publish(ctx, fmt.Sprintf("jobs.samsar.fill-%d", i), make([]byte, 2<<10))
	}
	if refused == nil || !strings.Contains(strings.ToLower(refused.Error()), "maximum bytes") {
		t.Errorf("JOBS past MaxBytes: %v, want a refusal", refused)
	}
	st, err := admin.js.Stream(ctx, queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.GetLastMsgForSubject(ctx, "jobs.samsar.fill-0"); err != nil || m == nil {
		t.Errorf("the first job was dropped to make room: %v", err)
	}
}

// startDashboardServer is startShippedServer for the dashboard's tests.
func startDashboardServer(t *testing.T) (*server.Server, *opsLog) {
	t.Helper()
	setPasswordsOnce.Do(func() {
		for user, pw := range shippedPasswords {
			os.Setenv("REELQ_NATS_"+strings.ToUpper(user)+"_PASSWORD", pw)
		}
	})
	dir := t.TempDir()
	authConf, err := os.ReadFile("../../deploy/nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(authConf), "DASHBOARD = {") {
		t.Fatal("auth.conf has no DASHBOARD role")
	}
	serverConf, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), authConf, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(cfg, serverConf, 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(cfg)
	if err != nil {
		t.Fatalf("load the shipped config: %v", err)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.HTTPHost, opts.HTTPPort = "", 0
	opts.StoreDir = t.TempDir()
	opts.NoSigs = true
	opts.LameDuckDuration, opts.LameDuckGracePeriod = 0, 0
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
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

// The dashboard identity (auth.conf's DASHBOARD role) runs the real
// dashboard, every page, the live feeds and every action it offers
// (pause, resume, cancel, retry, re-drive, an archived output) with no
// permission violation; and cannot write job state, results, budgets or
// spend, resolve held jobs, take jobs from the queue, delete streams or
// read another identity's replies. SECURITY.md's dashboard table names
// these subtests.
func TestDashboardPermissions(t *testing.T) {
	t.Parallel()
	s, slog := startDashboardServer(t)
	admin := connectAs(t, s, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ajs := admin.js
	if err := queue.Setup(ctx, ajs, queue.Layout{Outputs: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range reelq.Providers {
		if _, err := queue.EnsureConsumers(ctx, ajs, p, queue.ConsumerSettings{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ajs.CreateOrUpdateConsumer(ctx, queue.StreamResults, jetstream.ConsumerConfig{Durable: "billing", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := ajs.CreateStream(ctx, jetstream.StreamConfig{Name: "SCRATCH_dashboard", Subjects: []string{"scratch.dashboard"}}); err != nil {
		t.Fatal(err)
	}
	// A failed job with an archived output, a queued job, their events,
	// counters, the batch index and a dead letter.
	store, err := archive.NewJetStreamStore(ctx, ajs, archive.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("archived output ", 1000)
	cp, err := store.Put(ctx, "seed/1/0", strings.NewReader(body), int64(len(body)), "video/mp4")
	if err != nil {
		t.Fatal(err)
	}
	seed := samsarJob("seed", "dash")
	res := reelq.Result{ID: "seed", Provider: "samsar", Batch: "dash", Run: 1, Status: reelq.StatusFailed, CompletedAt: time.Now().UTC(),
		Error: &reelq.ErrorInfo{Code: reelq.CodeProviderFailed, Message: "failed"},
		Outputs: []reelq.Output{{URL: "https://example.invalid/x.mp4", ContentType: "video/mp4", Archive: &reelq.ArchivedCopy{Store: cp.Store,
			Bucket: cp.Bucket, Key: cp.Key, Size: cp.Size, ContentType: cp.ContentType, SHA256: cp.SHA256}}}}
	rb, _ := json.Marshal(res)
	st, _ := json.Marshal(reelq.JobState{ID: "seed", Provider: "samsar", Batch: "dash", Phase: reelq.PhaseFinished, Run: 1, Input: seed.Input,
		Digest: seed.Digest(), Result: rb, UpdatedAt: time.Now().UTC()})
	if err := kvPut(ctx, admin, queue.BucketJobs, "seed", st); err != nil {
		t.Fatal(err)
	}
	queued := samsarJob("queued-1", "dash")
	qb, _ := json.Marshal(queued)
	ev, _ := json.Marshal(reelq.Event{Kind: reelq.EventSubmitted, Provider: "samsar", JobID: "seed", Batch: "dash", Time: time.Now().UTC()})
	for subj, data := range map[string][]byte{wire.JobSubject("samsar", "", "queued-1"): qb, wire.ResultSubject("samsar", "seed"): rb,
		wire.JobEventSubject("samsar", reelq.EventSubmitted, "seed"): ev, wire.BatchIndexSubject("dash"): []byte(`["seed"]`)} {
		if _, err := ajs.Publish(ctx, subj, data); err != nil {
			t.Fatal(err)
		}
	}
	dl := nats.NewMsg(wire.DLQSubject("samsar", "seq-9"))
	dl.Data = []byte(`{"provider":"samsar","input":{}}`)
	dl.Header.Set("Reelq-Provider", "samsar")
	dl.Header.Set("Reelq-Job-Id", "seq-9")
	dl.Header.Set("Reelq-Subject", "jobs.samsar")
	dl.Header.Set("Reelq-Error-Code", reelq.CodeInvalidRequest)
	if _, err := ajs.PublishMsg(ctx, dl); err != nil {
		t.Fatal(err)
	}
	// A worker's record (the workers view and the charts read them).
	beat, _ := json.Marshal(heartbeat.Record{Worker: "w-perm", Version: "v0.0.0-test", Started: time.Now().UTC(), At: time.Now().UTC(),
		Providers: map[string]heartbeat.Provider{"samsar": {Slots: 1, Limit: 2, Queued: 1, Succeeded: 1}}})
	if _, err := ajs.Publish(ctx, heartbeat.Subject("w-perm"), beat); err != nil {
		t.Fatal(err)
	}
	incr := nats.NewMsg(wire.BatchCounterSubject("dash", "enqueued"))
	incr.Header.Set("Nats-Incr", "+2")
	if _, err := ajs.PublishMsg(ctx, incr); err != nil {
		t.Fatal(err)
	}

	dash := connectAs(t, s, "dashboard")
	c := dash.client(t)
	d, err := dashboard.New(dashboard.Config{Client: c.Client, Inspector: c.Inspector, NC: dash.nc, ListenHost: "127.0.0.1", Auth: dashboard.Auth{Token: "dash-matrix-token-0123456789"}, MinInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- d.Run(runCtx) }()
	hs := httptest.NewServer(d)
	defer hs.Close()
	defer func() {
		hs.CloseClientConnections()
		stop()
		if err := <-ran; err != nil {
			t.Errorf("dashboard run: %v", err)
		}
	}()
	call := func(method, path string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, method, hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer dash-matrix-token-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	live := func(query string) (int, string) {
		lctx, lcancel := context.WithCancel(ctx)
		defer lcancel()
		req, _ := http.NewRequestWithContext(lctx, "GET", hs.URL+"/live?"+query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("live %s: %v", query, err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 64<<10)
		n, got := 0, ""
		for !strings.Contains(got, "event: frag") {
			m, err := resp.Body.Read(buf[n:])
			n += m
			got = string(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, got
	}

	allowed := []struct {
		slug string
		op   func() error
	}{
		{"pages", func() error {
			for _, p := range []string{"/", "/batches/dash", "/jobs", "/jobs/seed", "/jobs/queued-1", "/dlq",
				"/jobs?state=failed&provider=samsar&since=1h", "/jobs?batch=dash", "/jobs?state=held", "/workers", "/activity?range=24h"} {
				if code, body := call("GET", p); code != 200 {
					return fmt.Errorf("GET %s: %d %s", p, code, body)
				}
			}
			if _, body := call("GET", "/workers"); !strings.Contains(body, `data-worker="w-perm"`) {
				return fmt.Errorf("the workers view does not show the worker's record: %s", body)
			}
			if _, body := call("GET", "/jobs?state=failed"); !strings.Contains(body, `data-job="seed"`) {
				return fmt.Errorf("the job list does not show the failed job: %s", body)
			}
			return nil
		}},
		{"live_pages", func() error {
			for _, q := range []string{"view=overview", "view=job&arg=seed", "view=batch&arg=dash", "view=dlq", "view=jobs", "view=workers", "view=activity&arg=1h"} {
				if code, body := live(q); code != 200 || !strings.Contains(body, "event: frag") {
					return fmt.Errorf("live %s: %d %q", q, code, body)
				}
			}
			// The workers view is woken by the workers' records (its
			// subscription to workers.*): a new replica shows up.
			lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
			defer lcancel()
			req, _ := http.NewRequestWithContext(lctx, "GET", hs.URL+"/live?view=workers", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			published := false
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return fmt.Errorf("live workers: no update naming the new replica: %v", err)
				}
				if strings.Contains(line, "w-live") {
					return nil
				}
				if strings.HasPrefix(line, "event: frag") && !published {
					published = true
					rec, _ := json.Marshal(heartbeat.Record{Worker: "w-live", Version: "v0.0.0-test", At: time.Now().UTC()})
					if _, err := ajs.Publish(ctx, heartbeat.Subject("w-live"), rec); err != nil {
						return err
					}
				}
			}
		}},
		{"archived_output", func() error {
			if code, body := call("GET", "/jobs/seed/outputs/1"); code != 200 || body != strings.Repeat("archived output ", 1000) {
				return fmt.Errorf("output: %d, %d bytes", code, len(body))
			}
			return nil
		}},
		{"pause_resume", func() error {
			for _, p := range []string{"/providers/vimmerse/pause", "/providers/vimmerse/resume"} {
				if code, body := call("POST", p); code != 200 {
					return fmt.Errorf("POST %s: %d %s", p, code, body)
				}
			}
			return nil
		}},
		{"cancel", func() error {
			if code, body := call("POST", "/jobs/queued-1/cancel"); code != 200 || !strings.Contains(body, "cancel requested") {
				return fmt.Errorf("cancel: %d %s", code, body)
			}
			return nil
		}},
		{"retry", func() error {
			if code, body := call("POST", "/jobs/seed/retry"); code != 200 || !strings.Contains(body, "run 2") {
				return fmt.Errorf("retry: %d %s", code, body)
			}
			return nil
		}},
		{"redrive", func() error {
			ls, err := c.DeadLetters(ctx)
			if err != nil || len(ls) == 0 {
				return fmt.Errorf("dead letters: %d %v", len(ls), err)
			}
			if code, body := call("POST", fmt.Sprintf("/dlq/%d/redrive", ls[0].Seq)); code != 200 {
				return fmt.Errorf("redrive: %d %s", code, body)
			}
			return nil
		}},
	}
	for _, a := range allowed {
		t.Run(a.slug, func(t *testing.T) {
			if err := a.op(); err != nil {
				t.Error(err)
			}
		})
	}
	if v := violations(slog, `"reelq-test/dashboard"`); len(v) > 0 {
		t.Errorf("the dashboard identity hit permission violations:\n%s", strings.Join(v, "\n"))
	}

	denied := []struct {
		slug string
		op   func(ctx context.Context, id *ident) error
	}{
		{"write_job_state", func(ctx context.Context, id *ident) error {
			return kvPut(ctx, id, queue.BucketJobs, "seed", []byte(`{"id":"seed","provider":"samsar","phase":"finished"}`))
		}},
		{"write_results", func(ctx context.Context, id *ident) error {
			_, err := id.js.Publish(ctx, wire.ResultSubject("samsar", "seed"), []byte(`{"id":"seed","status":"succeeded"}`))
			return err
		}},
		{"budgets", func(ctx context.Context, id *ident) error {
			return kvPut(ctx, id, wire.BucketBudgets, wire.BudgetLimitKey(reelq.ScopeBatch, "dash"), []byte(`{"scope":"batch","name":"dash","amount":1,"unit":"usd"}`))
		}},
		{"write_spend", func(ctx context.Context, id *ident) error {
			return kvPut(ctx, id, wire.BucketBudgets, wire.BudgetSpendKey(reelq.ScopeBatch, "dash", 0), []byte(`{}`))
		}},
		{"resolve_held_job", func(ctx context.Context, id *ident) error {
			_, err := id.js.Publish(ctx, wire.ControlSubject("resolve", "seed"), []byte(`{"resubmit":true}`))
			return err
		}},
		{"take_jobs", func(ctx context.Context, id *ident) error {
			_, err := id.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.JOBS.samsar", []byte(`{"batch":1,"no_wait":true}`))
			return err
		}},
		{"others_consumers", func(ctx context.Context, id *ident) error {
			return id.js.DeleteConsumer(ctx, queue.StreamResults, "billing")
		}},
		{"delete_stream", func(ctx context.Context, id *ident) error {
			return id.js.DeleteStream(ctx, "SCRATCH_dashboard")
		}},
		{"consumers", func(ctx context.Context, id *ident) error {
			_, err := id.js.CreateOrUpdateConsumer(ctx, "KV_"+queue.BucketSlots, jetstream.ConsumerConfig{Name: "dashboard_slots", AckPolicy: jetstream.AckNonePolicy})
			return err
		}},
		{"job_events", func(ctx context.Context, id *ident) error {
			_, err := id.js.Publish(ctx, wire.JobEventSubject("samsar", reelq.EventCompleted, "seed"), []byte(`{"kind":"completed","provider":"samsar","job_id":"seed"}`))
			return err
		}},
		{"other_inboxes", func(ctx context.Context, id *ident) error {
			sub, err := id.nc.SubscribeSync("_INBOX_operator.>")
			if err != nil {
				return err
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := id.nc.Flush(); err != nil {
				return err
			}
			select {
			case err := <-id.errs:
				return err
			case <-ctx.Done():
				return nil
			}
		}},
	}
	// Each denied request waits for its timeout: all at once.
	type outcome struct {
		err  error
		name string
	}
	outcomes := make([]outcome, len(denied))
	var wg sync.WaitGroup
	for i, dn := range denied {
		name := "reelq-dashboard-denied/" + dn.slug
		id := &ident{user: "dashboard", errs: make(chan error, 16)}
		nc, err := nats.Connect(s.ClientURL(), connectGuard, nats.UserInfo("dashboard", shippedPasswords["dashboard"]), nats.Name(name),
			nats.CustomInboxPrefix("_INBOX_dashboard"),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case id.errs <- err:
				default:
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		id.nc = nc
		id.js, _ = jetstream.New(nc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			outcomes[i] = outcome{err: dn.op(cctx, id), name: name}
		}()
	}
	wg.Wait()
	for i, dn := range denied {
		t.Run(dn.slug, func(t *testing.T) {
			err, name := outcomes[i].err, outcomes[i].name
			if err == nil {
				t.Errorf("the dashboard identity may %s", dn.slug)
			}
			if len(violations(slog, name+`"`)) == 0 {
				t.Errorf("%s failed without a permission violation (the test does not test the permission): %v", dn.slug, err)
			}
		})
	}
	// Refused by the streams, whatever the permissions let through: a
	// rollup on keys it may write (pause state, cancel requests).
	t.Run("rollup", func(t *testing.T) {
		for _, subj := range []string{"$KV." + queue.BucketProviders + ".samsar", "$KV." + queue.BucketCancel + ".seed"} {
			_, err := dash.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: []byte(`{}`), Header: nats.Header{"Nats-Rollup": {"all"}}})
			if err == nil || !strings.Contains(err.Error(), "rollup not permitted") {
				t.Errorf("the dashboard identity's rollup on %s: %v, want refused", subj, err)
			}
		}
		if v := violations(slog, `"reelq-test/dashboard"`); len(v) > 0 {
			t.Errorf("a rollup refused with a permission violation: %v", v)
		}
	})
}

var dashboardTableRow = regexp.MustCompile("^\\|\\s*([^|]+?)\\s*\\|\\s*(allowed|denied|refused)\\s*\\|\\s*`(TestDashboardPermissions/[a-z_]+)`\\s*\\|\\s*$")

// SECURITY.md's table of the dashboard identity names exactly the
// subtests of TestDashboardPermissions, with what they check.
func TestDashboardSecurityTable(t *testing.T) {
	b, err := os.ReadFile("../../SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, s := range []string{"pages", "live_pages", "archived_output", "pause_resume", "cancel", "retry", "redrive"} {
		want["TestDashboardPermissions/"+s] = "allowed"
	}
	for _, s := range []string{"write_job_state", "write_results", "budgets", "write_spend", "resolve_held_job", "take_jobs", "others_consumers", "delete_stream", "other_inboxes", "consumers", "job_events"} {
		want["TestDashboardPermissions/"+s] = "denied"
	}
	want["TestDashboardPermissions/rollup"] = "refused"
	got := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if m := dashboardTableRow.FindStringSubmatch(line); m != nil {
			got[m[3]] = m[2]
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SECURITY.md's dashboard table says %v, TestDashboardPermissions checks %v", got, want)
	}
}

// heardOrRefused waits for whichever comes first: the server's refusal
// (a permission violation on id's connection) or a message on sub (nil:
// the operation was allowed).
func heardOrRefused(ctx context.Context, id *ident, sub *nats.Subscription) error {
	got := make(chan error, 1)
	go func() {
		_, err := sub.NextMsgWithContext(ctx)
		got <- err
	}()
	select {
	case err := <-id.errs:
		return err
	case err := <-got:
		return err
	}
}
