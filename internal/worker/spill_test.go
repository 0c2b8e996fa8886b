package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
)

// A replica whose slots are full of long jobs hands the jobs it holds
// waiting to a replica with free slots, even when it holds fewer than its
// own slots waiting: cap 8 split 4 and 4, replica a pulls all 8 jobs
// (runs 4, holds 4), then replica b starts; b must submit the other 4,
// each exactly once, and the provider never sees more than the cap.
func TestFullReplicaHandsHeldJobsToIdleReplica(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(time.Hour)}})
	settings := map[string]reelqtest.Settings{"samsar": {MaxInflight: 8, Slots: 4, PollInterval: 100 * time.Millisecond}}
	env.StartWorker(reelqtest.WorkerOptions{ID: "replica-a", Providers: settings})
	const n = 8
	var jobs []reelq.Job
	for i := range n {
		jobs = append(jobs, reelqtest.SamsarJob(fmt.Sprintf("spill-%d", i)))
	}
	env.Enqueue(jobs...)
	ctx := context.Background()
	waitfor.Until(t, 30*time.Second, "replica a to hold every job", func() error {
		cons, err := env.JS.Consumer(ctx, queue.StreamJobs, "samsar")
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != n {
			return fmt.Errorf("pending=%d ack_pending=%d", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	waitfor.Until(t, 30*time.Second, "replica a to run its 4 slots", func() bool {
		return env.Sim.Stats(0)["samsar"].Active == 4
	})
	env.StartWorker(reelqtest.WorkerOptions{ID: "replica-b", Providers: settings})
	byWorker := map[string]int{}
	for _, j := range jobs {
		st := waitfor.Job(t, env.JS, j.ID, 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseSubmitted })
		byWorker[st.Worker]++
	}
	if byWorker["replica-a"] != 4 || byWorker["replica-b"] != 4 {
		t.Errorf("jobs submitted per replica %v, want 4 each", byWorker)
	}
	stats := env.Sim.Stats(0)["samsar"]
	for _, j := range jobs {
		if c := stats.Submissions[reelqtest.SamsarPrompt(j.ID)]; c != 1 {
			t.Errorf("job %s submitted %d times, want 1", j.ID, c)
		}
	}
	if stats.MaxActive > 8 {
		t.Errorf("provider saw %d tasks at once, cap is 8", stats.MaxActive)
	}
}
