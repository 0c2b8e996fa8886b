package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providers/vimmerse"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/waitfor"
)

// A replica stalls inside the paid call (SIGSTOP: think of a long GC
// pause or a frozen VM), so its heartbeats stop and the job is redelivered
// to a second replica while the first still holds it. The second sees the
// job "submitting" and waits; the first wakes up, records its task and
// finishes. One result, one paid submission, nothing ambiguous.
func TestStalledReplicaInsidePaidCall(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startSim(t, dir, map[string]providersim.Knobs{"samsar": {SlowRate: 1, SlowFor: providersim.Duration(2 * time.Second)}})
	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, map[string]string{"SAMSAR_REQUEST_TIMEOUT": "15s", "REELQ_SHUTDOWN_TIMEOUT": "25s"})
	a := ws.start("a")
	jobs := samsarJobs("stall", 1)
	c.enqueue(t, jobs)

	s.waitStats(t, "samsar", "the submit to arrive", func(st providersim.Stats) bool { return st.TotalRequests >= 1 })
	a.signal(syscall.SIGSTOP)
	ws.start("b")
	c.waitRedelivered(t, "samsar")
	a.signal(syscall.SIGCONT)

	c.waitSettled(t, len(jobs), time.Minute)
	rep := verify(t, c, s.stats(t, "samsar").Submissions, jobs, samsarKey)
	st := waitfor.Job(t, c.js, jobs[0].ID, 5*time.Second, func(*reelq.JobState) bool { return true })
	if got := s.stats(t, "samsar").Submissions[samsarPrompt(jobs[0].ID)]; got != 1 || rep.Ambiguous != 0 || rep.Succeeded != 1 {
		t.Errorf("submissions=%d ambiguous=%d succeeded=%d, want 1, 0, 1", got, rep.Ambiguous, rep.Succeeded)
	}
	if st.Worker != "a.1" {
		t.Errorf("job submitted by %s, want a.1 (the stalled replica keeps its claim)", st.Worker)
	}
	t.Logf("FIGURES %s: %s", t.Name(), rep)
}

// The same stall, but longer than the claim's grace (RequestTimeout+10s):
// the second replica can no longer tell whether the first paid, and
// resubmits. This is the one window left; it is counted (job state,
// metric, event). With an idempotency key the provider honours
// (providersim's Idempotency knob; Samsar sends the job id as
// Idempotency-Key) the resubmission returns the first task and nothing is
// paid twice; without it the provider bills twice. When the first replica
// wakes up it finds the job finished and only re-acks it.
func TestStalledPastGraceIsAmbiguous(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, idem := range []bool{false, true} {
		t.Run(fmt.Sprintf("idempotency=%v", idem), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dumpLogs(t, dir)
			srv := natstest.Server(t)
			s := startSim(t, dir, map[string]providersim.Knobs{"samsar": {SlowRate: 1, SlowFor: providersim.Duration(2 * time.Second), Idempotency: idem}})
			c := connect(t, srv.ClientURL(), 1)
			ws := newWorkers(t, dir, srv.ClientURL(), s.url, map[string]string{"SAMSAR_REQUEST_TIMEOUT": "3s"})
			a := ws.start("a")
			jobs := samsarJobs("grace", 1)
			id := jobs[0].ID
			c.enqueue(t, jobs)

			s.waitStats(t, "samsar", "the submit to arrive", func(st providersim.Stats) bool { return st.TotalRequests >= 1 })
			a.signal(syscall.SIGSTOP)
			if st := waitfor.Job(t, c.js, id, 5*time.Second, func(*reelq.JobState) bool { return true }); st.Phase != reelq.PhaseSubmitting {
				t.Fatalf("the stall landed after the paid call returned (phase %s): the machine is too loaded for this test", st.Phase)
			}
			ws.start("b")
			c.waitSettled(t, 1, time.Minute) // b resubmits after the grace (RequestTimeout+10s) and finishes
			a.signal(syscall.SIGCONT)
			// a wakes up inside its expired call, finds the job finished
			// and republishes the stored result (deduplicated).
			a.waitLog(t, "job already finished; making sure its result is published", id)
			c.waitSettled(t, 1, time.Minute)

			rep := verify(t, c, s.stats(t, "samsar").Submissions, jobs, samsarKey)
			wantSubs := 2
			if idem {
				wantSubs = 1
			}
			if got := s.stats(t, "samsar").Submissions[samsarPrompt(id)]; got != wantSubs {
				t.Errorf("provider saw %d paid submissions, want %d", got, wantSubs)
			}
			if rep.Ambiguous != 1 || rep.AmbiguousEvents != 1 || rep.Succeeded != 1 {
				t.Errorf("ambiguous=%d events=%d succeeded=%d, want 1, 1, 1", rep.Ambiguous, rep.AmbiguousEvents, rep.Succeeded)
			}
			t.Logf("FIGURES %s: %s", t.Name(), rep)
		})
	}
}

