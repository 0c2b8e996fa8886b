package faulttest

import (
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providers/vimmerse"
	"github.com/reelq/reelq/internal/providersim"
)

// A paid call's answer that comes back after another delivery took the
// job over never replaces the task that delivery recorded. Replica a
// receives its create's answer and is stopped (SIGSTOP) before it can
// record the task; replica b gets the redelivery, waits out the claim's
// grace, resubmits (paid twice, as documented for P_AMBIGUOUS=resubmit)
// and records its own task. When a resumes, its write of the first task
// loses the compare-and-set: it leaves b's task in place, cancels its own
// at the provider (Vimmerse DELETE) and counts the double payment. Before
// the fix it re-applied its write and b's task ran on, unseen and billed.
//
// The stop races the replica's own processing of the answer (another
// core may record the task first); an attempt that loses that race
// proves nothing and is run again on a fresh server.
func TestLateAnswerNeverReplacesTheRecordedTask(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const attempts = 8
	for i := range attempts {
		if lateAnswerAttempt(t, i) {
			return
		}
		t.Logf("attempt %d: the stop did not land between the answer and its record; again", i+1)
	}
	t.Skipf("in %d attempts the stop never landed between the answer and its record", attempts)
}

// lateAnswerAttempt runs the scenario once; false if the race was lost.
func lateAnswerAttempt(t *testing.T, attempt int) bool {
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	all := map[string]providersim.Knobs{}
	for _, p := range providersim.Providers {
		all[p] = providersim.Knobs{APIKey: apiKey}
	}
	vk := all["vimmerse"]
	vk.CompleteAfter = providersim.Duration(25 * time.Second)
	all["vimmerse"] = vk
	mem := providersim.New(all, seed%1000)

	// Stop replica a the moment its create's answer is on the wire.
	var (
		mu      sync.Mutex
		stopA   func()
		creates int
	)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mem.ServeHTTP(w, r)
		if r.Method == http.MethodPost && r.URL.Path == "/workflow" {
			mu.Lock()
			creates++
			first, stop := creates == 1, stopA
			mu.Unlock()
			if first && stop != nil {
				w.(http.Flusher).Flush()
				stop()
			}
		}
	}))
	t.Cleanup(hs.Close)

	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), hs.URL, map[string]string{
		"SAMSAR_ENABLED": "false", "VIMMERSE_ENABLED": "true", "VIMMERSE_API_KEY": apiKey, "VIMMERSE_BASE_URL": hs.URL,
		"VIMMERSE_RATE": "100", "VIMMERSE_BURST": "10", "VIMMERSE_MAX_INFLIGHT": "2",
		"VIMMERSE_POLL_INTERVAL": "200ms", "VIMMERSE_REQUEST_TIMEOUT": "2s", "REELQ_SHUTDOWN_TIMEOUT": "15s",
	})
	a := ws.start("a")
	mu.Lock()
	stopA = func() { a.signal(syscall.SIGSTOP) }
	mu.Unlock()
	job := reelq.Job{ID: "late-answer", Provider: "vimmerse", Batch: "late", Input: []byte(`{"title":"late answer"}`)}
	c.enqueue(t, []reelq.Job{job})
	lost := func() bool {
		a.kill() // stopped: SIGKILL still ends it
		return false
	}
	if st := c.waitPhase(t, job.ID, 30*time.Second, func(st *reelq.JobState) bool { return st.Phase != reelq.PhaseQueued }); st.Phase != reelq.PhaseSubmitting {
		return lost()
	}
	ws.start("b")
	// b resubmits after the grace (RequestTimeout + 10s) and records its task.
	st := c.waitPhase(t, job.ID, time.Minute, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseSubmitted })
	tasks := mem.Tasks("vimmerse")
	if len(tasks) == 1 && st.Task != nil && st.Task.ID == tasks[0].ID {
		ws.get("b").kill()
		return lost() // a's record landed before the stop
	}
	if len(tasks) != 2 {
		t.Fatalf("the provider has %d tasks, want 2 (a's, then b's resubmission)", len(tasks))
	}
	first, second := tasks[0].ID, tasks[1].ID
	if st.Task == nil || st.Task.ID != second {
		t.Fatalf("b recorded %+v, want its own task %s", st.Task, second)
	}
	a.signal(syscall.SIGCONT)
	// The stop may also have landed before a read the answer: its call
	// then ends in its own (long past) deadline, the documented window
	// that b's resubmission already counted, and this attempt shows
	// nothing about recording.
	if err := eventually(15*time.Second, func() error {
		if logged(a, "another delivery owns this job; our late submission made an extra task", job.ID) {
			return nil
		}
		return errNotYet
	}); err != nil {
		cur := c.waitPhase(t, job.ID, 5*time.Second, func(*reelq.JobState) bool { return true })
		if cur.Task != nil && cur.Task.ID == first {
			t.Fatalf("a's late task %s replaced b's recorded task %s", first, second)
		}
		ws.get("b").kill()
		return lost()
	}
	c.waitSettled(t, 1, time.Minute)

	stats := mem.Stats(0)["vimmerse"]
	rep := verify(t, c, stats.Submissions, []reelq.Job{job}, func(j reelq.Job) string { return vimmerse.Title("late answer", j.ID) })
	res := c.waitPhase(t, job.ID, 5*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseFinished })
	if r := res.StoredResult(); r == nil || r.ProviderTaskID != second {
		t.Errorf("the result is %+v, want b's task %s (a's late %s must not replace it)", r, second, first)
	}
	if stats.Requests["cancel 200"] != 1 {
		t.Errorf("provider cancels %d, want 1 (a's extra task %s)", stats.Requests["cancel 200"], first)
	}
	if rep.Succeeded != 1 || rep.PaidTwiceJobs != 1 || c.eventCount(reelq.EventPaidTwice) != 1 {
		t.Errorf("%s; paid_twice events %d; want 1 succeeded, paid twice once and counted", rep, c.eventCount(reelq.EventPaidTwice))
	}
	t.Logf("FIGURES %s (attempt %d): %s", t.Name(), attempt+1, rep)
	return true
}

// logged reports whether p has logged a line containing every one of parts.
func logged(p *proc, parts ...string) bool {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if !slices.ContainsFunc(parts, func(part string) bool { return !strings.Contains(l, part) }) {
			return true
		}
	}
	return false
}
