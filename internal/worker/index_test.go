package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
)

// A job's batch lists it before its result can be seen: a client that
// saw the result (and the job's ack removed it from JOBS) finds it in
// BatchJobs, however fast the job was. So does a job cancelled while it
// was still queued.
func TestBatchListsJobBeforeItsResult(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	after, err := env.Client.ResultsSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {PollInterval: time.Millisecond}}})
	const n = 20
	jobs := reelqtest.Jobs(n, "fast", reelqtest.SamsarJob)
	env.Enqueue(jobs...)
	seen := 0
	for d, err := range env.Client.Results(ctx, reelq.ResultsOptions{After: after, Follow: true, FromNow: after == 0, Provider: "samsar"}) {
		if err != nil {
			t.Fatal(err)
		}
		r := d.Result
		// Wait for the ack too: then only the index can list the job.
		waitfor.Until(t, time.Minute, "the result's job to be acknowledged", func() bool { return env.ConsumerInfo("samsar").NumAckPending == 0 })
		list, err := env.Client.BatchJobs(ctx, "test")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, bj := range list {
			found = found || bj.ID == r.ID
		}
		if !found {
			t.Fatalf("result of %s seen, but batch test lists %d jobs without it", r.ID, len(list))
		}
		if seen++; seen == n {
			break
		}
	}

	// Cancelled while queued (the provider is paused): listed too.
	if _, err := env.Inspector.Pause(ctx, "samsar", "test"); err != nil {
		t.Fatal(err)
	}
	q := reelqtest.SamsarJob("queued-then-cancelled")
	env.Enqueue(q)
	if _, err := env.Client.Cancel(ctx, q.ID); err != nil {
		t.Fatal(err)
	}
	if r, err := env.Client.Wait(ctx, q.ID); err != nil || r.Status != reelq.StatusCancelled {
		t.Fatalf("cancelled job: %+v, %v", r, err)
	}
	list, err := env.Client.BatchJobs(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, bj := range list {
		if bj.ID == q.ID {
			return
		}
	}
	t.Fatalf("batch test lists %d jobs without the job cancelled while queued", len(list))
}

// A cancel request made before any worker ran is carried out by the first
// one, even if no worker runs the job's provider (the canceller used to
// start at new requests only).
func TestCancelRequestBeforeAnyWorker(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j := reelqtest.SamsarJob("cancel-early")
	env.Enqueue(j)
	if _, err := env.Client.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"vimmerse": {}}})
	r, err := env.Client.Wait(ctx, j.ID)
	if err != nil || r.Status != reelq.StatusCancelled {
		t.Fatalf("result %+v, %v; want cancelled by the canceller", r, err)
	}
	if n := totalSubmissions(env, "samsar"); n != 0 {
		t.Fatalf("%d samsar submissions", n)
	}
}
