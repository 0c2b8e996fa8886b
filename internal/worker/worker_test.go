package worker_test

import (
	"context"
	"fmt"
	"github.com/reelq/reelq"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/worker"
)

func fastSamsar() map[string]providersim.Knobs {
	return map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(100 * time.Millisecond), Jitter: providersim.Duration(100 * time.Millisecond)}}
}

// A batch of jobs produces exactly one succeeded result each, and the
// provider saw exactly one paid submission per job.
func TestBatchOneResultPerJob(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, fastSamsar())
	w := env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	const n = 30
	var jobs []reelq.Job
	for i := range n {
		jobs = append(jobs, reelqtest.SamsarJob(fmt.Sprintf("batch-%02d", i)))
	}
	env.Enqueue(jobs...)
	results := env.Results(n, time.Minute)
	subs := env.Sim.Stats(0)["samsar"].Submissions
	for _, j := range jobs {
		rs := results[j.ID]
		if len(rs) != 1 {
			t.Fatalf("job %s: %d results, want 1", j.ID, len(rs))
		}
		r := rs[0]
		if r.Status != reelq.StatusSucceeded || len(r.Outputs) == 0 || r.ProviderTaskID == "" {
			t.Errorf("job %s: %+v, want succeeded with outputs and a task id", j.ID, r)
		}
		if r.Cost == nil || r.Cost.Amount != 50 || r.Cost.Unit != "credits" {
			t.Errorf("job %s: cost %+v, want 50 credits (10/s x 5 s)", j.ID, r.Cost)
		}
		if r.Batch != "test" || r.Attempts != 1 || r.EnqueuedAt == nil || r.SubmittedAt == nil {
			t.Errorf("job %s: batch/attempts/timestamps wrong: %+v", j.ID, r)
		}
		if got := subs[reelqtest.SamsarPrompt(j.ID)]; got != 1 {
			t.Errorf("job %s submitted %d times, want 1", j.ID, got)
		}
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamResults); got != n {
		t.Errorf("RESULTS holds %d messages, want %d", got, n)
	}
	// A job is acked just after its result is published: stop the worker,
	// which returns once every job has settled, before counting JOBS.
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); got != 0 {
		t.Errorf("JOBS still holds %d messages, want 0", got)
	}
}

