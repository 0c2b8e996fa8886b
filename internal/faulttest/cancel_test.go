package faulttest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providers/vimmerse"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

// A job cancelled while queued (no worker running yet: the request waits
// in the reelq_cancel bucket) gets one cancelled result once a worker
// sees it, its message leaves JOBS, and it never reaches the provider.
func TestCancelQueuedJobNeverReachesProvider(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, fastSamsar())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job := reelqtest.SamsarJob("cancel-queued")
	env.Enqueue(job)
	out, err := env.Client.Cancel(ctx, job.ID)
	if err != nil || out.Status != reelq.CancelRequested || out.Phase != reelq.PhaseQueued || out.StillBilled {
		t.Fatalf("cancel: %+v %v, want %q in phase queued, not billed", out, err, reelq.CancelRequested)
	}
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	after := reelqtest.SamsarJob("after-cancel")
	env.Enqueue(after)
	results := env.Results(2, time.Minute)
	if rs := results[job.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusCancelled || rs[0].Error == nil || rs[0].Error.Code != reelq.CodeCancelled {
		t.Errorf("cancelled job: results %+v, want one cancelled", rs)
	}
	if rs := results[after.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Errorf("job enqueued after the cancel: %+v, want one succeeded", rs)
	}
	waitDrained(t, env)
	if out, err := env.Client.Cancel(ctx, job.ID); err != nil || out.Status != reelq.CancelAlreadyFinished || out.Result == nil || out.Result.Status != reelq.StatusCancelled {
		t.Errorf("second cancel: %+v %v, want %q with the cancelled result", out, err, reelq.CancelAlreadyFinished)
	}
	subs := env.Sim.Stats(0)["samsar"].Submissions
	if got := subs[reelqtest.SamsarPrompt(job.ID)]; got != 0 {
		t.Errorf("the cancelled job reached the provider %d times", got)
	}
}

// A running Vimmerse job is cancelled at the provider (DELETE
// /workflow/{id}) and ends with one cancelled result.
func TestCancelRunningJobAtProvider(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"vimmerse": {CompleteAfter: providersim.Duration(time.Hour)}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"vimmerse": {}}})
	job := reelq.Job{ID: "cancel-running", Provider: "vimmerse", Batch: "test", Input: []byte(`{"title":"cancel me"}`)}
	env.Enqueue(job)
	waitfor.Job(t, env.JS, job.ID, 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseSubmitted })
	if out, err := env.Client.Cancel(ctx, job.ID); err != nil || out.Status != reelq.CancelRequested || out.StillBilled {
		t.Fatalf("cancel: %+v %v, want %q and not still billed (Vimmerse can cancel)", out, err, reelq.CancelRequested)
	}
	results := env.Results(1, time.Minute)
	if rs := results[job.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusCancelled || rs[0].ProviderTaskID == "" {
		t.Fatalf("results %+v, want one cancelled with the provider task id", rs)
	}
	waitDrained(t, env)
	st := env.Sim.Stats(0)["vimmerse"]
	if st.Requests["cancel 200"] != 1 || st.Active != 0 {
		t.Errorf("provider: cancels %d, active tasks %d; want the workflow deleted (1, 0)", st.Requests["cancel 200"], st.Active)
	}
	if got := st.Submissions[vimmerse.Title("cancel me", job.ID)]; got != 1 {
		t.Errorf("submitted %d times, want 1", got)
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamResults); got != 1 {
		t.Errorf("RESULTS holds %d events, want 1", got)
	}
}

