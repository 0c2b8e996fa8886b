package worker_test

import (
	"fmt"
	"github.com/reelq/reelq"
	"log/slog"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/worker"
)

// BenchmarkRateLimitUtilisation runs a backlog against the simulator with
// 1, 3 and 8 worker replicas sharing one provider limit (20 req/s, burst
// 2) and reports, from the provider's side, the request rate achieved over
// a 3s window (req/s, and util% of the configured rate) and the overshoot:
// the most requests in any 1s window minus the limit's bound (rate·1s +
// burst); zero or below means the limit held. One iteration takes a few
// seconds; run with -benchtime=1x:
//
//	go test -run '^$' -bench RateLimitUtilisation -benchtime=1x ./internal/worker/
func BenchmarkRateLimitUtilisation(b *testing.B) {
	const (
		rate    = 20.0
		burst   = 2
		measure = 3 * time.Second
	)
	for _, replicas := range []int{1, 3, 8} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			var achieved float64
			var maxIn1s int
			for b.Loop() {
				achieved, maxIn1s = runBacklog(b, replicas, rate, burst, measure)
			}
			b.ReportMetric(achieved, "req/s")
			b.ReportMetric(100*achieved/rate, "util%")
			b.ReportMetric(float64(maxIn1s), "max_req_in_1s")
			b.ReportMetric(float64(maxIn1s-(int(rate)+burst)), "overshoot_req")
		})
	}
}

// runBacklog starts replicas against a fresh server and simulator, keeps
// far more work queued than the limit allows, and returns the provider
// request rate seen over measure (from the first request) and the most
// requests the provider saw in any 1s window.
func runBacklog(b *testing.B, replicas int, rate float64, burst int, measure time.Duration) (float64, int) {
	b.Helper()
	env := reelqtest.New(b, map[string]providersim.Knobs{"samsar": {
		CompleteAfter: providersim.Duration(200 * time.Millisecond), Jitter: providersim.Duration(100 * time.Millisecond)}})
	quiet := slog.New(slog.DiscardHandler)
	for i := range replicas {
		env.StartWorker(reelqtest.WorkerOptions{
			ID:     fmt.Sprintf("bench-%d", i),
			Logger: quiet,
			Providers: map[string]reelqtest.Settings{"samsar": {
				Rate: rate, Burst: burst, MaxInflight: 16, PollInterval: 100 * time.Millisecond}},
			Config: worker.Config{ShutdownTimeout: 100 * time.Millisecond},
		})
	}
	// One job per request the window allows: jobs take about three calls
	// each, so the backlog outlasts the measurement about three times.
	n := int(rate * measure.Seconds())
	jobs := make([]reelq.Job, n)
	for i := range jobs {
		jobs[i] = reelqtest.SamsarJob(fmt.Sprintf("bench-%04d", i))
	}
	env.Enqueue(jobs...)

	total := func() int { return env.Sim.Stats(0)["samsar"].TotalRequests }
	waitfor.Until(b, 30*time.Second, "a provider request", func() bool { return total() > 0 })
	start, c0 := time.Now(), total()
	time.Sleep(measure)
	c1, elapsed := total(), time.Since(start)
	if env.Sim.Stats(0)["samsar"].Tasks >= n {
		b.Fatalf("the backlog (%d jobs) ran out during the measurement", n)
	}
	return float64(c1-c0) / elapsed.Seconds(), env.Sim.Stats(time.Second)["samsar"].MaxInWindow
}
