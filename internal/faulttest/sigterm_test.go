package faulttest

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/waitfor"
)

// A real SIGTERM to a worker process in the middle of a batch (what a
// KEDA scale-in or a rolling update sends) starts no paid call after it:
// the calls in flight finish and are recorded, the jobs pulled ahead go
// back to the queue without using an attempt, the process exits 0 well
// within its shutdown timeout, and a second worker finishes the batch
// with every job paid once.
func TestSIGTERMStartsNoPaidCall(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startMemSim(t, map[string]providersim.Knobs{"samsar": {
		CreateDelayMin: providersim.Duration(400 * time.Millisecond), CreateDelayMax: providersim.Duration(600 * time.Millisecond),
		CompleteAfter: providersim.Duration(300 * time.Millisecond)}})
	c := connect(t, srv.ClientURL(), 1)
	const capN = 4
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, map[string]string{"SAMSAR_MAX_INFLIGHT": fmt.Sprint(capN)})
	a := ws.start("a")
	jobs := samsarJobs("sigterm", 40)
	c.enqueue(t, jobs)
	if err := waitfor.Poll(30*time.Second, func() error {
		if n := len(s.mem.TaskTimes("samsar")); n < 6 {
			return fmt.Errorf("%d tasks created", n)
		}
		return nil
	}); err != nil {
		t.Fatalf("waiting for the batch to run: %v", err)
	}
	termAt := time.Now()
	a.signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not exit within 30s of SIGTERM")
	}
	exited := time.Since(termAt)
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("worker exited %d after SIGTERM, want 0", code)
	}
	a.waitLog(t, "no new paid calls")
	// A create sent before the signal may reach the provider after it,
	// however late on a busy host; each holds one of the 4 slots, so at
	// most 4 do. A worker that started calls during its shutdown would
	// start more as the calls in flight ended.
	late := 0
	for _, created := range s.mem.TaskTimes("samsar") {
		if created.After(termAt) {
			late++
		}
	}
	if late > capN {
		t.Errorf("%d paid calls reached the provider after SIGTERM, want at most the %d that may have been in flight", late, capN)
	}
	before := len(s.mem.TaskTimes("samsar"))

	ws.start("b")
	c.waitSettled(t, len(jobs), 2*time.Minute)
	rep := verify(t, c, s.mem.Stats(0)["samsar"].Submissions, jobs, samsarKey)
	if rep.Succeeded != len(jobs) || rep.ExtraSubmissions != 0 {
		t.Errorf("%s, want all %d succeeded, none paid twice", rep, len(jobs))
	}
	t.Logf("SIGTERM after %d tasks; exit in %v; %d calls arrived after it; the second worker finished the other %d, each paid once (%s)",
		before, exited.Round(time.Millisecond), late, len(jobs)-before, rep)
}
