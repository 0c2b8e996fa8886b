package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/worker"
)

// An operator's resolve adopts only a task that is this job's: one
// recorded by another job is refused (the task index), one the provider
// does not know is refused (it is polled once first), and a Vimmerse
// workflow whose title names another job is refused. The job stays held
// and the other job is untouched; its own task is then adopted. (Before,
// a held Samsar job adopted a finished job's video, and cancelling a
// Vimmerse job resolved with a stranger's workflow deleted that one.)
func TestResolveRefusesAnotherJobsTask(t *testing.T) {
	t.Parallel()
	quick := providersim.Knobs{CompleteAfter: providersim.Duration(50 * time.Millisecond)}
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": quick, "vimmerse": quick})
	hold := reelqtest.Settings{RequestTimeout: 300 * time.Millisecond, Ambiguous: worker.AmbiguousHold, AmbiguousPauseAfter: -1, PollInterval: 20 * time.Millisecond}
	run := env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": hold, "vimmerse": hold},
		Config: worker.Config{RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}})

	env.Enqueue(reelqtest.SamsarJob("done-1"))
	done := env.Results(1, time.Minute)["done-1"]
	if len(done) != 1 || done[0].Status != reelq.StatusSucceeded || done[0].ProviderTaskID == "" {
		t.Fatalf("done-1: %+v, want one success with a task", done)
	}
	// From now on every create answers after the request timeout: the
	// next jobs are held for an operator.
	for _, p := range []string{"samsar", "vimmerse"} {
		k := env.Sim.Knobs(p)
		k.CreateDelayMin = providersim.Duration(1500 * time.Millisecond)
		if err := env.Sim.SetKnobs(p, k); err != nil {
			t.Fatal(err)
		}
	}
	env.Enqueue(reelqtest.SamsarJob("held-s"), reelqtest.VimmerseJob("held-v"))
	waitfor.Job(t, env.JS, "held-s", 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseHeld })
	waitfor.Job(t, env.JS, "held-v", 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseHeld })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// reelq_jobs_held counts them (HeldJobs backs it), and counts them no
	// more once resolved (below).
	held := func(want int) func() error {
		return func() error {
			n, err := run.W.HeldJobs(ctx)
			if err != nil || n["samsar"] != want || n["vimmerse"] != want {
				return fmt.Errorf("held %v (%v), want %d each", n, err, want)
			}
			return nil
		}
	}
	waitfor.Until(t, 15*time.Second, "both jobs counted held", held(1))
	// A Vimmerse workflow made for another job, never recorded by reelq.
	stranger, err := env.Provider("vimmerse").Submit(ctx, providers.Request{JobID: "someone-else", Input: reelqtest.VimmerseJob("x").Input})
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		job, task, why string
	}{
		{"held-s", done[0].ProviderTaskID, "is job done-1's"},
		{"held-s", "no-such-task", "samsar does not know task no-such-task"},
		{"held-v", stranger.ID, "names job someone-else"},
	}
	for _, r := range refused {
		st, err := env.Inspector.Resolve(ctx, r.job, inspect.ResolveOptions{TaskID: r.task})
		if !errors.Is(err, inspect.ErrResolveRefused) || !strings.Contains(err.Error(), r.why) {
			t.Fatalf("resolve %s with task %s: %v (state %+v), want refused: %s", r.job, r.task, err, st, r.why)
		}
		if st.Phase != reelq.PhaseHeld || st.Task != nil {
			t.Errorf("%s after a refused resolve: phase %s, task %+v; want held, no task", r.job, st.Phase, st.Task)
		}
	}
	// Their own tasks are adopted.
	own := map[string]string{
		"held-s": simTaskFor(t, env, "samsar", reelqtest.SamsarPrompt("held-s")),
		"held-v": simTaskFor(t, env, "vimmerse", reelqtest.VimmerseTitle("held-v")),
	}
	for id, task := range own {
		if _, err := env.Inspector.Resolve(ctx, id, inspect.ResolveOptions{TaskID: task}); err != nil {
			t.Fatalf("resolve %s with its own task %s: %v", id, task, err)
		}
	}
	results := env.Results(3, time.Minute)
	for id, task := range own {
		if rs := results[id]; len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || rs[0].ProviderTaskID != task {
			t.Errorf("%s: %+v, want one success with its own task %s", id, rs, task)
		}
	}
	if rs := results["done-1"]; len(rs) != 1 {
		t.Errorf("done-1 has %d results, want its one", len(rs))
	}
	if err := held(0)(); err != nil {
		t.Errorf("after resolving: %v", err)
	}
	if n := env.Sim.Stats(0)["vimmerse"].Requests["cancel 200"]; n != 0 {
		t.Errorf("the provider saw %d workflow deletions, want none", n)
	}
}
