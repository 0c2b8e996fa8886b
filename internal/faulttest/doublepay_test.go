package faulttest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
)

// killsEnv sets how many SIGKILLs TestDoublePaymentsPerKill makes per
// ambiguous-submission policy (the batch is six jobs per kill);
// taskTimeEnv how long each task runs at the provider (plus up to 800ms);
// ackWaitEnv the workers' REELQ_ACK_WAIT, which is also their slot lease.
const (
	killsEnv    = "REELQ_FAULT_KILLS"
	taskTimeEnv = "REELQ_FAULT_TASK_TIME"
	ackWaitEnv  = "REELQ_FAULT_ACK_WAIT"
)

// slotLease is the workers' slot lease in the fault tests
// (REELQ_ACK_WAIT).
const slotLease = 2 * time.Second

// Worker processes are SIGKILLed at random moments while the provider
// takes 0.3-1 s to answer a create (the task is started and charged when
// the request arrives; the answer is held). A kill during that wait leaves
// a paid task nobody heard of: the one window reelq cannot close. This
// test measures what that costs per 100 kills under both ambiguous-
// submission policies, and asserts what must hold whatever the count:
//
//   - resubmit: every job ends with exactly one result and succeeds; the
//     provider's paid submissions per job are at most 1 + the job's
//     recorded ambiguous submissions (every double payment is counted);
//   - hold: every job ends with exactly one result or is held; no job is
//     paid twice; an operator resolving the held jobs (the task found on
//     the provider's dashboard, or a resubmission where the provider has
//     none) finishes each with one result, every job paid exactly once;
//   - both: JOBS drains (nothing lost), the provider never sees more
//     calls in any second than the rate limit allows, nor more tasks
//     running at once than the cap plus the tasks paid twice (a task whose
//     submit nobody heard of cannot be counted; with hold there are none),
//     however long tasks run (REELQ_FAULT_TASK_TIME): a killed replica's
//     slot lease outlives its deliveries by an AckWait, and its
//     redelivered running jobs take the next slots before any new
//     submission.
//
// The simulator runs in the test process (over real HTTP, on loopback) so
// that the test can read its task list: when each task started and ended,
// and which task a held job's submission created.
//
// Set REELQ_FAULT_KILLS for a longer run: 100 kills is a 600-job batch per
// policy (about 4 minutes).
func TestDoublePaymentsPerKill(t *testing.T) {
	skipShort(t)
	t.Parallel()
	kills := 20
	if v := os.Getenv(killsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", killsEnv, v)
		}
		kills = n
	}
	duration := func(env string, def time.Duration) time.Duration {
		v := os.Getenv(env)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration", env, v)
		}
		return d
	}
	task, lease := duration(taskTimeEnv, 400*time.Millisecond), duration(ackWaitEnv, slotLease)
	for _, policy := range []string{"resubmit", "hold"} {
		t.Run("ambiguous="+policy, func(t *testing.T) {
			t.Parallel()
			slowCreateKills(t, policy, kills, task, lease)
		})
	}
}

