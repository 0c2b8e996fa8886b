package worker_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
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