// A job whose input breaks the provider's rules gets one failed result,
// never reaches the provider, and is not redelivered.
func TestInvalidJobFailsOnceWithoutRetry(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, fastSamsar())
	w := env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	long := make([]byte, 501)
	for i := range long {
		long[i] = 'x'
	}
	bad := reelq.Job{ID: "too-long", Provider: "samsar", Input: []byte(`{"prompt":"` + string(long) + `","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)}
	// Published directly, as a producer that skipped validation would.
	msg := reelqtest.JobMsg(&bad)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := env.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(bad.ID)); err != nil {
		t.Fatal(err)
	}
	// And a message that is not JSON at all.
	if _, err := env.JS.Publish(ctx, "jobs.samsar.not-json", []byte("{oops"), jetstream.WithMsgID("not-json")); err != nil {
		t.Fatal(err)
	}
	results := env.Results(2, time.Minute)
	r := results["too-long"]
	if len(r) != 1 || r[0].Status != reelq.StatusFailed || r[0].Error == nil || r[0].Error.Code != "invalid_input" || r[0].Attempts != 1 {
		t.Fatalf("too-long: %+v, want one failed result with code invalid_input after 1 attempt", r)
	}
	if want := "input.prompt is 501 characters; the limit is 500"; !strings.Contains(r[0].Error.Message, want) {
		t.Errorf("error %q does not say %q", r[0].Error.Message, want)
	}
	// The unreadable message is answered under its stream sequence, never
	// under the id its subject claims.
	if results["not-json"] != nil {
		t.Fatalf("a result was published under the claimed id not-json: %+v", results["not-json"])
	}
	nj := reelqtest.SeqResult(results)
	if len(nj) != 1 || nj[0].Status != reelq.StatusFailed || nj[0].Error.Code != "invalid_request" {
		t.Fatalf("not-json: %+v, want one failed result with code invalid_request", nj)
	}
	if got := env.Sim.Stats(0)["samsar"].TotalRequests; got != 0 {
		t.Errorf("provider saw %d requests, want 0", got)
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamDLQ); got != 1 {
		t.Errorf("DLQ holds %d messages, want 1 (the unparseable one)", got)
	}
	if err := w.Stop(); err != nil { // every job settled (acked) once it returns
		t.Fatal(err)
	}
	cons, err := env.JS.Consumer(ctx, queue.StreamJobs, "samsar")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("consumer pending=%d ack_pending=%d redelivered=%d, want all 0", info.NumPending, info.NumAckPending, info.NumRedelivered)
	}
}

// Two worker replicas on one server share a batch: both do work, and no
// job is done twice.
func TestTwoReplicasShareWork(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(300 * time.Millisecond)}})
	settings := map[string]reelqtest.Settings{"samsar": {MaxInflight: 4, Slots: 2}}
	env.StartWorker(reelqtest.WorkerOptions{ID: "replica-a", Providers: settings})
	env.StartWorker(reelqtest.WorkerOptions{ID: "replica-b", Providers: settings})
	const n = 24
	var jobs []reelq.Job
	for i := range n {
		jobs = append(jobs, reelqtest.SamsarJob(fmt.Sprintf("share-%02d", i)))
	}
	env.Enqueue(jobs...)
	results := env.Results(n, time.Minute)
	byWorker := map[string]int{}
	ctx := context.Background()
	for _, j := range jobs {
		if len(results[j.ID]) != 1 || results[j.ID][0].Status != reelq.StatusSucceeded {
			t.Fatalf("job %s: %+v", j.ID, results[j.ID])
		}
		st, _, err := env.States.Get(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		byWorker[st.Worker]++
	}
	if byWorker["replica-a"] == 0 || byWorker["replica-b"] == 0 || byWorker["replica-a"]+byWorker["replica-b"] != n {
		t.Errorf("jobs per replica %v, want both > 0 and %d in all", byWorker, n)
	}
	for prompt, c := range env.Sim.Stats(0)["samsar"].Submissions {
		if c != 1 {
			t.Errorf("%q submitted %d times", prompt, c)
		}
	}
	if max := env.Sim.Stats(0)["samsar"].MaxActive; max > 4 {
		t.Errorf("provider saw %d tasks at once, cap is 4", max)
	}
}

// Shutdown stops intake, gives running jobs ShutdownTimeout, then returns
// the rest to the queue without using an attempt; the next worker resumes
// polling their tasks instead of submitting (paying) again.
func TestShutdownReturnsRunningJobsWithoutRepaying(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(3 * time.Second)}})
	settings := map[string]reelqtest.Settings{"samsar": {MaxInflight: 4, PollInterval: 50 * time.Millisecond}}
	first := env.StartWorker(reelqtest.WorkerOptions{ID: "first", Providers: settings,
		Config: worker.Config{ShutdownTimeout: 200 * time.Millisecond}})
	const n = 4
	var jobs []reelq.Job
	for i := range n {
		jobs = append(jobs, reelqtest.SamsarJob(fmt.Sprintf("shutdown-%d", i)))
	}
	env.Enqueue(jobs...)
	// Wait until every job has its provider task (the paid call is done).
	for _, j := range jobs {
		waitfor.Job(t, env.JS, j.ID, 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseSubmitted })
	}
	// Stop returns once ShutdownTimeout cut the jobs short, polling no
	// more: no result, though the tasks run on at the provider.
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := natstest.StreamMsgs(t, env.JS, queue.StreamResults); n != 0 {
		t.Fatalf("%d results before the tasks finished", n)
	}
	env.StartWorker(reelqtest.WorkerOptions{ID: "second", Providers: settings})
	results := env.Results(n, time.Minute)
	for _, j := range jobs {
		r := results[j.ID]
		if len(r) != 1 || r[0].Status != reelq.StatusSucceeded || r[0].Attempts != 1 {
			t.Errorf("job %s: %+v, want one success after 1 attempt (shutdown does not count)", j.ID, r)
		}
	}
	for _, j := range jobs {
		if c := env.Sim.Stats(0)["samsar"].Submissions[reelqtest.SamsarPrompt(j.ID)]; c != 1 {
			t.Errorf("job %s submitted %d times, want 1: the second worker must resume the task", j.ID, c)
		}
	}
}
