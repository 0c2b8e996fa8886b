package worker_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/webhook"
	"github.com/reelq/reelq/internal/wire"
)

// An hour between polls: with callbacks on, a result that arrives in
// seconds was woken by its callback.
const hourPolls = time.Hour

func callbackJob(provider, id string) reelq.Job {
	switch provider {
	case "fal":
		return reelq.Job{ID: id, Provider: "fal", Input: []byte(`{"model":"fal-ai/kling-video/v2.1/master/text-to-video","input":{"prompt":"a kite ` + id + `","duration":"5"}}`)}
	case "replicate":
		return reelq.Job{ID: id, Provider: "replicate", Input: []byte(`{"model":"kwaivgi/kling-v2.5-turbo-pro","input":{"prompt":"a kite ` + id + `","duration":5}}`)}
	}
	return reelqtest.SamsarJob(id)
}

// polls counts provider's status reads at the simulator.
func polls(env *reelqtest.Env, provider string) int {
	n := 0
	for k, v := range env.Sim.Stats(0)[provider].Requests {
		if strings.HasPrefix(k, "poll ") {
			n += v
		}
	}
	return n
}

// countWakes counts the wakes published for provider.
func countWakes(t testing.TB, env *reelqtest.Env, provider string) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	sub, err := env.NC.Subscribe(wire.WakeFilter(provider), func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	if err := env.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return &n
}

// A provider's callback makes the job poll at once: with an hour between
// polls, every result arrives within seconds, after one poll per job
// (fal's poll reads the status, then the result).
func TestCallbackWakesPoll(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"fal", "replicate", "samsar"} {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			env := reelqtest.New(t, map[string]providersim.Knobs{p: {CompleteAfter: providersim.Duration(300 * time.Millisecond)}})
			cb := env.StartCallbacks(false)
			env.StartWorker(reelqtest.WorkerOptions{Callbacks: cb, Providers: map[string]reelqtest.Settings{
				p: {PollInterval: hourPolls, MaxPollInterval: hourPolls, Callbacks: true}}})
			const n = 4
			var jobs []reelq.Job
			for i := range n {
				jobs = append(jobs, callbackJob(p, fmt.Sprintf("cb-%s-%d", p, i)))
			}
			env.Enqueue(jobs...)
			results := env.Results(n, time.Minute)
			for _, j := range jobs {
				if rs := results[j.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
					t.Errorf("job %s: %+v, want one succeeded result", j.ID, rs)
				}
			}
			st := env.Sim.Stats(0)[p]
			if got := st.Requests["callback 202"]; got != n {
				t.Errorf("callbacks answered 202: %d, want %d (all: %v)", got, n, st.Requests)
			}
			if got, most := polls(env, p), n; got > most { // fal: its status; the result read is op "result"
				t.Errorf("%d status reads for %d jobs, want at most %d", got, n, most)
			}
		})
	}
}

