package ratelimit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Environment of a replica process started by BenchmarkReplicaProcesses.
const (
	replicaEnv      = "RATELIMIT_TEST_REPLICA" // its name, for errors
	replicaURL      = "RATELIMIT_TEST_URL"
	replicaBucket   = "RATELIMIT_TEST_BUCKET"
	replicaRate     = "RATELIMIT_TEST_RATE"
	replicaBurst    = "RATELIMIT_TEST_BURST"
	replicaWaiters  = "RATELIMIT_TEST_WAITERS"
	replicaDeadline = "RATELIMIT_TEST_DEADLINE" // unix ns
)

// probeEvery is the period of the replicas' scheduling probe.
const probeEvery = 2 * time.Millisecond

// runReplica is a replica process: it takes tokens from the shared key as
// fast as its waiters may until the deadline, then prints one "grant <unix
// ns>" line per token (the time Wait returned), a "stats" line and a
// "stall <ns>" line: the longest its scheduling probe, a goroutine ticking
// every probeEvery, was kept from running (the host was overloaded).
func runReplica() int {
	if err := replica(); err != nil {
		fmt.Fprintf(os.Stderr, "replica %s: %v\n", os.Getenv(replicaEnv), err)
		return 1
	}
	return 0
}

func replica() error {
	rate, err := strconv.ParseFloat(os.Getenv(replicaRate), 64)
	if err != nil {
		return err
	}
	burst, err := strconv.Atoi(os.Getenv(replicaBurst))
	if err != nil {
		return err
	}
	waiters, err := strconv.Atoi(os.Getenv(replicaWaiters))
	if err != nil {
		return err
	}
	deadline, err := strconv.ParseInt(os.Getenv(replicaDeadline), 10, 64)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(os.Getenv(replicaURL))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, deadline))
	defer cancel()
	kv, err := js.KeyValue(ctx, os.Getenv(replicaBucket))
	if err != nil {
		return err
	}
	l := New(NewKVStore(kv), "shared", Config{Rate: rate, Burst: burst})
	var mu sync.Mutex
	var grants []int64
	probe := probeStalls(ctx)
	var wg sync.WaitGroup
	for range waiters {
		wg.Go(func() {
			for {
				if _, err := l.Wait(ctx); err != nil {
					return
				}
				at := time.Now().UnixNano()
				mu.Lock()
				grants = append(grants, at)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	out := bufio.NewWriter(os.Stdout)
	for _, g := range grants {
		fmt.Fprintf(out, "grant %d\n", g)
	}
	s := l.Stats()
	fmt.Fprintf(out, "stats %d %d %d %d %d %d\n", s.Reads, s.Writes, s.Conflicts, s.Errors, s.Granted, s.Dropped)
	stall, episodes := probe()
	for _, e := range episodes {
		fmt.Fprintf(out, "episode %d %d\n", e.from.UnixNano(), e.to.Sub(e.from))
	}
	fmt.Fprintf(out, "stall %d\n", stall)
	return out.Flush()
}

// minEpisode is the shortest stall a probe records as an episode.
const minEpisode = 5 * time.Millisecond

// episode is a time a process was kept from running.
type episode struct{ from, to time.Time }

// probeStalls starts a goroutine that ticks every probeEvery until ctx
// ends. The function returned waits for it and returns the longest the
// goroutine was kept from running past a tick (the process was not
// scheduled, or its runtime stopped), and every such stall of at least
// minEpisode.
func probeStalls(ctx context.Context) func() (time.Duration, []episode) {
	type result struct {
		worst    time.Duration
		episodes []episode
	}
	done := make(chan result, 1)
	go func() {
		tk := time.NewTicker(probeEvery)
		defer tk.Stop()
		var r result
		prev := time.Now()
		for {
			select {
			case <-ctx.Done():
				done <- r
				return
			case <-tk.C:
				now := time.Now()
				late := now.Sub(prev) - probeEvery
				r.worst = max(r.worst, late)
				if late >= minEpisode {
					r.episodes = append(r.episodes, episode{prev.Add(probeEvery), now})
				}
				prev = now
			}
		}
	}()
	return func() (time.Duration, []episode) { r := <-done; return r.worst, r.episodes }
}

// replicaRun is what the replica processes of one run printed.
type replicaRun struct {
	grants []time.Time // merged, sorted
	stats  []Stats
	stall  time.Duration // the worst of the replicas' and the server process's
	// episodes are the stalls of every process (server and replicas).
	episodes []episode
}

// runReplicas runs procs replica processes on bucket for about run.
func runReplicas(t testing.TB, url, bucket string, procs int, rate float64, burst, waiters int, run time.Duration) replicaRun {
	t.Helper()
	deadline := time.Now().Add(run + 500*time.Millisecond) // + start-up
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	defer cancel()
	serverStall := probeStalls(ctx) // this process runs the server
	outs := make([]bytes.Buffer, procs)
	errs := make([]bytes.Buffer, procs)
	cmds := make([]*exec.Cmd, procs)
	for i := range cmds {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(),
			replicaEnv+"="+strconv.Itoa(i),
			replicaURL+"="+url,
			replicaBucket+"="+bucket,
			replicaRate+"="+strconv.FormatFloat(rate, 'g', -1, 64),
			replicaBurst+"="+strconv.Itoa(burst),
			replicaWaiters+"="+strconv.Itoa(waiters),
			replicaDeadline+"="+strconv.FormatInt(deadline.UnixNano(), 10),
		)
		cmd.Stdout, cmd.Stderr = &outs[i], &errs[i]
		if err := cmd.Start(); err != nil {
			t.Fatalf("start replica %d: %v", i, err)
		}
		cmds[i] = cmd
	}
	r := replicaRun{}
	r.stall, r.episodes = serverStall()
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("replica %d: %v: %s", i, err, errs[i].String())
		}
		gs, st, stall, eps, err := parseReplica(outs[i].String())
		if err != nil {
			t.Fatalf("replica %d output: %v", i, err)
		}
		if st.Granted != int64(len(gs)) || st.Errors != 0 {
			t.Errorf("replica %d: %d grants printed, stats %+v", i, len(gs), st)
		}
		r.grants = append(r.grants, gs...)
		r.stats = append(r.stats, st)
		r.stall = max(r.stall, stall)
		r.episodes = append(r.episodes, eps...)
	}
	r.grants = sortedTimes(r.grants)
	return r
}