func slowCreateKills(t *testing.T, policy string, wantKills int, task, lease time.Duration) {
	const (
		rate, burst, capN = 40, 10, 6
		replicas          = 3
	)
	rng := rngFor(t)
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startMemSim(t, map[string]providersim.Knobs{"samsar": {
		CompleteAfter:  providersim.Duration(task),
		Jitter:         providersim.Duration(800 * time.Millisecond),
		CreateDelayMin: providersim.Duration(300 * time.Millisecond),
		CreateDelayMax: providersim.Duration(time.Second),
	}})
	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, map[string]string{
		"SAMSAR_AMBIGUOUS":    policy,
		"SAMSAR_RATE":         strconv.Itoa(rate),
		"SAMSAR_BURST":        strconv.Itoa(burst),
		"SAMSAR_MAX_INFLIGHT": strconv.Itoa(capN),
		"REELQ_ACK_WAIT":      lease.String(),
	})
	names := []string{"a", "b", "c"}[:replicas]
	for _, id := range names {
		ws.start(id)
	}
	jobs := samsarJobs("dp-"+policy, max(60, 6*wantKills))
	start := time.Now()
	c.enqueue(t, jobs)

	kills := 0
	for kills < wantKills && c.resultCount() < len(jobs)*9/10 {
		time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond) // a random kill moment
		id := names[rng.IntN(len(names))]
		ws.get(id).kill()
		kills++
		if d := rng.IntN(3); d > 0 {
			time.Sleep(time.Duration(d) * 250 * time.Millisecond) // a random outage
		}
		ws.start(id)
	}
	killTime := time.Since(start)
	if kills < wantKills {
		t.Errorf("only %d of %d kills before 90%% of the batch was done: make the batch longer", kills, wantKills)
	}
	hold := policy == "hold"
	if hold {
		c.waitSettledOrHeld(t, jobs, 5*time.Minute)
	} else {
		c.waitSettled(t, len(jobs), 5*time.Minute)
	}
	elapsed := time.Since(start)
	st := s.stats(t, "samsar")
	rep := verifyHeld(t, c, st.Submissions, jobs, samsarKey, hold)
	// Kills that landed while the provider held a create's answer: the
	// simulator saw the client go away (the task was charged all the same).
	midCreate := st.Requests["submit 499"]
	// The limiter's bound over the whole run (no call before the jobs
	// existed): arrivals only trail its decisions. The most calls that
	// arrived within one second is a figure (requests decided apart can
	// arrive together on a busy host, and kills bunch them).
	window := s.mem.Stats(time.Second)["samsar"].MaxInWindow
	if span := time.Since(start); st.TotalRequests > burst+int(rate*span.Seconds()) {
		t.Errorf("the provider saw %d calls in %v; the limit allows %d (%d/s, burst %d)", st.TotalRequests, span, burst+int(rate*span.Seconds()), rate, burst)
	}
	running := maxRunning(s.mem.Tasks("samsar"))
	if running > capN+rep.ExtraSubmissions {
		t.Errorf("the provider ran %d tasks at once; the cap is %d (plus %d tasks paid twice)", running, capN, rep.ExtraSubmissions)
	}
	if rep.Results+rep.Held != len(jobs) {
		t.Errorf("%d results and %d held jobs for %d jobs", rep.Results, rep.Held, len(jobs))
	}
	switch policy {
	case "resubmit":
		if rep.Succeeded != len(jobs) || rep.Held != 0 {
			t.Errorf("%d of %d jobs succeeded, %d held; want all succeeded, none held", rep.Succeeded, len(jobs), rep.Held)
		}
	case "hold":
		if rep.ExtraSubmissions != 0 {
			t.Errorf("with the hold policy %d submissions were paid twice, want 0", rep.ExtraSubmissions)
		}
		if rep.Succeeded+rep.Held != len(jobs) || rep.Ambiguous != 0 {
			t.Errorf("%d succeeded, %d held, %d resubmitted after an unknown outcome; want all succeeded or held, none resubmitted", rep.Succeeded, rep.Held, rep.Ambiguous)
		}
	}
	per100 := func(n int) string { return fmt.Sprintf("%.1f", 100*float64(n)/float64(max(kills, 1))) }
	t.Logf("FIGURES %s: policy=%s task=%s+0-800ms lease=%s kills=%d mid_create_kills=%d jobs=%d double_paid=%d (per 100 kills %s) held=%d (per 100 kills %s) mid_create_per_100_kills=%s max_calls_1s=%d/%d max_running=%d/%d %s kill_phase=%s elapsed=%s",
		t.Name(), policy, task, lease, kills, midCreate, len(jobs), rep.ExtraSubmissions, per100(rep.ExtraSubmissions), rep.Held, per100(rep.Held), per100(midCreate),
		window, rate+burst, running, capN, rep, killTime.Round(100*time.Millisecond), elapsed.Round(100*time.Millisecond))

	if !hold || rep.Held == 0 {
		return
	}
	// The operator resolves every held job: with the task the provider's
	// dashboard shows for its prompt, or by resubmitting where the
	// provider has none (the kill came before the request arrived).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	found, resubmitted := 0, 0
	for _, j := range jobs {
		jst, err := c.rc.Get(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if jst.Phase != reelq.PhaseHeld {
			continue
		}
		o := inspect.ResolveOptions{TaskID: s.mem.TaskFor("samsar", samsarKey(j))}
		if o.TaskID == "" {
			o.Resubmit = true
			resubmitted++
		} else {
			found++
		}
		if _, err := c.ri.Resolve(ctx, j.ID, o); err != nil {
			t.Fatalf("resolve %s %+v: %v", j.ID, o, err)
		}
	}
	c.waitSettled(t, len(jobs), 3*time.Minute)
	st = s.stats(t, "samsar")
	after := verify(t, c, st.Submissions, jobs, samsarKey)
	if after.Succeeded != len(jobs) || after.ExtraSubmissions != 0 {
		t.Errorf("after resolving: %d of %d succeeded, %d paid twice; want all, 0", after.Succeeded, len(jobs), after.ExtraSubmissions)
	}
	for _, j := range jobs {
		if n := st.Submissions[samsarKey(j)]; n != 1 {
			t.Errorf("job %s paid %d times after resolving, want exactly 1", j.ID, n)
		}
	}
	t.Logf("FIGURES %s: resolved held=%d with_task=%d resubmitted=%d; after: %s", t.Name(), rep.Held, found, resubmitted, after)
}

// startMemSim runs the simulator in the test process, over real HTTP on
// loopback, so that a test can read its task list.
func startMemSim(t testing.TB, knobs map[string]providersim.Knobs) *sim {
	t.Helper()
	every := map[string]providersim.Knobs{}
	for _, p := range all.Names() {
		k := knobs[p]
		k.APIKey = apiKey
		every[p] = k
	}
	mem := all.Simulator(every, seed%1000)
	hs := httptest.NewServer(mem)
	t.Cleanup(hs.Close)
	return &sim{url: hs.URL, mem: mem}
}

// maxRunning is the most tasks running at once at the provider: each from
// its creation (the paid call arriving) to its natural end, whether anyone
// polls it or not.
func maxRunning(tasks []providersim.TaskInfo) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, tk := range tasks {
		edges = append(edges, edge{tk.Created, +1}, edge{tk.DoneAt, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if !edges[i].at.Equal(edges[j].at) {
			return edges[i].at.Before(edges[j].at)
		}
		return edges[i].delta < edges[j].delta // an end before a start at the same instant
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}