// `enqueue cancel --batch B` cancels every unfinished job of a batch: the
// queued ones never reach the provider; the running Samsar one (an API
// without cancel) ends as cancelled at its next poll, its task left to run
// out at the provider, which the command says. One cancelled result each.
func TestCancelBatchWithEnqueueCommand(t *testing.T) {
	skipShort(t)
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(time.Hour)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 1}}})
	jobs := samsarJobs("cb", 3)
	env.Enqueue(jobs...)
	// One slot: the first job runs, the other two wait.
	waitfor.Job(t, env.JS, jobs[0].ID, 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseSubmitted })
	// The batch lists a job as running once a worker has indexed it (the
	// index is written in chunks, every 250ms); until then it is listed
	// from its message, as queued.
	if err := waitfor.Poll(30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		bj, err := env.Client.BatchJobs(ctx, "cb")
		if err != nil {
			return err
		}
		for _, b := range bj {
			if b.ID == jobs[0].ID && b.State.Phase == reelq.PhaseSubmitted {
				return nil
			}
		}
		return waitfor.ErrNotYet
	}); err != nil {
		t.Fatalf("batch cb never lists %s as submitted: %v", jobs[0].ID, err)
	}

	cmd := exec.Command(bins["enqueue"], "cancel", "--batch", "cb")
	cmd.Env = baseEnv(map[string]string{"NATS_URL": env.Server.ClientURL()})
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("enqueue cancel --batch: %v\n%s", err, out)
	}
	for _, want := range []string{
		jobs[0].ID + ": cancel requested, but it is running at a provider without a cancel API: the task finishes there and is still billed",
		"batch cb: 3 cancel requests made, 0 already finished; 1 job is running at a provider without a cancel API (still billed)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("enqueue cancel said\n%s\nwant a line\n%s", out, want)
		}
	}
	results := env.Results(3, time.Minute)
	waitDrained(t, env)
	subs := env.Sim.Stats(0)["samsar"].Submissions
	for i, j := range jobs {
		if rs := results[j.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusCancelled {
			t.Errorf("job %s: %+v, want one cancelled result", j.ID, rs)
		}
		want := 0
		if i == 0 {
			want = 1
		}
		if got := subs[samsarPrompt(j.ID)]; got != want {
			t.Errorf("job %s submitted %d times, want %d", j.ID, got, want)
		}
	}
}

// If the cancelled result of a queued job cannot be published (here:
// RESULTS is gone for a moment), the job's state already says finished
// and its message stays in JOBS, so the worker that gets the message
// publishes the stored cancelled result. Nothing reaches the provider.
func TestCancelWhenResultPublishFails(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, fastSamsar())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A worker that carries out cancel requests but does not run Samsar,
	// so the job stays queued.
	canceller := env.StartWorker(reelqtest.WorkerOptions{ID: "canceller", Providers: map[string]reelqtest.Settings{"vimmerse": {}}})
	// Its canceller reads requests made after its durable consumer exists.
	if err := waitfor.Poll(30*time.Second, func() error {
		_, err := env.JS.Consumer(ctx, "KV_"+wire.BucketCancel, "reelq-canceller")
		return err
	}); err != nil {
		t.Fatalf("the canceller's consumer: %v", err)
	}
	job := reelqtest.SamsarJob("cancel-unpublished")
	env.Enqueue(job)
	if err := env.JS.DeleteStream(ctx, queue.StreamResults); err != nil {
		t.Fatal(err)
	}
	if out, err := env.Client.Cancel(ctx, job.ID); err != nil || out.Status != reelq.CancelRequested {
		t.Fatalf("cancel: %+v %v", out, err)
	}
	waitfor.Job(t, env.JS, job.ID, 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseFinished })
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); got != 1 {
		t.Fatalf("JOBS holds %d messages after a cancel whose result was not published, want 1", got)
	}
	if err := canceller.Stop(); err != nil {
		t.Fatal(err)
	}
	natstest.Setup(t, env.JS)
	env.StartWorker(reelqtest.WorkerOptions{ID: "w2", Providers: map[string]reelqtest.Settings{"samsar": {}}})
	results := env.Results(1, time.Minute)
	waitDrained(t, env)
	if rs := results[job.ID]; len(rs) != 1 || rs[0].Status != reelq.StatusCancelled {
		t.Errorf("results %+v, want one cancelled", rs)
	}
	if got := env.Sim.Stats(0)["samsar"].Submissions[reelqtest.SamsarPrompt(job.ID)]; got != 0 {
		t.Errorf("the cancelled job reached the provider %d times", got)
	}
}
