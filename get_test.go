package reelq_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/wire"
)

// A job that leaves the queue between Get's read of its state and its read
// of the queue (a fast job, or a cancel: its state is written, then its
// message removed) is not reported unknown: Get returns its state and Wait
// its result. Both reads used to miss it, so a backend calling Wait right
// after Enqueue could be told its job did not exist.
func TestGetFindsAJobThatLeftTheQueueBetweenReads(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, call := range []string{"Get", "Wait"} {
		t.Run(call, func(t *testing.T) {
			job := reelqtest.SamsarJob("between-" + call)
			env.Enqueue(job)
			fired := false
			reelq.SetBetweenReads(env.Client, func(id string) {
				if id == job.ID && !fired {
					fired = true
					finishOutsideTheQueue(t, env, job)
				}
			})
			defer reelq.SetBetweenReads(env.Client, nil)
			switch call {
			case "Get":
				st, err := env.Client.Get(ctx, job.ID)
				if err != nil || st.Phase != reelq.PhaseFinished {
					t.Fatalf("Get = %+v, %v; want the finished state", st, err)
				}
			case "Wait":
				r, err := env.Client.Wait(ctx, job.ID)
				if err != nil || r.Status != reelq.StatusCancelled {
					t.Fatalf("Wait = %+v, %v; want the cancelled result", r, err)
				}
			}
			if !fired {
				t.Fatal("Get never read the queue: the test did not test")
			}
		})
	}
	if _, err := env.Client.Get(ctx, "never-enqueued"); !errors.Is(err, reelq.ErrNotFound) {
		t.Errorf("Get of an unknown id = %v, want ErrNotFound", err)
	}
}

// finishOutsideTheQueue does what a canceller does to a queued job: it
// writes the job's finished state, then removes its message from JOBS.
func finishOutsideTheQueue(t *testing.T, env *reelqtest.Env, job reelq.Job) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, _ := json.Marshal(reelq.Result{ID: job.ID, Provider: job.Provider, Batch: job.Batch, Status: reelq.StatusCancelled, Run: 1})
	st := jobstate.State{ID: job.ID, Provider: job.Provider, Batch: job.Batch, Digest: job.Digest(), Run: 1,
		Input: job.Input, Phase: reelq.PhaseFinished, Result: res}
	if _, err := env.States.Create(ctx, &st); err != nil {
		t.Fatal(err)
	}
	s, err := env.JS.Stream(ctx, wire.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(wire.JobSubject(job.Provider, "", job.ID))); err != nil {
		t.Fatal(err)
	}
}

// Get and Wait on an unknown id say which id: a service waiting on many
// jobs can tell which one was never published.
func TestUnknownIDIsNamed(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, werr := env.Client.Wait(ctx, "never-published-7")
	_, gerr := env.Client.Get(ctx, "never-published-7")
	for what, err := range map[string]error{"Wait": werr, "Get": gerr} {
		if !errors.Is(err, reelq.ErrNotFound) || err == nil || !strings.Contains(err.Error(), `"never-published-7"`) {
			t.Errorf("%s(unknown) = %v, want ErrNotFound naming the id", what, err)
		}
	}
}