// BenchmarkReplicaProcesses measures the limiter's precision across
// processes: 1, 3 and 8 replica processes (this test binary, re-executed)
// take tokens from one key on a nats-server listening on loopback, each as
// fast as it may, and the merged grant times give the most grants within
// any 1 s (the bound is Rate+Burst) and, under saturation, the worst
// error of the achieved rate between any two grants at least 1 s apart
// (rate_error_%) and at least 10 s apart (rate_error_10s_%, the issue's
// "within 2% over any window >= 10 s"). Each run lasts REELQ_BENCH_RUN_S
// seconds (default 25; 5 is a quick run, with no 10 s figure below 11).
// Both are measured where Wait returned, so they are figures of the host
// as much as of the limiter: a run where a process was kept from running
// for over maxStall is repeated (twice at most). The bound is also checked
// exactly, on decisions, by TestWaitManyWaitersFakeTime and
// TestKVClusterWideLimit. Run it with -benchtime 1x:
//
//	go test -run '^$' -bench ReplicaProcesses -benchtime 1x ./internal/ratelimit/
func BenchmarkReplicaProcesses(b *testing.B) {
	const (
		burst    = 2
		waiters  = 8 // per process
		attempts = 3
		maxStall = 10 * time.Millisecond // half the tolerance at 50/s, burst 2
	)
	run := 25 * time.Second
	if v := os.Getenv("REELQ_BENCH_RUN_S"); v != "" {
		s, err := strconv.Atoi(v)
		if err != nil || s < 1 {
			b.Fatalf("REELQ_BENCH_RUN_S=%q: want a whole number of seconds >= 1", v)
		}
		run = time.Duration(s) * time.Second
	}
	s := startNATS(b)
	js := connectJS(b, s)
	for _, c := range []struct {
		procs int
		rate  float64
	}{{1, 20}, {1, 50}, {3, 20}, {3, 50}, {8, 20}, {8, 50}} {
		b.Run(fmt.Sprintf("procs=%d/rate=%g", c.procs, c.rate), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				var r replicaRun
				for attempt := 1; ; attempt++ {
					bucket := fmt.Sprintf("rl_procs_%d_%g_%d_%d", c.procs, c.rate, i, attempt)
					createBucket(b, js, bucket)
					r = runReplicas(b, s.ClientURL(), bucket, c.procs, c.rate, burst, waiters, run)
					if r.stall <= maxStall || attempt == attempts {
						break
					}
					b.Logf("attempt %d: a process stalled for %v (host overloaded): run again", attempt, r.stall)
				}
				reportReplicaRun(b, r, c.procs, c.rate, burst, maxStall)
			}
		})
	}
}

