package faulttest

import (
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
)

// The provider misbehaves: 15% of calls get a 5xx, 5% hang past the
// worker's request timeout, 20% are slow. Every job still ends with
// exactly one result event. A submit that timed out has an unknown
// outcome, so its retry is a recorded ambiguous resubmission; the
// simulator never starts a task for a call it let hang, so those
// resubmissions cost nothing here, but they are counted.
func TestProviderFaults(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startSim(t, dir, map[string]providersim.Knobs{"samsar": {
		CompleteAfter: providersim.Duration(300 * time.Millisecond),
		Jitter:        providersim.Duration(500 * time.Millisecond),
		ErrorRate:     0.15,
		TimeoutRate:   0.05,
		HangFor:       providersim.Duration(4 * time.Second),
		SlowRate:      0.2,
		SlowFor:       providersim.Duration(400 * time.Millisecond),
	}})
	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, map[string]string{"SAMSAR_REQUEST_TIMEOUT": "1500ms"})
	ws.start("a")
	ws.start("b")
	jobs := samsarJobs("flaky", 40)
	start := time.Now()
	c.enqueue(t, jobs)
	c.waitSettled(t, len(jobs), 3*time.Minute)
	st := s.stats(t, "samsar")
	rep := verify(t, c, st.Submissions, jobs, func(j queue.Job) string { return samsarPrompt(j.ID) })
	if rep.Succeeded != len(jobs) {
		t.Errorf("%d of %d jobs succeeded (10 attempts each)", rep.Succeeded, len(jobs))
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
	t.Logf("FIGURES %s: injected=%v %s elapsed=%s", t.Name(), faults, rep, time.Since(start).Round(100*time.Millisecond))
}
