package forwarder_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/forwarder"
	"github.com/reelq/reelq/internal/leaktest"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/netguard"
	"github.com/reelq/reelq/internal/webhook"
	"github.com/reelq/reelq/internal/wire"
)

// Every goroutine the forwarder starts stops with Run.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

const testSecret = "whsec_dGVzdC1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg=="

// receiver is a webhook receiver on loopback. It checks each request's
// signature with a hand-made HMAC (not the package under test), answers
// with status(id, attempt) and records what it accepted, and any request
// that broke a rule (bad signature, a job's run attempted before the
// previous run was accepted).
type receiver struct {
	srv    *httptest.Server
	key    []byte
	status func(id string, attempt int) int // 0: hang until the request is cancelled

	mu          sync.Mutex
	attempts    map[string]int    // per webhook-id
	accepted    map[string]int    // 2xx answers per webhook-id
	runs        map[string][]int  // per job, the runs accepted in order
	bodies      map[string]string // per webhook-id, the body accepted
	violations  []string
	acceptedIDs chan string
}

func newReceiver(t testing.TB, status func(id string, attempt int) int) *receiver {
	t.Helper()
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(testSecret, "whsec_"))
	r := &receiver{key: key, status: status, attempts: map[string]int{}, accepted: map[string]int{}, runs: map[string][]int{},
		bodies: map[string]string{}, acceptedIDs: make(chan string, 10000)}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id, ts, sig := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature")
	mac := hmac.New(sha256.New, r.key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	sec, _ := strconv.ParseInt(ts, 10, 64)
	var res reelq.Result
	_ = json.Unmarshal(body, &res)

	r.mu.Lock()
	if !strings.Contains(" "+sig+" ", " "+want+" ") {
		r.violations = append(r.violations, fmt.Sprintf("%s: signature %q, want %q", id, sig, want))
	}
	if d := time.Since(time.Unix(sec, 0)); d > time.Minute || d < -time.Minute {
		r.violations = append(r.violations, fmt.Sprintf("%s: timestamp %s is %s from now", id, ts, d))
	}
	if req.Header.Get("Content-Type") != "application/json" || id != wire.ResultMsgID(res.ID, res.Run) {
		r.violations = append(r.violations, fmt.Sprintf("%s: content type %q, result %s run %d", id, req.Header.Get("Content-Type"), res.ID, res.Run))
	}
	if runs := r.runs[res.ID]; res.Run > 1 && (len(runs) == 0 || runs[len(runs)-1] < res.Run-1) {
		r.violations = append(r.violations, fmt.Sprintf("job %s: run %d attempted after runs %v were accepted", res.ID, res.Run, runs))
	}
	r.attempts[id]++
	n := r.attempts[id]
	r.mu.Unlock()

	code := r.status(id, n)
	if code == 0 {
		<-req.Context().Done()
		return
	}
	if code >= 200 && code < 300 {
		r.mu.Lock()
		r.accepted[id]++
		if r.accepted[id] == 1 {
			r.runs[res.ID] = append(r.runs[res.ID], res.Run)
			r.bodies[id] = string(body)
		}
		r.mu.Unlock()
		r.acceptedIDs <- id
	}
	w.WriteHeader(code)
	fmt.Fprintf(w, "answer %d\n", code)
}

func (r *receiver) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Error(v)
	}
	for id, n := range r.accepted {
		if n != 1 {
			t.Errorf("%s accepted %d times, want once", id, n)
		}
	}
}

// waitAccepted waits until n distinct ids were accepted.
func (r *receiver) waitAccepted(t testing.TB, ctx context.Context, n int) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for len(seen) < n {
		select {
		case id := <-r.acceptedIDs:
			seen[id] = true
		case <-ctx.Done():
			t.Fatalf("accepted %d of %d deliveries", len(seen), n)
		}
	}
	return seen
}

type env struct {
	js  jetstream.JetStream
	nc  *nats.Conn
	ctx context.Context
}

func newEnv(t testing.TB) *env {
	t.Helper()
	s := natstest.Server(t)
	nc, js := natstest.Connect(t, s)
	natstest.Setup(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return &env{js: js, nc: nc, ctx: ctx}
}

// config is a forwarder configuration for tests: receivers on loopback
// allowed, quick back-off.
func (e *env) config(t testing.TB, routes forwarder.Routes) forwarder.Config {
	t.Helper()
	s, err := webhook.NewSecrets(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return forwarder.Config{Routes: routes, Secrets: s, Network: netguard.Rules{AllowHosts: []string{"127.0.0.1"}},
		Timeout: 5 * time.Second, RetryBase: 5 * time.Millisecond, RetryMax: 40 * time.Millisecond, RetryBudget: time.Hour, Concurrency: 8}
}

// start runs a forwarder until the test ends (Run must return, nil).
func (e *env) start(t testing.TB, cfg forwarder.Config) *forwarder.Forwarder {
	t.Helper()
	f, err := forwarder.New(e.ctx, e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return f
}

// publish puts job id's result for run in RESULTS, as a worker does.
func (e *env) publish(t testing.TB, provider, batch, id string, run int) []byte {
	t.Helper()
	b, _ := json.Marshal(reelq.Result{ID: id, Provider: provider, Batch: batch, Run: run, Status: reelq.StatusSucceeded, Attempts: 1,
		CompletedAt: time.Now().UTC(), Outputs: []reelq.Output{{URL: "https://cdn.example/" + id + ".mp4", ContentType: "video/mp4"}}})
	m := nats.NewMsg(wire.ResultSubject(provider, id))
	m.Data = b
	m.Header.Set(nats.MsgIdHdr, wire.ResultMsgID(id, run))
	if _, err := e.js.PublishMsg(e.ctx, m); err != nil {
		t.Fatal(err)
	}
	return b
}

// settled waits until the forwarder's RESULTS consumer has nothing
// pending or unacknowledged (its state, read until it says so).
func (e *env) settled(t testing.TB, durable string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := e.js.Consumer(e.ctx, wire.StreamResults, durable)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0 {
			return
		}
		select {
		case <-tick.C:
		case <-e.ctx.Done():
			t.Fatalf("consumer %s not settled: %d pending, %d unacknowledged", durable, info.NumPending, info.NumAckPending)
		}
	}
}

func (e *env) deadLetters(t testing.TB) []forwarder.DeadLetter {
	t.Helper()
	dls, err := forwarder.DeadLetters(e.ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	return dls
}
