package jobstate_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/queue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func finished(run int, status string) *jobstate.State {
	r := reelq.Result{ID: "j", Provider: "samsar", Run: run, Status: status}
	return &jobstate.State{ID: "j", Provider: "samsar", Run: run, Phase: reelq.PhaseFinished, Result: []byte(mustJSON(r))}
}

func mustJSON(r reelq.Result) string {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func at(p reelq.Phase, run int) *jobstate.State {
	return &jobstate.State{ID: "j", Provider: "samsar", Run: run, Phase: p}
}

// Every transition the phase rules allow, and the ones they forbid.
func TestAllowed(t *testing.T) {
	t.Parallel()
	q, sg, sd, h, ar, f := reelq.PhaseQueued, reelq.PhaseSubmitting, reelq.PhaseSubmitted, reelq.PhaseHeld, reelq.PhaseArchiving, reelq.PhaseFinished
	type tc struct {
		name     string
		from, to *jobstate.State
		ok       bool
	}
	cases := []tc{
		{"new job at run 1", nil, at(sg, 1), true},
		{"new job at run 2", nil, at(sg, 2), false},
		{"failed run retried queued", finished(1, reelq.StatusFailed), at(q, 2), true},
		{"cancelled run retried submitting", finished(1, reelq.StatusCancelled), at(sg, 2), true},
		{"succeeded run never retried", finished(1, reelq.StatusSucceeded), at(q, 2), false},
		{"retry skipping a run", finished(1, reelq.StatusFailed), at(q, 3), false},
		{"new run starting submitted", finished(1, reelq.StatusFailed), at(sd, 2), false},
		{"new run before the old finished", at(sd, 1), at(q, 2), false},
		{"run going back", at(q, 2), at(q, 1), false},
	}
	phases := []reelq.Phase{q, sg, sd, h, ar, f}
	allowed := map[[2]reelq.Phase]bool{
		{q, q}: true, {q, sg}: true, {q, h}: true, {q, f}: true,
		{sg, sg}: true, {sg, sd}: true, {sg, q}: true, {sg, h}: true, {sg, f}: true,
		{sd, sd}: true, {sd, q}: true, {sd, ar}: true, {sd, f}: true,
		{h, h}: true, {h, sd}: true, {h, q}: true, {h, f}: true,
		{ar, ar}: true, {ar, q}: true, {ar, f}: true, // archiving -> queued: an output failed its check, P_OUTPUT_POLICY=retry
		{f, f}: true,
	}
	for _, a := range phases {
		for _, b := range phases {
			cases = append(cases, tc{string(a) + " -> " + string(b), at(a, 1), at(b, 1), allowed[[2]reelq.Phase{a, b}]})
		}
	}
	for _, c := range cases {
		err := jobstate.Allowed(c.from, c.to)
		if c.ok && err != nil {
			t.Errorf("%s: %v, want allowed", c.name, err)
		}
		if !c.ok && !errors.Is(err, jobstate.ErrInvalidTransition) {
			t.Errorf("%s: %v, want ErrInvalidTransition", c.name, err)
		}
	}
}

func store(t *testing.T) *jobstate.Store {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Server(t))
	natstest.Setup(t, js)
	kv, err := js.KeyValue(context.Background(), queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	return jobstate.New(js, kv)
}

// Compare-and-set: create once, update only from the revision read, and
// every refusal is the right error.
func TestStoreCompareAndSet(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := store(t)

	if _, _, err := s.Get(ctx, "j"); !errors.Is(err, jobstate.ErrNotFound) {
		t.Fatalf("Get of a new id: %v, want ErrNotFound", err)
	}
	rev, err := s.Create(ctx, at(reelq.PhaseSubmitting, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, at(reelq.PhaseQueued, 1)); !errors.Is(err, jobstate.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	cur, grev, err := s.Get(ctx, "j")
	if err != nil || grev != rev || cur.Phase != reelq.PhaseSubmitting {
		t.Fatalf("Get = %+v rev %d err %v, want submitting at rev %d", cur, grev, err, rev)
	}
	sub := *cur
	sub.Phase, sub.Task = reelq.PhaseSubmitted, &reelq.Task{ID: "t1"}
	rev2, err := s.Update(ctx, cur, &sub, rev)
	if err != nil {
		t.Fatal(err)
	}
	// A second writer still holding the old revision loses, whatever it writes.
	other := *cur
	other.Phase, other.Task = reelq.PhaseSubmitted, &reelq.Task{ID: "t2"}
	if _, err := s.Update(ctx, cur, &other, rev); !errors.Is(err, jobstate.ErrConflict) {
		t.Fatalf("stale Update: %v, want ErrConflict", err)
	}
	// A forbidden move is refused before anything is written.
	back := sub
	back.Phase = reelq.PhaseSubmitting
	if _, err := s.Update(ctx, &sub, &back, rev2); !errors.Is(err, jobstate.ErrInvalidTransition) {
		t.Fatalf("submitted -> submitting: %v, want ErrInvalidTransition", err)
	}
	got, _, _ := s.Get(ctx, "j")
	if got.Task == nil || got.Task.ID != "t1" {
		t.Fatalf("task = %+v, want t1 (the stale write must not land)", got.Task)
	}
	// Asynchronous update: a stale revision comes back as ErrConflict.
	fin := *got
	fin.Phase = reelq.PhaseFinished
	f, err := s.UpdateAsync(got, &fin, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jobstate.Result(ctx, f); !errors.Is(err, jobstate.ErrConflict) {
		t.Fatalf("stale UpdateAsync: %v, want ErrConflict", err)
	}
	f, err = s.UpdateAsync(got, &fin, rev2)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := jobstate.Result(ctx, f); err != nil || r <= rev2 {
		t.Fatalf("UpdateAsync = %d, %v", r, err)
	}
}

// Mutate retries lost compare-and-sets until its function's change lands
// on the latest state; ErrNoChange writes nothing.
func TestMutateUnderContention(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := store(t)
	if _, err := s.Create(ctx, at(reelq.PhaseQueued, 1)); err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 10
	errs := make(chan error, writers)
	for range writers {
		go func() {
			for range each {
				if _, _, err := s.Mutate(ctx, "j", nil, func(st *jobstate.State) error { st.Attempts++; return nil }); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st, rev, err := s.Get(ctx, "j")
	if err != nil || st.Attempts != writers*each {
		t.Fatalf("attempts = %v (err %v), want %d: a lost update", st, err, writers*each)
	}
	_, rev2, err := s.Mutate(ctx, "j", nil, func(*jobstate.State) error { return jobstate.ErrNoChange })
	if err != nil || rev2 != rev {
		t.Fatalf("ErrNoChange wrote: rev %d -> %d (%v)", rev, rev2, err)
	}
	// Mutate creates from init when the key is absent.
	st, _, err = s.Mutate(ctx, "k", &jobstate.State{ID: "k", Provider: "samsar", Run: 1, Phase: reelq.PhaseQueued}, func(st *jobstate.State) error {
		st.Phase = reelq.PhaseFinished
		return nil
	})
	if err != nil || st.Phase != reelq.PhaseFinished {
		t.Fatalf("Mutate create = %+v, %v", st, err)
	}
}
