package faulttest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/waitfor"
)

// The provider misbehaves: 15% of calls get a 5xx, 5% hang past the
// worker's request timeout, 20% are slow, and a few jobs are ones the
// account may not run (the provider's per-job 403). Every job still ends
// with exactly one result event. A submit that timed out has an unknown
// outcome, so its retry is a recorded ambiguous resubmission; the
// simulator never starts a task for a call it let hang, so those
// resubmissions cost nothing here, but they are counted. A per-job 403
// fails that job with code forbidden and never pauses the provider.
//
// The pause after repeated unanswered submits (SAMSAR_AMBIGUOUS_PAUSE_AFTER)
// is off here, so that this test measures the retries;
// TestSubmitTimeoutsPauseProvider covers the pause.
func TestProviderFaults(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startSim(t, dir, map[string]providersim.Knobs{"samsar": {
		CompleteAfter:   providersim.Duration(300 * time.Millisecond),
		Jitter:          providersim.Duration(500 * time.Millisecond),
		ErrorRate:       0.15,
		TimeoutRate:     0.05,
		HangFor:         providersim.Duration(4 * time.Second),
		SlowRate:        0.2,
		SlowFor:         providersim.Duration(400 * time.Millisecond),
		ForbiddenMarker: providersim.ForbiddenMarker,
	}})
	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, map[string]string{
		"SAMSAR_REQUEST_TIMEOUT": "1500ms", "SAMSAR_AMBIGUOUS_PAUSE_AFTER": "-1",
	})
	ws.start("a")
	ws.start("b")
	jobs := samsarJobs("flaky", 40)
	forbidden := map[string]bool{}
	for _, i := range []int{7, 19, 33} {
		j := &jobs[i]
		j.Input = []byte(strings.Replace(string(j.Input), `"prompt":"`, `"prompt":"`+providersim.ForbiddenMarker+` `, 1))
		forbidden[j.ID] = true
	}
	key := func(j reelq.Job) string {
		if forbidden[j.ID] {
			return providersim.ForbiddenMarker + " " + samsarPrompt(j.ID)
		}
		return samsarPrompt(j.ID)
	}
	start := time.Now()
	c.enqueue(t, jobs)
	c.waitSettled(t, len(jobs), 3*time.Minute)
	st := s.stats(t, "samsar")
	rep := verify(t, c, st.Submissions, jobs, key)
	if want := len(jobs) - len(forbidden); rep.Succeeded != want || rep.Failed != len(forbidden) {
		t.Errorf("%d succeeded and %d failed, want %d and %d (10 attempts each)", rep.Succeeded, rep.Failed, want, len(forbidden))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for id := range forbidden {
		st, err := c.rc.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.StoredResult(); r == nil || r.Status != reelq.StatusFailed || r.Error == nil || r.Error.Code != reelq.CodeForbidden {
			t.Errorf("job %s (refused by the provider): result %+v, want failed with code forbidden", id, r)
		}
	}
	if n := c.eventCount(reelq.EventProviderPaused); n != 0 {
		t.Errorf("the provider was paused %d times; a per-job 403 must not pause it", n)
	}
	faults := map[string]int{}
	for k, n := range st.Requests {
		if op, code, _ := strings.Cut(k, " "); code >= "500" && code < "600" {
			faults[op+" "+code] += n
		}
	}
	if faults["submit 503"] == 0 || faults["poll 503"] == 0 {
		t.Errorf("the simulator injected no 5xx: %v", st.Requests)
	}
	if st.Requests["submit 403"] < len(forbidden) {
		t.Errorf("the simulator refused %d submits with 403, want at least %d", st.Requests["submit 403"], len(forbidden))
	}
	if hung := st.Requests["submit 504"]; rep.Ambiguous != hung {
		t.Errorf("%d submits timed out, but %d ambiguous submissions were recorded", hung, rep.Ambiguous)
	}
	t.Logf("FIGURES %s: injected=%v forbidden=%d %s elapsed=%s", t.Name(), faults, st.Requests["submit 403"], rep, time.Since(start).Round(100*time.Millisecond))
}

