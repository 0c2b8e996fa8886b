package waitfor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/leaktest"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

func TestPoll(t *testing.T) {
	n := 0
	if err := waitfor.Poll(time.Minute, func() bool { n++; return n == 3 }); err != nil || n != 3 {
		t.Errorf("Poll of a bool = %v after %d calls, want nil after 3", err, n)
	}
	errMissing := errors.New("missing")
	if err := waitfor.Poll(10*time.Millisecond, func() error { return errMissing }); !errors.Is(err, errMissing) {
		t.Errorf("Poll that never holds = %v, want the condition's last error", err)
	}
}

// Job sees the states a job goes through, from before it has one.
func TestJob(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t, natstest.Server(t))
	natstest.Setup(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, wire.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Key(t, kv, "j", 10*time.Second, "no state yet", func(e jetstream.KeyValueEntry) bool { return e == nil })
	states := jobstate.New(js, kv)
	go func() {
		st := &jobstate.State{ID: "j", Provider: "samsar", Phase: reelq.PhaseSubmitting}
		rev, err := states.Create(ctx, st)
		if err != nil {
			t.Error(err)
			return
		}
		next := *st
		next.Phase = reelq.PhaseSubmitted
		if _, err := states.Update(ctx, st, &next, rev); err != nil {
			t.Error(err)
		}
	}()
	st := waitfor.Job(t, js, "j", 10*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseSubmitted })
	if st.ID != "j" {
		t.Fatalf("state %+v", st)
	}
	e := waitfor.Key(t, kv, "j", 10*time.Second, "the submitted state", func(e jetstream.KeyValueEntry) bool { return e != nil && e.Revision() >= 2 })
	if e.Revision() < 2 {
		t.Fatalf("revision %d", e.Revision())
	}
}
