package faulttest

import (
	"testing"
	"time"

	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
)

// samsarKnobs is a provider with some seconds of work per job and slow
// calls now and then, so that kills land inside paid calls too.
func samsarKnobs() map[string]providersim.Knobs {
	return map[string]providersim.Knobs{"samsar": {
		CompleteAfter: providersim.Duration(400 * time.Millisecond),
		Jitter:        providersim.Duration(800 * time.Millisecond),
		SlowRate:      0.3,
		SlowFor:       providersim.Duration(300 * time.Millisecond),
	}}
}

// Worker processes are SIGKILLed at random moments during a batch (samsar
// jobs, with fal and Replicate jobs mixed in) and started again. Every job still ends with exactly one result event, JOBS
// drains, and no job is paid for twice except through a recorded
// ambiguous resubmission (a kill inside the paid call).
func TestWorkersKilledDuringBatch(t *testing.T) {
	skipShort(t)
	t.Parallel()
	rng := rngFor(t)
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startSim(t, dir, withHubs(samsarKnobs()))
	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), s.url, hubEnv(t, s.url))
	replicas := []string{"a", "b", "c"}
	for _, id := range replicas {
		ws.start(id)
	}
	jobs := append(samsarJobs("kill", 60), hubJobs("kill", 10)...)
	start := time.Now()
	c.enqueue(t, jobs)

	kills := 0
	for kills < 12 && c.resultCount() < len(jobs)*9/10 {
		time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond) // a random kill moment
		id := replicas[rng.IntN(len(replicas))]
		ws.get(id).kill()
		kills++
		t.Logf("killed replica %s at %d of %d results", id, c.resultCount(), len(jobs))
		if d := rng.IntN(3); d > 0 {
			time.Sleep(time.Duration(d) * 250 * time.Millisecond) // a random outage
		}
		ws.start(id)
	}
	c.waitSettled(t, len(jobs), 2*time.Minute)
	rep := verify(t, c, submissions(t, s, append(hubs, "samsar")...), jobs, samsarKey)
	if rep.Succeeded != len(jobs) {
		t.Errorf("%d of %d jobs succeeded", rep.Succeeded, len(jobs))
	}
	t.Logf("FIGURES %s: kills=%d %s elapsed=%s", t.Name(), kills, rep, time.Since(start).Round(100*time.Millisecond))
}
