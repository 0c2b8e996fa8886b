package faulttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/waitfor"
)

// A 3-node cluster (three server processes) runs every stream and bucket
// with three replicas (REELQ_STREAM_REPLICAS=3). Mid-batch the JOBS
// stream leader is SIGKILLed; later it is restarted on its store and must
// catch up. Every job ends with exactly one result event and nothing is
// paid twice except through a recorded ambiguous resubmission.
func TestClusterLosesStreamLeader(t *testing.T) {
	skipShort(t)
	t.Parallel()
	rng := rngFor(t)
	dir := t.TempDir()
	dumpLogs(t, dir)
	names := []string{"n1", "n2", "n3"}
	routePorts := make([]int, len(names))
	var routes []string
	for i := range names {
		routePorts[i] = freePort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i]))
	}
	nodes := map[string]*natsd{}
	var urls []string
	for i, name := range names {
		n := newNATSD(t, dir, name, &clusterConf{Name: "faulttest", Port: routePorts[i], Routes: routes})
		n.start()
		nodes[name] = n
		urls = append(urls, n.url())
	}
	url := strings.Join(urls, ",")
	// Longer tasks than elsewhere, so the batch outlasts the election and
	// the old leader's return.
	knobs := samsarKnobs()
	k := knobs["samsar"]
	k.CompleteAfter, k.Jitter = providersim.Duration(time.Second), providersim.Duration(2*time.Second)
	knobs["samsar"] = k
	s := startSim(t, dir, knobs)
	c := connect(t, url, 3)
	ws := newWorkers(t, dir, url, s.url, map[string]string{"REELQ_STREAM_REPLICAS": "3"})
	ws.start("a")
	ws.start("b")
	jobs := samsarJobs("cluster", 60)
	start := time.Now()
	c.enqueue(t, jobs)

	// Kill the JOBS leader once 20-50% of the jobs are done.
	killAt := len(jobs) * (20 + rng.IntN(31)) / 100
	waitResults(t, c, killAt, time.Minute)
	leader := c.streamLeader(t, queue.StreamJobs, "")
	t.Logf("SIGKILL of JOBS stream leader %s at %d of %d results", leader, c.resultCount(), len(jobs))
	nodes[leader].p.kill()
	killedAt := time.Now()
	newLeader := c.streamLeader(t, queue.StreamJobs, leader)
	failover := time.Since(killedAt).Round(100 * time.Millisecond)
	t.Logf("new JOBS leader %s after %s, at %d of %d results", newLeader, failover, c.resultCount(), len(jobs))

	// Bring the old leader back 1-3s later, while the batch runs on.
	time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond) // a random moment
	t.Logf("restarting %s at %d of %d results", leader, c.resultCount(), len(jobs))
	nodes[leader].start()

	c.waitSettled(t, len(jobs), 3*time.Minute)
	rep := verify(t, c, s.stats(t, "samsar").Submissions, jobs, samsarKey)
	if rep.Succeeded != len(jobs) {
		t.Errorf("%d of %d jobs succeeded", rep.Succeeded, len(jobs))
	}
	// The restarted node catches up: every replica of JOBS is current.
	if err := waitfor.Poll(time.Minute, func() error { return c.replicasCurrent(queue.StreamJobs, 3) }); err != nil {
		t.Errorf("JOBS replicas after the restart: %v", err)
	}
	t.Logf("FIGURES %s: killed_leader=%s failover=%s %s elapsed=%s", t.Name(), leader,
		failover, rep, time.Since(start).Round(100*time.Millisecond))
}

// waitResults waits until at least n jobs have a result event.
func waitResults(t testing.TB, c *client, n int, timeout time.Duration) {
	t.Helper()
	if err := waitfor.Poll(timeout, func() error {
		if got := c.resultCount(); got < n {
			return fmt.Errorf("%d of %d results", got, n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// streamLeader waits for stream to have a leader other than not.
func (c *client) streamLeader(t testing.TB, stream, not string) string {
	t.Helper()
	var leader string
	err := waitfor.Poll(time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := c.js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == not {
			return fmt.Errorf("stream %s has no new leader yet", stream)
		}
		leader = info.Cluster.Leader
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return leader
}

// replicasCurrent reports whether stream has a leader and n-1 current
// followers.
func (c *client) replicasCurrent(stream string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return errors.New("no leader")
	}
	current := 0
	for _, r := range info.Cluster.Replicas {
		if r.Current && !r.Offline {
			current++
		}
	}
	if current != n-1 {
		return fmt.Errorf("leader %s with %d current followers, want %d: %+v", info.Cluster.Leader, current, n-1, replicaStates(info.Cluster.Replicas))
	}
	return nil
}

func replicaStates(rs []*jetstream.PeerInfo) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s current=%v offline=%v lag=%d", r.Name, r.Current, r.Offline, r.Lag))
	}
	return out
}