// A paid call that times out has an unknown outcome: the retry is an
// ambiguous resubmission, counted once per timed-out submit. (Before the
// fix in worker.noResponse, a call cut off by its own deadline was taken
// for "nothing started" and resubmitted uncounted.)
func TestSubmitTimeoutIsAmbiguous(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startSim(t, dir, map[string]providersim.Knobs{"samsar": {TimeoutRate: 1, HangFor: providersim.Duration(10 * time.Second)}})
	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, map[string]string{"SAMSAR_REQUEST_TIMEOUT": "1s"})
	ws.start("a")
	jobs := samsarJobs("timeout", 1)
	c.enqueue(t, jobs)
	s.waitStats(t, "samsar", "a submit to hang", func(st providersim.Stats) bool { return st.Requests["submit 504"] >= 1 })
	s.setKnobs(t, "samsar", map[string]any{"timeout_rate": 0})
	c.waitSettled(t, 1, time.Minute)
	st := s.stats(t, "samsar")
	rep := verify(t, c, st.Submissions, jobs, samsarKey)
	if hung := st.Requests["submit 504"]; rep.Ambiguous != hung || rep.AmbiguousEvents != uint64(hung) {
		t.Errorf("%d submits timed out, but %d ambiguous resubmissions (%d events) were recorded", hung, rep.Ambiguous, rep.AmbiguousEvents)
	}
	if got := st.Submissions[samsarPrompt(jobs[0].ID)]; got != 1 || rep.Succeeded != 1 {
		t.Errorf("submissions=%d succeeded=%d, want 1, 1", got, rep.Succeeded)
	}
	t.Logf("FIGURES %s: %s", t.Name(), rep)
}

// waitStats waits until the simulator's counters for provider satisfy ok.
func (s *sim) waitStats(t testing.TB, provider, what string, ok func(providersim.Stats) bool) {
	t.Helper()
	if err := waitfor.Poll(30*time.Second, func() error {
		if !ok(s.stats(t, provider)) {
			return waitfor.ErrNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// setKnobs merges knobs into provider's knobs through the admin API.
func (s *sim) setKnobs(t testing.TB, provider string, knobs map[string]any) {
	t.Helper()
	b, _ := json.Marshal(knobs)
	resp, err := http.Post(s.url+"/admin/knobs?provider="+provider, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("set knobs: %s", resp.Status)
	}
}

// waitRedelivered waits until provider's consumer has redelivered a message.
func (c *client) waitRedelivered(t testing.TB, provider string) {
	t.Helper()
	if err := waitfor.Poll(30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, err := c.js.Consumer(ctx, queue.StreamJobs, provider)
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumRedelivered == 0 {
			return waitfor.ErrNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("waiting for a redelivery: %v", err)
	}
}

// The job is cancelled while its replica stalls inside the paid call. A
// second replica gets the redelivery and finishes the job as cancelled;
// when the first wakes up with a task nobody will ever poll, it cancels
// that task at the provider (Vimmerse DELETE) instead of leaving it to
// run and bill unseen, and only re-acks the job. One cancelled result.
func TestCancelWhileStalledInsidePaidCall(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startSim(t, dir, map[string]providersim.Knobs{"vimmerse": {CompleteAfter: providersim.Duration(time.Hour), SlowRate: 1, SlowFor: providersim.Duration(2 * time.Second)}})
	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, map[string]string{
		"SAMSAR_ENABLED": "false", "VIMMERSE_ENABLED": "true", "VIMMERSE_API_KEY": apiKey, "VIMMERSE_BASE_URL": s.url,
		"VIMMERSE_RATE": "100", "VIMMERSE_BURST": "10", "VIMMERSE_MAX_INFLIGHT": "2",
		"VIMMERSE_POLL_INTERVAL": "100ms", "VIMMERSE_REQUEST_TIMEOUT": "15s", "REELQ_SHUTDOWN_TIMEOUT": "25s",
	})
	a := ws.start("a")
	job := reelq.Job{ID: "cancel-stalled", Provider: "vimmerse", Batch: "stall", Input: []byte(`{"title":"cancelled while stalled"}`)}
	c.enqueue(t, []reelq.Job{job})
	s.waitStats(t, "vimmerse", "the submit to arrive", func(st providersim.Stats) bool { return st.TotalRequests >= 1 })
	a.signal(syscall.SIGSTOP)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := c.rc.Cancel(ctx, job.ID); err != nil || out.Status != reelq.CancelRequested || out.Phase != reelq.PhaseSubmitting {
		t.Fatalf("cancel: %+v %v, want %q in phase submitting", out, err, reelq.CancelRequested)
	}
	ws.start("b")
	c.waitSettled(t, 1, time.Minute) // b finishes the job as cancelled
	a.signal(syscall.SIGCONT)
	// a wakes up with a task for a finished job and deletes it.
	s.waitStats(t, "vimmerse", "the orphaned task to be cancelled", func(st providersim.Stats) bool { return st.Requests["cancel 200"] >= 1 })
	a.waitLog(t, "settled without a task while our submission was in flight", job.ID) // its only task, paid once: not paid twice

	rep := verify(t, c, s.stats(t, "vimmerse").Submissions, []reelq.Job{job}, func(j reelq.Job) string {
		return vimmerse.Title("cancelled while stalled", j.ID)
	})
	st := s.stats(t, "vimmerse")
	if rep.Cancelled != 1 || st.Requests["cancel 200"] != 1 || st.Active != 0 || st.Tasks != 1 {
		t.Errorf("cancelled results %d, provider cancels %d, active tasks %d, tasks %d; want 1, 1, 0, 1", rep.Cancelled, st.Requests["cancel 200"], st.Active, st.Tasks)
	}
	t.Logf("FIGURES %s: %s", t.Name(), rep)
}
