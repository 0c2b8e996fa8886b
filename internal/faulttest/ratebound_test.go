package faulttest

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/waitfor"
)

// The rate bound of the fault tests below: 5 calls a second, 3 back to
// back, for three replicas together.
const boundRate, boundBurst = 5, 3

// rateBoundRun starts three replicas at the bound's rate on natsURL and
// enqueues n Samsar jobs of a few hundred milliseconds: calls (submits
// and polls) keep the limiter saturated.
func rateBoundRun(t *testing.T, dir, natsURL string, n int, batch string) (*sim, *client, []reelq.Job) {
	t.Helper()
	s := startMemSim(t, map[string]providersim.Knobs{"samsar": {
		CompleteAfter: providersim.Duration(300 * time.Millisecond),
		Jitter:        providersim.Duration(300 * time.Millisecond),
	}})
	c := connect(t, natsURL, 1)
	ws := newWorkers(t, dir, natsURL, s.url, map[string]string{
		"SAMSAR_RATE":         fmt.Sprint(boundRate),
		"SAMSAR_BURST":        fmt.Sprint(boundBurst),
		"SAMSAR_MAX_INFLIGHT": "8",
	})
	for _, id := range []string{"a", "b", "c"} {
		ws.start(id)
	}
	jobs := samsarJobs(batch, n)
	c.enqueue(t, jobs)
	if err := waitfor.Poll(time.Minute, func() error {
		if got := c.resultCount(); got < 5 {
			return fmt.Errorf("%d results", got)
		}
		return nil
	}); err != nil {
		t.Fatalf("the batch did not get going: %v", err)
	}
	return s, c, jobs
}

// checkRateBound asserts the provider never saw more calls in any window
// of 200 ms, 1 s or 2 s than the limit allows there (rate·W + burst), and
// returns the most it saw within one second.
func checkRateBound(t *testing.T, s *sim) int {
	t.Helper()
	var most int
	for _, w := range []time.Duration{200 * time.Millisecond, time.Second, 2 * time.Second} {
		n := s.mem.Stats(w)["samsar"].MaxInWindow
		if bound := int(boundRate*w.Seconds()) + boundBurst; n > bound {
			t.Errorf("the provider saw %d calls within %s; the limit allows %d (%d/s, burst %d)", n, w, bound, boundRate, boundBurst)
		}
		if w == time.Second {
			most = n
		}
	}
	return most
}

// The JetStream server (a process) stops gracefully mid-batch and comes
// back after 2 s on the same store. The rate limit's bucket, kept in
// memory, is gone: the replicas create it again at once and write their
// schedule again without an extra burst, and the calls they held during
// the outage do not all go out when it ends. Every job ends in one
// result, and the provider never sees more than the limit in any window.
func TestServerRestartKeepsRateBound(t *testing.T) {
	serverFaultKeepsRateBound(t, "restart-bound", "stop, 2s outage", func(n *natsd) {
		n.p.term()
		time.Sleep(2 * time.Second) // the outage
		n.start()
	})
}

// The JetStream server stalls for 1.5 s, three times, mid-batch (SIGSTOP,
// then SIGCONT: its connections stay open, as in a long pause of a leader
// or a failover): the replicas' requests sent meanwhile are answered all
// at once when it resumes. Calls held behind them (a limiter's grant,
// state writes between a token and its call) must not all go out then:
// every job ends in one result and the provider never sees more than the
// limit in any window. Before, 3 of 4 runs saw one call too many (9 in a
// second, 5 in 200 ms, 14 in 2 s against 8, 4 and 13).
func TestServerStallKeepsRateBound(t *testing.T) {
	serverFaultKeepsRateBound(t, "stall-bound", "3 stalls of 1.5s", func(n *natsd) {
		for range 3 {
			n.p.signal(syscall.SIGSTOP)
			time.Sleep(1500 * time.Millisecond) // the stall
			n.p.signal(syscall.SIGCONT)
			time.Sleep(time.Second) // the calls held meanwhile go out
		}
	})
}