// reportReplicaRun reports a run's figures. A run no process stalled in
// must keep the window bound.
func reportReplicaRun(b *testing.B, r replicaRun, procs int, rate float64, burst int, maxStall time.Duration) {
	b.Helper()
	var reads, writes, granted int64
	for i, st := range r.stats {
		b.Logf("replica %d: %d grants, %d reads, %d writes, %d conflicts", i, st.Granted, st.Reads, st.Writes, st.Conflicts)
		reads, writes, granted = reads+st.Reads, writes+st.Writes, granted+st.Granted
	}
	grants := r.grants
	if len(grants) < 2*burst {
		b.Fatalf("%d grants", len(grants))
	}
	span := grants[len(grants)-1].Sub(grants[0])
	m := maxInWindow(grants, time.Second)
	worst, _, _ := worstRateError(grants[burst-1:], rate, time.Second)
	worst10, wi, wj := worstRateError(grants[burst-1:], rate, 10*time.Second)
	from, to := grants[burst-1+wi], grants[burst-1+wj]
	tol := time.Duration(float64(burst-1) / rate * float64(time.Second))
	stalled := stalledWithin(r.episodes, from, to, tol)
	b.Logf("%d processes at %g/s burst %d: %d grants in %v (%.3f/s), max %d in a 1s window (bound %d), "+
		"worst rate error over windows >= 1s %.2f%%, over windows >= 10s %.2f%% (%d grants in %v, %.1f short of the rate; "+
		"stalls beyond the burst's tolerance %v of it, at most %.1f tokens' worth), "+
		"%.2f reads and %.2f writes per token, longest stall %v",
		procs, rate, burst, len(grants), span.Round(time.Millisecond),
		float64(len(grants)-burst)/span.Seconds(), m, int(rate)+burst, 100*worst,
		100*worst10, wj-wi, to.Sub(from).Round(time.Millisecond), rate*to.Sub(from).Seconds()-float64(wj-wi),
		stalled.Round(time.Millisecond), rate*stalled.Seconds(),
		float64(reads)/float64(granted), float64(writes)/float64(granted), r.stall)
	b.ReportMetric(float64(m), "max_in_1s")
	b.ReportMetric(100*worst, "rate_error_%")
	if span >= 10*time.Second {
		b.ReportMetric(100*worst10, "rate_error_10s_%")
		b.ReportMetric(float64(stalled.Milliseconds()), "stalled_ms_10s")
	}
	b.ReportMetric(float64(reads)/float64(granted), "reads/token")
	b.ReportMetric(float64(writes)/float64(granted), "writes/token")
	if m > int(rate)+burst && r.stall <= maxStall {
		b.Errorf("max grants in a 1s window = %d, want <= %d", m, int(rate)+burst)
	}
}

// worstRateError returns the largest |achieved/rate - 1| over every pair of
// grants at least w apart, achieved = (grants between them) / (time between
// them): the rate measured from grant to grant, free of the ±1 grant that a
// fixed window's edges add.
func worstRateError(grants []time.Time, rate float64, w time.Duration) (worst float64, wi, wj int) {
	for i := range grants {
		for j := len(grants) - 1; j > i && grants[j].Sub(grants[i]) >= w; j-- {
			achieved := float64(j-i) / grants[j].Sub(grants[i]).Seconds()
			if e := math.Abs(achieved/rate - 1); e > worst {
				worst, wi, wj = e, i, j
			}
		}
	}
	return worst, wi, wj
}

// stalledWithin is how long within [from, to] some process was stalled
// beyond tol, the tolerance (Burst-1)/Rate that lets the schedule catch up
// a late grant: the episodes are merged where they overlap, and each
// stretch counts for its length minus tol. rate·that is about the most
// tokens the stalls can have cost (a stalled replica costs nothing while
// another serves the key, so it is an upper bound).
func stalledWithin(eps []episode, from, to time.Time, tol time.Duration) time.Duration {
	eps = slices.Clone(eps)
	slices.SortFunc(eps, func(a, b episode) int { return a.from.Compare(b.from) })
	var total time.Duration
	var cur episode // the stretch being merged
	flush := func() {
		s, t := maxTime(cur.from, from), minTime(cur.to, to)
		if d := t.Sub(s) - tol; d > 0 && !cur.from.IsZero() {
			total += d
		}
	}
	for _, e := range eps {
		if !cur.from.IsZero() && !e.from.After(cur.to) {
			cur.to = maxTime(cur.to, e.to)
			continue
		}
		flush()
		cur = e
	}
	flush()
	return total
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func parseReplica(out string) ([]time.Time, Stats, time.Duration, []episode, error) {
	var gs []time.Time
	var eps []episode
	var st Stats
	stall, seen := time.Duration(0), 0
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		n := make([]int64, len(f))
		for i := 1; i < len(f); i++ {
			v, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return nil, st, 0, nil, fmt.Errorf("line %q: %w", line, err)
			}
			n[i] = v
		}
		switch {
		case len(f) == 2 && f[0] == "grant":
			gs = append(gs, time.Unix(0, n[1]))
		case len(f) == 7 && f[0] == "stats":
			st = Stats{Reads: n[1], Writes: n[2], Conflicts: n[3], Errors: n[4], Granted: n[5], Dropped: n[6]}
			seen++
		case len(f) == 3 && f[0] == "episode":
			from := time.Unix(0, n[1])
			eps = append(eps, episode{from, from.Add(time.Duration(n[2]))})
		case len(f) == 2 && f[0] == "stall":
			stall = time.Duration(n[1])
			seen++
		default:
			return nil, st, 0, nil, fmt.Errorf("unexpected line %q", line)
		}
	}
	if seen != 2 {
		return nil, st, 0, nil, fmt.Errorf("no stats or stall line in %q", out)
	}
	return gs, st, stall, eps, nil
}
