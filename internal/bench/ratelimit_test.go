package bench

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
)

// BenchmarkRateLimitProcesses measures the cluster-wide rate limit where
// the provider sees it: 1, 3 and 8 worker processes (cmd/worker, built
// from the module) share one Samsar limit (20/s and 50/s, burst 2) and
// work through a backlog against the provider simulator, which runs in
// this process and notes when every API call arrived. Over
// REELQ_BENCH_RUN_S seconds (default 25) of calls it reports the most
// calls in any 1 s window (max_in_1s; the bound is rate + burst) and the
// worst error of the achieved rate between any two calls at least 10 s
// apart (rate_error_10s_%; calls counted from call to call, so a fixed
// window's edges add nothing), and logs the calls in each second. The
// backlog outlasts the run (it fails if not). The limiter bounds its
// grants; a call reaches the provider up to the limiter's TokenTTL (50 ms
// at these rates) after its grant, so a window of calls can hold a call
// or two more than one of grants (see "Calls made late" in package
// ratelimit; BenchmarkReplicaProcesses measures the grants). Run it with
// -benchtime 1x:
//
//	go test -run '^$' -bench RateLimitProcesses -benchtime 1x ./internal/bench/
func BenchmarkRateLimitProcesses(b *testing.B) {
	const burst = 2
	run := time.Duration(envInt("REELQ_BENCH_RUN_S", 25)) * time.Second
	bins := buildBins(b, b.TempDir(), "worker")
	for _, procs := range []int{1, 3, 8} {
		for _, rate := range []float64{20, 50} {
			b.Run(fmt.Sprintf("procs=%d/rate=%g", procs, rate), func(b *testing.B) {
				for b.Loop() {
					calls := runLimitedWorkers(b, bins["worker"], procs, rate, burst, run)
					reportCalls(b, calls, procs, rate, burst)
				}
			})
		}
	}
}

// callLog notes when each provider API call reached the simulator.
type callLog struct {
	mu      sync.Mutex
	at      []time.Time
	sim     http.Handler
	started chan struct{} // closed at the first call
}

func (c *callLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/admin/") && !strings.HasPrefix(r.URL.Path, "/outputs/") {
		now := time.Now()
		c.mu.Lock()
		c.at = append(c.at, now)
		if len(c.at) == 1 {
			close(c.started)
		}
		c.mu.Unlock()
	}
	c.sim.ServeHTTP(w, r)
}

func (c *callLog) times() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.at)
}