// serverFaultKeepsRateBound runs a rate-bound batch on a nats-server
// process, applies fault to it once the batch is going, and checks that
// every job succeeded once within the bound.
func serverFaultKeepsRateBound(t *testing.T, batch, what string, fault func(*natsd)) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	n := newNATSD(t, dir, "single", nil)
	n.start()
	start := time.Now()
	s, c, jobs := rateBoundRun(t, dir, n.url(), 40, batch)
	at := c.resultCount()
	fault(n)
	c.waitSettled(t, len(jobs), 3*time.Minute)
	rep := verify(t, c, s.stats(t, "samsar").Submissions, jobs, samsarKey)
	if rep.Succeeded != len(jobs) {
		t.Errorf("%d of %d jobs succeeded", rep.Succeeded, len(jobs))
	}
	most := checkRateBound(t, s)
	t.Logf("FIGURES %s: %s from %d of %d results, max_calls_1s=%d/%d %s elapsed=%s",
		t.Name(), what, at, len(jobs), most, boundRate+boundBurst, rep, time.Since(start).Round(100*time.Millisecond))
}

// The rate limit's bucket refuses every write under the replicas
// mid-batch (sealed here, as a file store's critical write error — "stream
// store EOF" after a restart — leaves it). Their limiters hold the calls,
// raise the alarm once that has lasted 10 s (a limiter_unavailable event,
// the provider's record that stats shows, naming the bucket and the
// server's error), delete and create the bucket once it has refused writes
// for 30 s, and go on (limiter_recovered): every job ends in one result,
// paid once; the jobs already submitted are polled late but polled; the
// bound holds across the recovery. Before, nothing ran again until an
// operator recreated the bucket, and stats showed nothing wrong.
func TestRateLimitBucketUnwritable(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	start := time.Now()
	s, c, jobs := rateBoundRun(t, dir, srv.ClientURL(), 40, "bucket-broken")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	at := c.resultCount()
	st, err := c.js.Stream(ctx, "KV_"+queue.BucketRateLimit)
	if err != nil {
		t.Fatal(err)
	}
	sealed := st.CachedInfo().Config
	sealed.Sealed = true
	if _, err := c.js.UpdateStream(ctx, sealed); err != nil {
		t.Fatal(err)
	}
	broken := time.Now()
	var alarm *inspect.LimiterAlarm
	if err := waitfor.Poll(time.Minute, func() error {
		st, err := c.ri.Stats(ctx, inspect.StatsOptions{Recent: -1})
		if err != nil {
			return err
		}
		for _, p := range st.Providers {
			if p.Provider == "samsar" && p.Limiter != nil {
				alarm = p.Limiter
				return nil
			}
		}
		return waitfor.ErrNotYet
	}); err != nil {
		t.Fatalf("stats never showed the limiter's alarm: %v", err)
	}
	if alarm.Bucket != queue.BucketRateLimit || !strings.Contains(alarm.Error, "sealed") {
		t.Errorf("limiter alarm %+v, want the bucket and the server's error", alarm)
	}
	alarmAfter := time.Since(broken)
	c.waitSettled(t, len(jobs), 3*time.Minute)
	rep := verify(t, c, s.stats(t, "samsar").Submissions, jobs, samsarKey)
	if rep.Succeeded != len(jobs) || rep.ExtraSubmissions != 0 {
		t.Errorf("%d of %d jobs succeeded, %d paid twice; want all, none", rep.Succeeded, len(jobs), rep.ExtraSubmissions)
	}
	most := checkRateBound(t, s)
	down, up := c.eventCount(reelq.EventLimiterUnavailable), c.eventCount(reelq.EventLimiterRecovered)
	if down == 0 || up == 0 {
		t.Errorf("%d limiter_unavailable and %d limiter_recovered events, want both", down, up)
	}
	if st, err = c.js.Stream(ctx, "KV_"+queue.BucketRateLimit); err != nil || st.CachedInfo().Config.Sealed || st.CachedInfo().Config.Storage != jetstream.MemoryStorage {
		t.Errorf("bucket after the repair: %v, %+v; want it writable, in memory", err, st)
	}
	t.Logf("FIGURES %s: bucket unwritable from %d of %d results; alarm in stats after %s, all done %s after; limiter_unavailable=%d limiter_recovered=%d max_calls_1s=%d/%d %s elapsed=%s",
		t.Name(), at, len(jobs), alarmAfter.Round(100*time.Millisecond), time.Since(broken).Round(100*time.Millisecond), down, up, most, boundRate+boundBurst, rep, time.Since(start).Round(100*time.Millisecond))
}