// Submits that get no answer are ambiguous: each is counted, and after
// SAMSAR_AMBIGUOUS_PAUSE_AFTER of them within SAMSAR_AMBIGUOUS_WINDOW the
// provider is paused for an operator (code ambiguous_submits) instead of
// paying again and again against a provider that may create tasks but
// does not answer. Nothing is submitted while it is paused; after the
// operator resumes it the job finishes, paid once (the simulator starts no
// task for a call it let hang).
func TestSubmitTimeoutsPauseProvider(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startSim(t, dir, map[string]providersim.Knobs{"samsar": {TimeoutRate: 1, HangFor: providersim.Duration(10 * time.Second)}})
	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, map[string]string{
		"SAMSAR_REQUEST_TIMEOUT": "1s", "SAMSAR_AMBIGUOUS_PAUSE_AFTER": "2", "SAMSAR_AMBIGUOUS_WINDOW": "10m",
	})
	ws.start("a")
	jobs := samsarJobs("timeout", 1)
	id := jobs[0].ID
	c.enqueue(t, jobs)
	p := c.waitPause(t, "samsar", time.Minute)
	if p.Code != "ambiguous_submits" || p.NextProbeAt != nil {
		t.Errorf("pause %+v, want code ambiguous_submits, for an operator (no probe)", p)
	}
	hung := s.stats(t, "samsar").Requests["submit 504"]
	if hung != 2 {
		t.Errorf("%d submits timed out before the pause, want 2 (SAMSAR_AMBIGUOUS_PAUSE_AFTER)", hung)
	}
	// The provider answers again; nothing runs until the operator says so.
	s.setKnobs(t, "samsar", map[string]any{"timeout_rate": 0})
	st := waitfor.Job(t, c.js, id, 5*time.Second, func(*reelq.JobState) bool { return true })
	if st.Phase == reelq.PhaseFinished {
		t.Fatalf("job finished while the provider was paused: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if was, err := c.ri.Resume(ctx, "samsar"); err != nil || !was {
		t.Fatalf("resume: %v %v", was, err)
	}
	c.waitSettled(t, 1, time.Minute)
	sst := s.stats(t, "samsar")
	rep := verify(t, c, sst.Submissions, jobs, samsarKey)
	if sst.Requests["submit 504"] != hung {
		t.Errorf("%d submits hung in all, %d before the pause: the worker submitted while paused", sst.Requests["submit 504"], hung)
	}
	if rep.Ambiguous != hung || rep.AmbiguousEvents != uint64(hung) {
		// Each unanswered submit is followed by one resubmission, counted
		// in the job state and as an ambiguous_submit event.
		t.Errorf("%d submits timed out, but %d ambiguous submissions (%d events) were recorded", hung, rep.Ambiguous, rep.AmbiguousEvents)
	}
	if got := sst.Submissions[samsarPrompt(id)]; got != 1 || rep.Succeeded != 1 {
		t.Errorf("submissions=%d succeeded=%d, want 1, 1", got, rep.Succeeded)
	}
	t.Logf("FIGURES %s: hung=%d pause=%s %s", t.Name(), hung, p.Code, rep)
}

// A 2xx answer to a submit without a task id (a renamed field) is a
// contract break: the job fails once with code unknown_submission and is
// never resubmitted, and the provider pauses (code unknown_submission) so
// the rest of the batch does not pay for nothing. After the operator
// resumes it, the other jobs run, each paid once.
func TestSubmitWithoutTaskIDPausesProvider(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startSim(t, dir, map[string]providersim.Knobs{"samsar": {MissingTaskID: true, CompleteAfter: providersim.Duration(200 * time.Millisecond)}})
	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, map[string]string{"SAMSAR_MAX_INFLIGHT": "1"})
	ws.start("a")
	jobs := samsarJobs("notask", 5)
	c.enqueue(t, jobs)
	p := c.waitPause(t, "samsar", time.Minute)
	if p.Code != reelq.CodeUnknownSubmission {
		t.Errorf("pause %+v, want code %s", p, reelq.CodeUnknownSubmission)
	}
	waitResults(t, c, 1, time.Minute)
	paid := s.stats(t, "samsar").Tasks
	s.setKnobs(t, "samsar", map[string]any{"missing_task_id": false})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.ri.Resume(ctx, "samsar"); err != nil {
		t.Fatal(err)
	}
	c.waitSettled(t, len(jobs), time.Minute)
	st := s.stats(t, "samsar")
	rep := verify(t, c, st.Submissions, jobs, samsarKey)
	if rep.Failed != 1 || rep.Succeeded != len(jobs)-1 {
		t.Errorf("failed=%d succeeded=%d, want 1 and %d", rep.Failed, rep.Succeeded, len(jobs)-1)
	}
	for _, j := range jobs {
		if got := st.Submissions[samsarPrompt(j.ID)]; got != 1 {
			t.Errorf("job %s paid %d times, want 1", j.ID, got)
		}
		jst, err := c.rc.Get(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r := jst.StoredResult(); r != nil && r.Status == reelq.StatusFailed && (r.Error == nil || r.Error.Code != reelq.CodeUnknownSubmission) {
			t.Errorf("job %s failed with %+v, want code %s", j.ID, r.Error, reelq.CodeUnknownSubmission)
		}
	}
	if paid != 1 {
		t.Errorf("%d tasks were paid before the pause, want 1 (the rest of the batch waits)", paid)
	}
	t.Logf("FIGURES %s: paid_before_pause=%d %s", t.Name(), paid, rep)
}

// waitPause waits until the client's stats show provider paused.
func (c *client) waitPause(t testing.TB, provider string, timeout time.Duration) inspect.Pause {
	t.Helper()
	var p *inspect.Pause
	if err := waitfor.Poll(timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.ri.Stats(ctx, inspect.StatsOptions{Recent: -1})
		if err != nil {
			return err
		}
		for _, ps := range st.Providers {
			if ps.Provider == provider && ps.Pause != nil {
				p = ps.Pause
				return nil
			}
		}
		return waitfor.ErrNotYet
	}); err != nil {
		t.Fatalf("provider %s never paused: %v", provider, err)
	}
	return *p
}
