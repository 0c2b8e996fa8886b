package forwarder_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/forwarder"
	"github.com/reelq/reelq/internal/netguard"
	"github.com/reelq/reelq/internal/wire"
)

func always(code int) func(string, int) int { return func(string, int) int { return code } }

// Results go where their route says, signed (checked by the receiver's
// own HMAC), each accepted once, and are acknowledged; results without a
// route are acknowledged and go nowhere.
func TestDeliversSignedByRoute(t *testing.T) {
	e := newEnv(t)
	def, seg, nightly := newReceiver(t, always(200)), newReceiver(t, always(204)), newReceiver(t, always(202))
	e.start(t, e.config(t, forwarder.Routes{Default: []string{def.srv.URL + "/hook"},
		Provider: map[string][]string{"segmind": {seg.srv.URL + "/seg?token=s3cret"}},
		Batch:    map[string][]string{"nightly": {nightly.srv.URL}}}))
	bodies := map[string][]byte{
		"result:a": e.publish(t, "camb", "", "a", 1),
		"result:b": e.publish(t, "segmind", "other", "b", 1),
		"result:c": e.publish(t, "segmind", "nightly", "c", 1),
	}
	got := map[string]bool{}
	for _, r := range []*receiver{def, seg, nightly} {
		for id := range r.waitAccepted(t, e.ctx, 1) {
			got[id] = true
			r.mu.Lock()
			if r.bodies[id] != string(bodies[id]) {
				t.Errorf("%s: body %s, want the result as stored %s", id, r.bodies[id], bodies[id])
			}
			r.mu.Unlock()
		}
		r.check(t)
	}
	if !got["result:a"] || !got["result:b"] || !got["result:c"] {
		t.Errorf("accepted %v", got)
	}
	e.settled(t, forwarder.DefaultDurable)
	if n := len(e.deadLetters(t)); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

// 5xx answers and timeouts are retried with back-off until a 2xx: nothing
// is lost and nothing is acknowledged before its 2xx.
func TestRetriesServerErrorsAndTimeouts(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, func(id string, n int) int {
		switch {
		case id == "result:five" && n <= 3:
			return 500 + n // 501, 502, 503
		case id == "result:slow" && n <= 2:
			return 0 // no answer within the timeout
		case id == "result:redirect" && n == 1:
			return 302 // a redirect is not followed: a failure
		}
		return 200
	})
	cfg := e.config(t, forwarder.Routes{Default: []string{r.srv.URL}})
	cfg.Timeout = 300 * time.Millisecond
	e.start(t, cfg)
	for _, id := range []string{"five", "slow", "redirect", "fine"} {
		e.publish(t, "vimmerse", "", id, 1)
	}
	r.waitAccepted(t, e.ctx, 4)
	e.settled(t, forwarder.DefaultDurable)
	r.check(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, want := range map[string]int{"result:five": 4, "result:slow": 3, "result:redirect": 2, "result:fine": 1} {
		if r.attempts[id] != want {
			t.Errorf("%s: %d attempts, want %d", id, r.attempts[id], want)
		}
	}
}

// halfFailing answers every other request of each delivery with a 503
// (the first, third, ...), so every result fails once before its 2xx.
func halfFailing(_ string, n int) int {
	if n%2 == 1 {
		return 503
	}
	return 200
}

// 1,000 results (400 jobs, 1 to 4 runs each, a job's runs published one
// after the other so later runs are taken while earlier ones still fail)
// to a receiver that fails half its requests, through two forwarder
// replicas sharing the durable consumer: each result is accepted exactly
// once, none is lost, and no run of a job is even attempted before the
// job's previous run was accepted.
func TestHalfFailingReceiverOrderPerJob(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, halfFailing)
	cfg := e.config(t, forwarder.Routes{Default: []string{r.srv.URL}})
	e.start(t, cfg)
	e.start(t, cfg)
	want := publishJobs(t, e, 1000)
	r.waitAccepted(t, e.ctx, len(want))
	e.settled(t, forwarder.DefaultDurable)
	r.check(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	for job, runs := range wantRuns(want) {
		if fmt.Sprint(r.runs[job]) != fmt.Sprint(runs) {
			t.Errorf("job %s: runs accepted in the order %v, want %v", job, r.runs[job], runs)
		}
	}
	if n := len(e.deadLetters(t)); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

// publishJobs publishes n results over n*2/5 jobs (runs 1..4) and returns
// their webhook ids.
func publishJobs(t testing.TB, e *env, n int) []string {
	var ids []string
	jobs := n * 2 / 5
	runs := make([]int, jobs)
	for i := range n {
		j := i % jobs
		if i >= jobs && i%7 == 0 { // uneven: some jobs get more runs
			j = (i * 13) % jobs
		}
		runs[j]++
		id := fmt.Sprintf("job-%04d", j)
		e.publish(t, "samsar", "bulk", id, runs[j])
		ids = append(ids, wire.ResultMsgID(id, runs[j]))
	}
	return ids
}

func wantRuns(ids []string) map[string][]int {
	out := map[string][]int{}
	for _, id := range ids {
		var job string
		run := 1
		parts := strings.Split(id, ":")
		job = parts[1]
		if len(parts) == 3 {
			fmt.Sscan(parts[2], &run)
		}
		out[job] = append(out[job], run)
	}
	return out
}

// Two receivers for one result: the one that answers is posted once,
// while the other is retried until it answers too.
func TestOneReceiverRetriedOthersNotReposted(t *testing.T) {
	e := newEnv(t)
	good := newReceiver(t, always(200))
	flaky := newReceiver(t, func(_ string, n int) int {
		if n <= 4 {
			return 500
		}
		return 200
	})
	e.start(t, e.config(t, forwarder.Routes{Default: []string{good.srv.URL, flaky.srv.URL}}))
	e.publish(t, "camb", "", "x", 1)
	e.publish(t, "camb", "", "x", 2)
	good.waitAccepted(t, e.ctx, 2)
	flaky.waitAccepted(t, e.ctx, 2)
	e.settled(t, forwarder.DefaultDurable)
	good.check(t)
	flaky.check(t)
	good.mu.Lock()
	defer good.mu.Unlock()
	for id, n := range good.attempts {
		if n != 1 {
			t.Errorf("the answering receiver got %s %d times", id, n)
		}
	}
}

// Receivers on internal addresses are refused before any connection and
// dead-lettered at once, with the reason; nothing reaches them.
func TestRefusesInternalAddresses(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, always(200))
	port := r.srv.URL[strings.LastIndex(r.srv.URL, ":")+1:]
	cfg := e.config(t, forwarder.Routes{Provider: map[string][]string{
		"camb":     {r.srv.URL + "/by-address"},
		"samsar":   {"http://localhost:" + port + "/by-name"},
		"vimmerse": {"http://169.254.169.254/latest/meta-data/"},
		"segmind":  {"http://[::ffff:127.0.0.1]:" + port + "/mapped"},
	}})
	cfg.Network = netguard.Rules{} // no exception
	e.start(t, cfg)
	for _, p := range []string{"camb", "samsar", "vimmerse", "segmind"} {
		e.publish(t, p, "", "ssrf-"+p, 1)
	}
	e.settled(t, forwarder.DefaultDurable)
	dls := e.deadLetters(t)
	if len(dls) != 4 {
		t.Fatalf("%d dead letters, want 4", len(dls))
	}
	for _, d := range dls {
		if !strings.Contains(d.LastError, "unsafe url") || d.Attempts != 1 {
			t.Errorf("%s: attempts %d, error %q; want one refused attempt", netguard.RedactURL(d.URL), d.Attempts, d.LastError)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.attempts) != 0 {
		t.Errorf("the internal receiver got %v", r.attempts)
	}
}

// A receiver that keeps failing is dead-lettered once the retry budget
// runs out, with the payload, URL, last status and attempts; the job's
// next run is delivered after it; a re-drive (once the receiver answers)
// delivers it with the same webhook-id and removes the dead letter.
func TestDeadLetterThenRedrive(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	down := true
	r := newReceiver(t, func(id string, _ int) int {
		mu.Lock()
		defer mu.Unlock()
		if down && id == "result:d" {
			return 503
		}
		return 200
	})
	cfg := e.config(t, forwarder.Routes{Default: []string{r.srv.URL + "/hook?token=s3cret"}})
	cfg.RetryBudget = 300 * time.Millisecond
	e.start(t, cfg)
	body := e.publish(t, "segmind", "b1", "d", 1)
	e.publish(t, "segmind", "b1", "d", 2)
	r.waitAccepted(t, e.ctx, 1) // run 2, after run 1 was dead-lettered
	e.settled(t, forwarder.DefaultDurable)
	dls := e.deadLetters(t)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	d := dls[0]
	if d.WebhookID != "result:d" || d.URL != r.srv.URL+"/hook?token=s3cret" || d.LastStatus != 503 || d.Attempts < 2 ||
		string(d.Payload) != string(body) || d.JobID != "d" || d.Provider != "segmind" || d.Batch != "b1" || d.Run != 1 ||
		!strings.Contains(d.LastError, "answer 503") || d.FirstAttempt.IsZero() || d.LastAttempt.Before(d.FirstAttempt) {
		t.Errorf("dead letter %+v", d)
	}
	r.mu.Lock()
	if fmt.Sprint(r.runs["d"]) != "[2]" {
		t.Errorf("runs accepted %v, want [2]", r.runs["d"])
	}
	r.mu.Unlock()

	mu.Lock()
	down = false
	mu.Unlock()
	if err := forwarder.RequestRedrive(e.ctx, e.js, d.Seq); err != nil {
		t.Fatal(err)
	}
	if got := r.waitAccepted(t, e.ctx, 1); !got["result:d"] {
		t.Errorf("re-drive delivered %v", got)
	}
	waitNoDeadLetters(t, e)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bodies["result:d"] != string(body) {
		t.Errorf("re-driven body %s", r.bodies["result:d"])
	}
	for _, v := range r.violations {
		// Run 2 goes once run 1 is dead-lettered, and a re-drive comes
		// after later runs: by design. Every other rule holds.
		if !strings.HasPrefix(v, "job d: ") {
			t.Error(v)
		}
	}
}

// waitNoDeadLetters waits until HOOKS_DLQ is empty.
func waitNoDeadLetters(t *testing.T, e *env) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(e.deadLetters(t)) > 0 {
		select {
		case <-tick.C:
		case <-e.ctx.Done():
			t.Fatal("the dead letter is still there")
		}
	}
}

// Run returns when its context ends, after the delivery in flight has
// finished and been acknowledged: nothing is left unacknowledged, and
// (TestMain) no goroutine is left behind.
func TestRunStopsAfterInFlight(t *testing.T) {
	e := newEnv(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r := newReceiver(t, func(string, int) int {
		once.Do(func() { close(entered) })
		<-release
		return 200
	})
	f, err := forwarder.New(e.ctx, e.js, e.config(t, forwarder.Routes{Default: []string{r.srv.URL}}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	e.publish(t, "camb", "", "inflight", 1)
	<-entered
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned with a delivery in flight: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	e.settled(t, forwarder.DefaultDurable)
	r.check(t)
}

// A job whose ledger entry is gone (expired before the results it
// describes, say) does not block its next run behind results the consumer
// already acknowledged.
func TestLostLedgerEntryBlocksNothing(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, always(200))
	e.start(t, e.config(t, forwarder.Routes{Default: []string{r.srv.URL}}))
	e.publish(t, "camb", "", "lost", 1)
	r.waitAccepted(t, e.ctx, 1)
	e.settled(t, forwarder.DefaultDurable)
	kv, err := e.js.KeyValue(e.ctx, forwarder.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(e.ctx, "camb.lost"); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "camb", "", "lost", 2)
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if got := r.waitAccepted(t, ctx, 1); !got["result:lost:2"] {
		t.Errorf("accepted %v", got)
	}
	r.check(t)
}
