package worker_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
)

// BenchmarkCallbackLatency: 100 Replicate jobs (tasks of 0.5-1.5 s) with
// a poll interval of 60 s, callbacks on: the time from the provider
// finishing a task (the simulator's DoneAt) to the job's result
// (CompletedAt), p50 and p99, and the status reads per job. Callbacks
// off, the same jobs wait for their first poll, a minute after submit.
//
//	go test -run '^$' -bench BenchmarkCallbackLatency -benchtime 1x ./internal/worker/
func BenchmarkCallbackLatency(b *testing.B) {
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("callbacks=%v", on), func(b *testing.B) {
			for range b.N {
				callbackLatency(b, on)
			}
		})
	}
}

func callbackLatency(b *testing.B, on bool) {
	const n = 100
	env := reelqtest.New(b, map[string]providersim.Knobs{"replicate": {
		CompleteAfter: providersim.Duration(500 * time.Millisecond), Jitter: providersim.Duration(time.Second)}})
	cb := env.StartCallbacks(false)
	env.StartWorker(reelqtest.WorkerOptions{Callbacks: cb, Providers: map[string]reelqtest.Settings{
		"replicate": {PollInterval: time.Minute, MaxPollInterval: time.Minute, Callbacks: on, MaxInflight: n, Rate: 1000, Burst: 100}}})
	var jobs []reelq.Job
	for i := range n {
		jobs = append(jobs, callbackJob("replicate", fmt.Sprintf("bench-%03d", i)))
	}
	env.Enqueue(jobs...)
	results := env.Results(n, 5*time.Minute)
	done := map[string]time.Time{}
	for _, t := range env.Sim.Tasks("replicate") {
		done[t.ID] = t.DoneAt
	}
	var lat []time.Duration
	for _, rs := range results {
		r := rs[0]
		if r.Status != reelq.StatusSucceeded {
			b.Fatalf("job %s: %s", r.ID, r.Status)
		}
		lat = append(lat, r.CompletedAt.Sub(done[r.ProviderTaskID]))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(float64(polls(env, "replicate"))/n, "polls/job")
}

// BenchmarkForgedCallbacks: 1,000 forged, badly signed and replayed
// callbacks for a running job, then 1,000 duplicates of a genuine one:
// the polls and wakes each caused (the job's own poll interval is an
// hour, so every poll is a wake's).
//
//	go test -run '^$' -bench BenchmarkForgedCallbacks -benchtime 1x ./internal/worker/
func BenchmarkForgedCallbacks(b *testing.B) {
	for range b.N {
		env := reelqtest.New(b, map[string]providersim.Knobs{"replicate": {CompleteAfter: providersim.Duration(time.Hour)}})
		cb := env.StartCallbacks(false)
		wakes := countWakes(b, env, "replicate")
		env.StartWorker(reelqtest.WorkerOptions{Callbacks: cb, Providers: map[string]reelqtest.Settings{
			"replicate": {PollInterval: hourPolls, MaxPollInterval: hourPolls, Callbacks: true}}})
		env.Enqueue(callbackJob("replicate", "target"))
		waitfor.Job(b, env.JS, "target", 30*time.Second, func(st *reelq.JobState) bool { return st != nil && st.Phase == reelq.PhaseSubmitted })
		good := cb.Minter.URL("replicate", "target")
		forged := good[:len(good)-4] + "AAAA"
		other := "whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
		for i := range 1000 {
			switch i % 3 {
			case 0:
				signedReplicate(b, forged, cb.ReplicateSecret, time.Now())
			case 1:
				signedReplicate(b, good, other, time.Now())
			default:
				signedReplicate(b, good, cb.ReplicateSecret, time.Now().Add(-6*time.Minute))
			}
		}
		b.ReportMetric(float64(polls(env, "replicate")), "polls-forged")
		b.ReportMetric(float64(wakes.Load()), "wakes-forged")
		start := time.Now()
		for range 1000 {
			signedReplicate(b, good, cb.ReplicateSecret, time.Now())
		}
		took := time.Since(start)
		waitfor.Until(b, 30*time.Second, "a poll", func() bool { return polls(env, "replicate") >= 1 })
		b.ReportMetric(float64(wakes.Load()), "wakes-dup")
		b.ReportMetric(took.Seconds(), "dup-seconds")
		// Polls go on for a second after the last copy (wakeGap): read
		// them once the job's next poll could only be an hour away.
		last := polls(env, "replicate")
		waitfor.Until(b, 30*time.Second, "the polls to settle", func() bool {
			n := polls(env, "replicate")
			ok := n == last && time.Since(start) > took+2*time.Second
			last = n
			return ok
		})
		b.ReportMetric(float64(last), "polls-dup")
	}
}
