package faulttest

import (
	"context"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providers/vimmerse"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
)

// A job cancelled while queued gets one cancelled result at once, its
// message leaves JOBS, and it never reaches the provider, even with a
// worker running afterwards.
func TestCancelQueuedJobNeverReachesProvider(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, fastSamsar())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job := reelqtest.SamsarJob("cancel-queued")
	env.Enqueue(job)
	cn := &queue.Canceller{JS: env.JS, States: env.States, By: "test"}
	if out, err := cn.Cancel(ctx, job.ID); err != nil || out != queue.CancelDone {
		t.Fatalf("cancel: %q %v, want %q", out, err, queue.CancelDone)
	}
	if out, err := cn.Cancel(ctx, job.ID); err != nil || !strings.HasPrefix(out, queue.CancelTooLate) {
		t.Fatalf("second cancel: %q %v, want %q", out, err, queue.CancelTooLate)
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); got != 0 {
		t.Errorf("JOBS holds %d messages after the cancel, want 0", got)
	}
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	after := reelqtest.SamsarJob("after-cancel")
	env.Enqueue(after)
	results := env.Results(2, time.Minute)
	if rs := results[job.ID]; len(rs) != 1 || rs[0].Status != queue.StatusCancelled || rs[0].Error == nil || rs[0].Error.Code != "cancelled" {
		t.Errorf("cancelled job: results %+v, want one cancelled", rs)
	}
	if rs := results[after.ID]; len(rs) != 1 || rs[0].Status != queue.StatusSucceeded {
		t.Errorf("job enqueued after the cancel: %+v, want one succeeded", rs)
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
	job := queue.Job{ID: "cancel-running", Provider: "vimmerse", Batch: "test", Input: []byte(`{"title":"cancel me"}`)}
	env.Enqueue(job)
	waitState(t, env, job.ID, func(st *jobstate.State) bool { return st.Phase == jobstate.Submitted })
	cn := &queue.Canceller{JS: env.JS, States: env.States, By: "test"}
	if out, err := cn.Cancel(ctx, job.ID); err != nil || out != queue.CancelRequested {
		t.Fatalf("cancel: %q %v, want %q", out, err, queue.CancelRequested)
	}
	results := env.Results(1, time.Minute)
	if rs := results[job.ID]; len(rs) != 1 || rs[0].Status != queue.StatusCancelled || rs[0].ProviderTaskID == "" {
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
// out at the provider. One cancelled result each.
func TestCancelBatchWithEnqueueCommand(t *testing.T) {
	skipShort(t)
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(time.Hour)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 1}}})
	jobs := samsarJobs("cb", 3)
	env.Enqueue(jobs...)
	// One slot: the first job runs, the other two wait.
	waitState(t, env, jobs[0].ID, func(st *jobstate.State) bool { return st.Phase == jobstate.Submitted })

	cmd := exec.Command(bins["enqueue"], "cancel", "--batch", "cb")
	cmd.Env = baseEnv(map[string]string{"NATS_URL": env.Server.ClientURL()})
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("enqueue cancel --batch: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(lines)
	want := []string{jobs[0].ID + ": " + queue.CancelRequested, jobs[1].ID + ": " + queue.CancelDone, jobs[2].ID + ": " + queue.CancelDone}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("enqueue cancel said\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
	results := env.Results(3, time.Minute)
	waitDrained(t, env)
	subs := env.Sim.Stats(0)["samsar"].Submissions
	for i, j := range jobs {
		if rs := results[j.ID]; len(rs) != 1 || rs[0].Status != queue.StatusCancelled {
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

// waitState waits until job id's state satisfies ok.
func waitState(t testing.TB, env *reelqtest.Env, id string, ok func(*jobstate.State) bool) {
	t.Helper()
	if err := eventually(30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, _, err := env.States.Get(ctx, id)
		if err != nil {
			return err
		}
		if !ok(st) {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("job %s: %v", id, err)
	}
}

// If the cancelled result cannot be published (here: RESULTS is gone for
// a moment), the queued message stays in JOBS, so the worker that gets it
// finds the finished state and publishes the stored cancelled result.
// (The Canceller used to purge the message regardless, leaving the job
// with no result event at all.)
func TestCancelWhenResultPublishFails(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, fastSamsar())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job := reelqtest.SamsarJob("cancel-unpublished")
	env.Enqueue(job)
	if err := env.JS.DeleteStream(ctx, queue.StreamResults); err != nil {
		t.Fatal(err)
	}
	cn := &queue.Canceller{JS: env.JS, States: env.States, By: "test"}
	if _, err := cn.Cancel(ctx, job.ID); err == nil {
		t.Fatal("cancel succeeded without a RESULTS stream")
	}
	if got := natstest.StreamMsgs(t, env.JS, queue.StreamJobs); got != 1 {
		t.Fatalf("JOBS holds %d messages after a cancel whose result was not published, want 1", got)
	}
	natstest.Setup(t, env.JS)
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	results := env.Results(1, time.Minute)
	waitDrained(t, env)
	if rs := results[job.ID]; len(rs) != 1 || rs[0].Status != queue.StatusCancelled {
		t.Errorf("results %+v, want one cancelled", rs)
	}
	if got := env.Sim.Stats(0)["samsar"].Submissions[reelqtest.SamsarPrompt(job.ID)]; got != 0 {
		t.Errorf("the cancelled job reached the provider %d times", got)
	}
}
