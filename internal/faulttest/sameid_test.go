package faulttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/waitfor"
)

// A replica SIGKILLed while its tasks run at the provider and started
// again under the same REELQ_WORKER_ID (a StatefulSet pod, any fixed id)
// keeps the cap: its new process holds a lease of its own, so the slots
// of its predecessor's tasks stay taken until that lease expires (by then
// their redeliveries hold them, first in line). Before, the new process
// took its predecessor's entry for its own and granted itself slots on
// top of the tasks still running: 6 tasks at once against a cap of 4.
// Both replicas are killed and restarted so, each time all four slots
// are in use.
func TestRestartSameWorkerIDKeepsCap(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const capN = 4
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startMemSim(t, map[string]providersim.Knobs{"samsar": {
		CompleteAfter: providersim.Duration(1500 * time.Millisecond),
		Jitter:        providersim.Duration(500 * time.Millisecond),
	}})
	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, map[string]string{
		"SAMSAR_MAX_INFLIGHT": fmt.Sprint(capN),
		"SAMSAR_SLOTS":        fmt.Sprint(capN / 2), // each replica runs half
	})
	for _, id := range []string{"a", "b"} {
		ws.startAs(id, id)
	}
	jobs := samsarJobs("sameid", 24)
	start := time.Now()
	c.enqueue(t, jobs)

	full := func() error {
		if n := s.mem.Stats(0)["samsar"].Active; n < capN {
			return fmt.Errorf("%d tasks running", n)
		}
		return nil
	}
	for _, id := range []string{"a", "b"} {
		if err := waitfor.Poll(time.Minute, full); err != nil {
			t.Fatalf("the slots never filled before killing %s: %v", id, err)
		}
		ws.get(id).kill()
		ws.startAs(id, id)
		t.Logf("replica %s killed and restarted under the same id with %d tasks running", id, s.mem.Stats(0)["samsar"].Active)
	}
	c.waitSettled(t, len(jobs), 2*time.Minute)
	rep := verify(t, c, s.stats(t, "samsar").Submissions, jobs, samsarKey)
	running := maxRunning(s.mem.Tasks("samsar"))
	if running > capN+rep.ExtraSubmissions {
		t.Errorf("the provider ran %d tasks at once; the cap is %d (plus %d tasks paid twice)", running, capN, rep.ExtraSubmissions)
	}
	t.Logf("FIGURES %s: kills=2 max_running=%d/%d %s elapsed=%s", t.Name(), running, capN, rep, time.Since(start).Round(100*time.Millisecond))
}
