package faulttest

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providers/vimmerse"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/waitfor"
)

// A paid call's answer that comes back after another delivery took the
// job over never replaces the task that delivery recorded. The provider
// creates replica a's task but holds its answer, and a is stopped
// (SIGSTOP) while it waits for it, so its delivery expires; replica b gets
// the redelivery, waits out the claim's grace, resubmits (paid twice, as
// documented for P_AMBIGUOUS=resubmit) and records its own task. Then the
// answer goes out and a resumes: its write of the first task loses the
// compare-and-set, it leaves b's task in place, cancels its own at the
// provider (Vimmerse DELETE) and counts the double payment. Before the fix
// it re-applied its write and b's task ran on, unseen and billed.
//
// The answer is held until b has recorded its task, and a's request
// timeout outlasts the hold, so a reads the answer on every run (the test
// used to race a's processing of an answer already sent against the stop,
// and skipped when it lost eight times).
func TestLateAnswerNeverReplacesTheRecordedTask(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	every := map[string]providersim.Knobs{}
	for _, p := range all.Names() {
		every[p] = providersim.Knobs{APIKey: apiKey}
	}
	vk := every["vimmerse"]
	vk.CompleteAfter = providersim.Duration(25 * time.Second)
	every["vimmerse"] = vk
	mem := all.Simulator(every, seed%1000)

	// The first create's answer waits for release; the task exists at the
	// provider from the moment created is closed.
	var (
		mu      sync.Mutex
		creates int
	)
	created, release := make(chan struct{}), make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := r.Method == http.MethodPost && r.URL.Path == "/workflow" && creates == 0
		if r.Method == http.MethodPost && r.URL.Path == "/workflow" {
			creates++
		}
		mu.Unlock()
		if !first {
			mem.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		mem.ServeHTTP(rec, r)
		close(created)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(hs.Close)
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(letGo) // before hs.Close, which waits for the held handler

	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), hs.URL, map[string]string{
		"SAMSAR_ENABLED": "false", "VIMMERSE_ENABLED": "true", "VIMMERSE_API_KEY": apiKey, "VIMMERSE_BASE_URL": hs.URL,
		"VIMMERSE_RATE": "100", "VIMMERSE_BURST": "10", "VIMMERSE_MAX_INFLIGHT": "2", "VIMMERSE_POLL_INTERVAL": "200ms",
		// a waits for its answer however long the hold lasts.
		"VIMMERSE_REQUEST_TIMEOUT": "5m", "REELQ_SHUTDOWN_TIMEOUT": "5m10s",
	})
	a := ws.start("a")
	job := reelq.Job{ID: "late-answer", Provider: "vimmerse", Batch: "late", Input: []byte(`{"title":"late answer"}`)}
	c.enqueue(t, []reelq.Job{job})
	select {
	case <-created:
	case <-time.After(time.Minute):
		t.Fatal("replica a never submitted the job")
	}
	a.signal(syscall.SIGSTOP) // no heartbeat: the delivery expires

	// b resubmits after the grace (its RequestTimeout + 10s) and records
	// its task.
	ws.mu.Lock()
	ws.env["VIMMERSE_REQUEST_TIMEOUT"] = "2s"
	ws.mu.Unlock()
	ws.start("b")
	st := waitfor.Job(t, c.js, job.ID, 2*time.Minute, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseSubmitted })
	tasks := mem.Tasks("vimmerse")
	if len(tasks) != 2 {
		t.Fatalf("the provider has %d tasks, want 2 (a's, then b's resubmission)", len(tasks))
	}
	first, second := tasks[0].ID, tasks[1].ID
	if st.Task == nil || st.Task.ID != second {
		t.Fatalf("b recorded %+v, want its own task %s", st.Task, second)
	}

	// a's answer arrives late.
	letGo()
	a.signal(syscall.SIGCONT)
	a.waitLog(t, "another delivery owns this job; our late submission made an extra task", job.ID)
	c.waitSettled(t, 1, time.Minute)

	stats := mem.Stats(0)["vimmerse"]
	rep := verify(t, c, stats.Submissions, []reelq.Job{job}, func(j reelq.Job) string { return vimmerse.Title("late answer", j.ID) })
	res := waitfor.Job(t, c.js, job.ID, 5*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseFinished })
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
