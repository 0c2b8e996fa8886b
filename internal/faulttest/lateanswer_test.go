package faulttest

import (
	"net/http"
	"net/http/httptest"
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
func TestLateAnswerNeverReplacesTheRecordedTask(t *testing.T) {
	skipShort(t)
	t.Parallel()
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
	if st := c.waitPhase(t, job.ID, 30*time.Second, func(st *reelq.JobState) bool { return st.Phase != reelq.PhaseQueued }); st.Phase != reelq.PhaseSubmitting {
		t.Skipf("replica a recorded its task before the stop landed (phase %s): nothing to race", st.Phase)
	}
	ws.start("b")
	// b resubmits after the grace (RequestTimeout + 10s) and records its task.
	st := c.waitPhase(t, job.ID, time.Minute, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseSubmitted })
	tasks := mem.Tasks("vimmerse")
	if len(tasks) != 2 {
		t.Fatalf("the provider has %d tasks, want 2 (a's, then b's resubmission)", len(tasks))
	}
	first, second := tasks[0].ID, tasks[1].ID
	if st.Task == nil || st.Task.ID != second {
		t.Fatalf("b recorded %+v, want its own task %s", st.Task, second)
	}
	a.signal(syscall.SIGCONT)
	a.waitLog(t, "another delivery owns this job; our late submission made an extra task", job.ID)
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
	t.Logf("FIGURES %s: %s", t.Name(), rep)
}
