package faulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/waitfor"
)

// Worker processes are SIGKILLed while a batch runs (samsar, fal and
// Replicate jobs; ten samsar ones refused by the provider, so failed),
// and once some jobs have succeeded and some failed, the rest of the
// batch is cancelled at once (a burst of cancelled results): the
// counters as `stats` reads them agree with RESULTS exactly, done by
// status and spend per batch and per provider, and enqueued is the size
// of the batch.
func TestCountsAgreeWithResultsAfterWorkerKills(t *testing.T) {
	skipShort(t)
	t.Parallel()
	rng := rngFor(t)
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	knobs := samsarKnobs()
	k := knobs["samsar"]
	k.ForbiddenMarker = "tally-00" // jobs tally-000 to tally-009 (not the hubs' tally-hub-...)
	knobs["samsar"] = k
	s := startSim(t, dir, withHubs(knobs))
	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, hubEnv(t, s.url))
	replicas := []string{"a", "b", "c"}
	for _, id := range replicas {
		ws.start(id)
	}
	jobs := append(samsarJobs("tally", 120), hubJobs("tally", 40)...)
	c.enqueue(t, jobs)

	kills := 0
	for kills < 8 && c.resultCount() < len(jobs)/2 {
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond) // a random kill moment
		id := replicas[rng.IntN(len(replicas))]
		ws.get(id).kill()
		kills++
		t.Logf("killed replica %s at %d of %d results", id, c.resultCount(), len(jobs))
		ws.start(id)
	}
	waitfor.Until(t, 2*time.Minute, "a succeeded and a failed result", func() error {
		if got := c.resultTally(t); got.status[reelq.StatusSucceeded] == 0 || got.status[reelq.StatusFailed] == 0 {
			return fmt.Errorf("results so far: %v", got.status)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, err := range c.rc.CancelBatch(ctx, "tally", "counts test") {
		if err != nil {
			t.Fatal(err)
		}
	}
	c.waitSettled(t, len(jobs), 2*time.Minute)
	got := c.resultTally(t)
	t.Logf("FIGURES %s: kills=%d results %+v", t.Name(), kills, got)
	for _, p := range []string{"samsar", "fal", "replicate"} {
		if len(got.provider[p].status) == 0 {
			t.Errorf("no result of %s in RESULTS: %+v", p, got)
		}
	}
	for _, st := range []string{reelq.StatusSucceeded, reelq.StatusFailed, reelq.StatusCancelled} {
		if got.status[st] == 0 {
			t.Errorf("no %s result in RESULTS (the test needs every status): %+v", st, got.status)
		}
	}
	c.checkCounts(t, "tally", uint64(len(jobs)), got)
}

// The enqueue command is SIGKILLed in the middle of a file (jobs
// published whose count was not yet sent) and run again: the batch's
// enqueued counter is the file's size, as many as JOBS holds.
func TestEnqueueKilledMidFileThenRerunCountsEveryJob(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	srv := natstest.Server(t)
	c := connect(t, srv.ClientURL(), 1)
	const n = 20000
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"provider":"samsar","input":{"prompt":"%s","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}}`+"\n", samsarPrompt(fmt.Sprint(i)))
	}
	file := filepath.Join(dir, "killed.jsonl")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	env := baseEnv(map[string]string{"NATS_URL": srv.ClientURL()})
	p := startProc(t, dir, "enqueue", bins["enqueue"], []string{file}, env, nil)
	waitfor.Until(t, time.Minute, "the first jobs in JOBS", func() error {
		if m, _ := c.streamMsgs(queue.StreamJobs); m == 0 {
			return fmt.Errorf("JOBS is empty")
		}
		return nil
	})
	p.kill()
	killedAt, _ := c.streamMsgs(queue.StreamJobs)
	counted := c.enqueuedCount(t, "killed")
	t.Logf("FIGURES %s: killed with %d of %d jobs in JOBS, %d counted", t.Name(), killedAt, n, counted)

	cmd := exec.Command(bins["enqueue"], file)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("re-run: %v\n%s", err, out)
	}
	if m, _ := c.streamMsgs(queue.StreamJobs); m != n {
		t.Fatalf("JOBS holds %d, want %d", m, n)
	}
	if got := c.enqueuedCount(t, "killed"); got != n {
		t.Errorf("batch killed counts %d enqueued after the re-run, want %d (%d counted when killed with %d published)", got, n, counted, killedAt)
	}
}

// tally is what RESULTS says of a batch: events by status, spend by unit
// in micro-units, and the same per provider.
type tally struct {
	status   map[string]uint64
	spent    map[string]int64
	provider map[string]tally
}

func newTally() tally { return tally{status: map[string]uint64{}, spent: map[string]int64{}} }

// add counts r.
func (t tally) add(r *reelq.Result) {
	t.status[r.Status]++
	if r.Cost != nil && r.Cost.Amount > 0 {
		t.spent[r.Cost.Unit] += int64(money.FromFloat(r.Cost.Amount))
	}
}

// resultTally reads every event in RESULTS.
func (c *client) resultTally(t testing.TB) tally {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := c.streamMsgs(queue.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := c.js.OrderedConsumer(ctx, queue.StreamResults, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := newTally()
	out.provider = map[string]tally{}
	for range n {
		m, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		var r reelq.Result
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			t.Fatal(err)
		}
		out.add(&r)
		p, ok := out.provider[r.Provider]
		if !ok {
			p = newTally()
			out.provider[r.Provider] = p
		}
		p.add(&r)
	}
	return out
}

// checkCounts compares batch's counters and each provider's done and
// spend counters (one batch ran) with want.
func (c *client) checkCounts(t testing.TB, batch string, enqueued uint64, want tally) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The counts lag the results by the fold interval (1s), and by a
	// lease (10s) when the replica folding was killed.
	start := time.Now()
	st := waitfor.Counted(t, ctx, c.ri, inspect.StatsOptions{Batch: batch}, time.Minute)
	t.Logf("FIGURES %s: counts folded %s after the results settled", t.Name(), time.Since(start).Round(time.Millisecond))
	if len(st.Batches) != 1 {
		t.Fatalf("stats of batch %s: %+v", batch, st.Batches)
	}
	b := st.Batches[0]
	if b.Enqueued != enqueued || b.Succeeded != want.status[reelq.StatusSucceeded] || b.Failed != want.status[reelq.StatusFailed] || b.Cancelled != want.status[reelq.StatusCancelled] {
		t.Errorf("stats: enqueued %d, succeeded %d, failed %d, cancelled %d; RESULTS: %v, %d enqueued", b.Enqueued, b.Succeeded, b.Failed, b.Cancelled, want.status, enqueued)
	}
	micros := func(m map[string]float64) map[string]int64 {
		out := map[string]int64{}
		for u, v := range m {
			out[u] = int64(money.FromFloat(v))
		}
		return out
	}
	if got := micros(b.Spent); fmt.Sprint(got) != fmt.Sprint(want.spent) {
		t.Errorf("stats: batch spent %v micro-units; RESULTS %v", got, want.spent)
	}
	for _, p := range st.Providers {
		w := want.provider[p.Provider]
		if fmt.Sprint(p.Done) != fmt.Sprint(w.status) {
			t.Errorf("stats: %s done %v; RESULTS %v", p.Provider, p.Done, w.status)
		}
		if got := micros(p.Spent); fmt.Sprint(got) != fmt.Sprint(w.spent) {
			t.Errorf("stats: %s spent %v micro-units; RESULTS %v", p.Provider, got, w.spent)
		}
	}
}

// enqueuedCount is batch's enqueued counter (0 before it exists).
func (c *client) enqueuedCount(t testing.TB, batch string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.ri.Stats(ctx, inspect.StatsOptions{Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Batches {
		if b.Batch == batch {
			return b.Enqueued
		}
	}
	return 0
}