// signedReplicate posts a Replicate-signed callback to url, signed with
// secret at ts, and returns the status.
func signedReplicate(t testing.TB, url, secret string, ts time.Time) int {
	t.Helper()
	body := []byte(`{"id":"x","status":"succeeded"}`)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if secret != "" {
		s, err := webhook.NewSecrets(secret)
		if err != nil {
			t.Fatal(err)
		}
		s.SetHeaders(req.Header, "msg_test", ts, body)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Forged, badly signed, replayed and unknown-job callbacks are refused
// (401/404), publish no wake and cause no poll: the one poll the job
// makes is the one a genuine callback, sent last, asks for.
func TestForgedCallbacksCauseNoPoll(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"replicate": {CompleteAfter: providersim.Duration(time.Hour)}})
	cb := env.StartCallbacks(false)
	wakes := countWakes(t, env, "replicate")
	env.StartWorker(reelqtest.WorkerOptions{Callbacks: cb, Providers: map[string]reelqtest.Settings{
		"replicate": {PollInterval: hourPolls, MaxPollInterval: hourPolls, Callbacks: true}}})
	env.Enqueue(callbackJob("replicate", "forge-me"))
	waitfor.Job(t, env.JS, "forge-me", 30*time.Second, func(st *reelq.JobState) bool { return st != nil && st.Phase == reelq.PhaseSubmitted })

	good := cb.Minter.URL("replicate", "forge-me")
	mac := good[strings.LastIndexByte(good, '/')+1:]
	forged := strings.TrimSuffix(good, mac) + strings.Repeat("A", len(mac))
	otherSecret := "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
	now := time.Now()
	for _, tc := range []struct {
		name   string
		url    string
		secret string
		ts     time.Time
		want   int
	}{
		{"forged MAC", forged, cb.ReplicateSecret, now, 401},
		{"MAC of another job", strings.Replace(cb.Minter.URL("replicate", "other"), "/other/", "/forge-me/", 1), cb.ReplicateSecret, now, 401},
		{"unsigned", good, "", now, 401},
		{"signed with another secret", good, otherSecret, now, 401},
		{"replayed: signed 6 minutes ago", good, cb.ReplicateSecret, now.Add(-6 * time.Minute), 401},
		{"signed 6 minutes ahead", good, cb.ReplicateSecret, now.Add(6 * time.Minute), 401},
		{"unknown job", cb.Minter.URL("replicate", "no-such-job"), cb.ReplicateSecret, now, 404},
		{"job of another provider's URL", cb.Minter.URL("fal", "forge-me"), cb.ReplicateSecret, now, 401},
	} {
		if got := signedReplicate(t, tc.url, tc.secret, tc.ts); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := signedReplicate(t, good, cb.ReplicateSecret, now); got != http.StatusAccepted {
		t.Fatalf("genuine callback: status %d, want 202", got)
	}
	waitfor.Until(t, 30*time.Second, "the genuine callback's poll", func() bool { return polls(env, "replicate") >= 1 })
	if n := wakes.Load(); n != 1 {
		t.Errorf("%d wakes published, want 1 (the genuine callback's)", n)
	}
	if n := polls(env, "replicate"); n != 1 {
		t.Errorf("%d polls, want 1 (the genuine callback's)", n)
	}
}

// Duplicates of a callback cost at most one extra poll: ten copies at
// within a second, one after the other, then the provider's own callback
// when the task is done.
func TestDuplicateCallbacksCoalesce(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"replicate": {CompleteAfter: providersim.Duration(3 * time.Second)}})
	cb := env.StartCallbacks(false)
	env.StartWorker(reelqtest.WorkerOptions{Callbacks: cb, Providers: map[string]reelqtest.Settings{
		"replicate": {PollInterval: hourPolls, MaxPollInterval: hourPolls, Callbacks: true}}})
	env.Enqueue(callbackJob("replicate", "dup"))
	waitfor.Job(t, env.JS, "dup", 30*time.Second, func(st *reelq.JobState) bool { return st != nil && st.Phase == reelq.PhaseSubmitted })
	url := cb.Minter.URL("replicate", "dup")
	// One after the other, each once the last was answered (the first
	// once its poll began): spread over the polls they cause.
	start := time.Now()
	for range 10 {
		if got := signedReplicate(t, url, cb.ReplicateSecret, time.Now()); got != http.StatusAccepted && got != http.StatusOK {
			t.Errorf("duplicate: status %d", got)
		}
		waitfor.Until(t, 10*time.Second, "a poll in flight or due", func() bool { return polls(env, "replicate") >= 1 })
	}
	spread := time.Since(start)
	rs := env.Results(1, time.Minute)["dup"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Fatalf("dup: %+v, want one succeeded result", rs)
	}
	// The copies' poll, at most one extra per second they took (a wake
	// polls at most once a second: 1 extra when they took under one),
	// and the poll the provider's own callback asks for.
	if n, most := polls(env, "replicate"), 3+int(spread/time.Second); n > most {
		t.Errorf("%d polls after 10 duplicate callbacks in %s and the genuine one, want at most %d", n, spread, most)
	}
}

// With the endpoint down, the simulator's callbacks fail and every job
// completes by polling.
func TestCallbackEndpointDownJobsStillComplete(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"fal": {CompleteAfter: providersim.Duration(200 * time.Millisecond)}})
	cb := env.StartCallbacks(true)
	env.StartWorker(reelqtest.WorkerOptions{Callbacks: cb, Providers: map[string]reelqtest.Settings{
		"fal": {PollInterval: 100 * time.Millisecond, Callbacks: true}}})
	const n = 5
	var jobs []reelq.Job
	for i := range n {
		jobs = append(jobs, callbackJob("fal", fmt.Sprintf("down-%d", i)))
	}
	env.Enqueue(jobs...)
	results := env.Results(n, time.Minute)
	for _, j := range jobs {
		if rs := results[j.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
			t.Errorf("job %s: %+v, want one succeeded result", j.ID, rs)
		}
	}
	if got := env.Sim.Stats(0)["fal"].Requests["callback 0"]; got == 0 {
		t.Errorf("no callback failed to connect: the endpoint was not down (%v)", env.Sim.Stats(0)["fal"].Requests)
	}
}

// A callback that arrives while the submit is still in flight (the task
// finished before the create's answer came back) is not lost: the job
// polls as soon as its task is recorded.
func TestWakeDuringSubmitNotLost(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"replicate": {
		CreateDelayMin: providersim.Duration(time.Second), CreateDelayMax: providersim.Duration(time.Second)}})
	cb := env.StartCallbacks(false)
	env.StartWorker(reelqtest.WorkerOptions{Callbacks: cb, Providers: map[string]reelqtest.Settings{
		"replicate": {PollInterval: hourPolls, MaxPollInterval: hourPolls, Callbacks: true, RequestTimeout: 20 * time.Second}}})
	env.Enqueue(callbackJob("replicate", "early"))
	rs := env.Results(1, time.Minute)["early"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Fatalf("early: %+v, want one succeeded result", rs)
	}
	if got := env.Sim.Stats(0)["replicate"].Requests["callback 202"]; got != 1 {
		t.Errorf("callbacks answered 202: %d, want 1", got)
	}
}
