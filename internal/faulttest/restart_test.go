package faulttest

import (
	"testing"
	"time"
)

// The JetStream server (a separate process, file store) is restarted
// during a batch (samsar jobs, with fal and Replicate jobs mixed in), by
// SIGKILL or SIGTERM at random, on the same store
// directory and port. Workers and the producer reconnect; every job ends
// with exactly one result event and nothing is paid twice except through
// a recorded ambiguous resubmission.
func TestServerRestartDuringBatch(t *testing.T) {
	skipShort(t)
	t.Parallel()
	rng := rngFor(t)
	dir := t.TempDir()
	dumpLogs(t, dir)
	n := newNATSD(t, dir, "single", nil)
	n.start()
	s := startSim(t, dir, withHubs(samsarKnobs()))
	c := connect(t, n.url(), 1)
	ws := newWorkers(t, dir, n.url(), s.url, hubEnv(t, s.url))
	ws.start("a")
	ws.start("b")
	jobs := append(samsarJobs("restart", 50), hubJobs("restart", 10)...)
	start := time.Now()
	c.enqueue(t, jobs)

	// Two hard kills and one graceful stop, in a random order, at random
	// moments, each followed by a random outage.
	how := []string{"SIGKILL", "SIGKILL", "SIGTERM"}
	rng.Shuffle(len(how), func(i, j int) { how[i], how[j] = how[j], how[i] })
	restarts, kills := 0, 0
	for _, sig := range how {
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond) // a random moment
		done := c.resultCount()
		if done >= len(jobs)*9/10 {
			break
		}
		if sig == "SIGKILL" {
			n.p.kill()
			kills++
		} else {
			n.p.term()
		}
		restarts++
		outage := time.Duration(rng.IntN(1500)) * time.Millisecond
		t.Logf("server stopped with %s at %d of %d results; down for %s", sig, done, len(jobs), outage)
		time.Sleep(outage)
		n.start()
	}
	c.waitSettled(t, len(jobs), 3*time.Minute)
	rep := verify(t, c, submissions(t, s, append(hubs, "samsar")...), jobs, samsarKey)
	if rep.Succeeded != len(jobs) {
		t.Errorf("%d of %d jobs succeeded", rep.Succeeded, len(jobs))
	}
	t.Logf("FIGURES %s: restarts=%d (sigkill=%d) %s elapsed=%s", t.Name(), restarts, kills, rep, time.Since(start).Round(100*time.Millisecond))
}