// runLimitedWorkers starts procs worker processes sharing one limit on a
// fresh server and simulator, queues more work than the limit lets
// through in run, and returns the arrival times of the calls of the
// first run after the first call, sorted.
func runLimitedWorkers(b *testing.B, bin string, procs int, rate float64, burst int, run time.Duration) []time.Time {
	b.Helper()
	dir := b.TempDir()
	srv := startServer(b)
	defer srv.stop()
	sim := all.Simulator(map[string]providersim.Knobs{"samsar": {APIKey: "k",
		CompleteAfter: providersim.Duration(300 * time.Millisecond), Jitter: providersim.Duration(200 * time.Millisecond)}}, 7)
	defer sim.Close()
	log := &callLog{sim: sim, started: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: log}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()

	workers := make([]*exec.Cmd, procs)
	addrs := make([]string, procs)
	for i := range workers {
		httpAddr := freeAddr(b)
		env := []string{
			"NATS_URL=" + srv.url, "SAMSAR_API_KEY=k", "SAMSAR_BASE_URL=http://" + ln.Addr().String() + sim.Base("samsar"),
			fmt.Sprintf("SAMSAR_RATE=%g", rate), fmt.Sprintf("SAMSAR_BURST=%d", burst), "SAMSAR_MAX_INFLIGHT=16",
			"SAMSAR_POLL_INTERVAL=100ms", "SAMSAR_MAX_POLL_INTERVAL=100ms",
			"REELQ_ARCHIVE=off", "REELQ_VALIDATE=false", "LOG_LEVEL=warn",
			"WORKER_HTTP_ADDR=" + httpAddr, fmt.Sprintf("REELQ_WORKER_ID=limit-%d", i),
		}
		workers[i], addrs[i] = startProcess(b, dir, bin, nil, env), httpAddr
	}
	defer func() {
		for _, w := range workers {
			_ = w.Process.Kill()
			_ = w.Wait()
		}
	}()
	for _, a := range addrs {
		waitTCP(b, a)
	}

	nc, err := nats.Connect(srv.url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	client, err := reelq.NewClient(ctx, nc, reelq.Options{ProviderEnv: map[string]string{}})
	if err != nil {
		b.Fatal(err)
	}
	// A job takes a submit and at least one poll: one job per call the
	// run allows leaves work queued at its end.
	n := int(rate*run.Seconds()) + 100
	jobs := make([]reelq.Job, n)
	for i := range jobs {
		jobs[i] = job(i)
	}
	if _, err := client.EnqueueBatch(ctx, jobs, reelq.BatchOptions{}); err != nil {
		b.Fatal(err)
	}
	select {
	case <-log.started:
	case <-time.After(time.Minute):
		b.Fatal("no provider call within a minute of queueing the work")
	}
	first := log.times()[0]
	time.Sleep(time.Until(first.Add(run + 200*time.Millisecond))) // the measured run
	if tasks := sim.Stats(0)["samsar"].Tasks; tasks >= n {
		b.Fatalf("the backlog (%d jobs) ran out during the run", n)
	}
	calls := log.times()
	slices.SortFunc(calls, func(x, y time.Time) int { return x.Compare(y) })
	end, _ := slices.BinarySearchFunc(calls, first.Add(run), func(x, t time.Time) int { return x.Compare(t) })
	return calls[:end]
}

// reportCalls reports the window bound and the rate error of one run.
func reportCalls(b *testing.B, calls []time.Time, procs int, rate float64, burst int) {
	b.Helper()
	if len(calls) < 2*burst {
		b.Fatalf("%d calls", len(calls))
	}
	m, at := 0, time.Duration(0)
	for i, j := 0, 0; j < len(calls); j++ {
		for calls[j].Sub(calls[i]) >= time.Second {
			i++
		}
		if j-i+1 > m {
			m, at = j-i+1, calls[i].Sub(calls[0])
		}
	}
	// The first burst-1 calls are the burst, taken at once.
	worst1 := callRateError(calls[burst-1:], rate, time.Second)
	worst10 := callRateError(calls[burst-1:], rate, 10*time.Second)
	span := calls[len(calls)-1].Sub(calls[0])
	b.Logf("%d worker processes at %g/s burst %d: %d calls in %v (%.3f/s), max %d in a 1s window (bound %d; the first such window starts %v after the first call), worst rate error over windows >= 1s %.2f%%, >= 10s %.2f%%",
		procs, rate, burst, len(calls), span.Round(time.Millisecond), float64(len(calls)-burst)/span.Seconds(),
		m, int(rate)+burst, at.Round(time.Millisecond), 100*worst1, 100*worst10)
	perSec := make([]int, int(span/time.Second)+1)
	for _, c := range calls {
		perSec[int(c.Sub(calls[0])/time.Second)]++
	}
	b.Logf("calls in each second from the first: %v", perSec)
	b.ReportMetric(float64(m), "max_in_1s")
	b.ReportMetric(100*worst1, "rate_error_%")
	if span >= 10*time.Second {
		b.ReportMetric(100*worst10, "rate_error_10s_%")
	}
}

// callRateError is the largest |achieved/rate - 1| over every pair of
// calls at least w apart, achieved = (calls between them) / (time between
// them).
func callRateError(calls []time.Time, rate float64, w time.Duration) float64 {
	worst := 0.0
	for i := range calls {
		for j := len(calls) - 1; j > i && calls[j].Sub(calls[i]) >= w; j-- {
			e := math.Abs(float64(j-i)/calls[j].Sub(calls[i]).Seconds()/rate - 1)
			worst = max(worst, e)
		}
	}
	return worst
}
