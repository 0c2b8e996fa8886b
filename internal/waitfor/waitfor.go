// Package waitfor is how reelq's tests wait for what they are not told
// about as it happens: Until polls a condition, backing off from 1 ms to
// 100 ms, until it holds or a deadline passes; Key and Job watch one key
// of a KV bucket and check each revision as it arrives. Waiting on a
// channel or a local view's version needs none of this.
package waitfor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/wire"
)

// ErrNotYet is what a condition returns while it does not hold, when it
// has nothing more to say.
var ErrNotYet = errors.New("not yet")

// Cond reports whether what a test waits for holds: true, or a nil error
// (an error says what is still missing, for the failure message).
type Cond interface{ func() bool | func() error }

// Until polls cond until it holds and fails tb if timeout passes first,
// naming what and cond's last error.
func Until[C Cond](tb testing.TB, timeout time.Duration, what string, cond C) {
	tb.Helper()
	if err := Poll(timeout, cond); err != nil {
		tb.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
	}
}

// Poll is Until for a caller that handles the failure itself: it returns
// nil once cond holds, or cond's last error once timeout has passed.
func Poll[C Cond](timeout time.Duration, cond C) error {
	check := asError(cond)
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		t.Reset(min(wait, left))
		<-t.C
		wait = min(2*wait, 100*time.Millisecond)
	}
}

func asError[C Cond](cond C) func() error {
	switch f := any(cond).(type) {
	case func() error:
		return f
	case func() bool:
		return func() error {
			if f() {
				return nil
			}
			return ErrNotYet
		}
	}
	panic("unreachable")
}

// Key watches key in kv until cond holds for its latest revision (nil
// while the key does not exist), fails tb if timeout passes first, and
// returns the entry cond accepted.
func Key(tb testing.TB, kv jetstream.KeyValue, key string, timeout time.Duration, what string, cond func(jetstream.KeyValueEntry) bool) jetstream.KeyValueEntry {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	w, err := kv.Watch(ctx, key)
	if err != nil {
		tb.Fatalf("waiting for %s: watch %s: %v", what, key, err)
	}
	defer func() { _ = w.Stop() }()
	var last jetstream.KeyValueEntry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				tb.Fatalf("waiting for %s: the watch of %s ended", what, key)
			}
			if e != nil {
				last = e
			}
			if e == nil && last != nil {
				continue // the end of the initial values, already checked
			}
			if cond(last) {
				return last
			}
		case <-ctx.Done():
			tb.Fatalf("timed out after %v waiting for %s; %s is %s", timeout, what, key, describe(last))
		}
	}
}

func describe(e jetstream.KeyValueEntry) string {
	switch {
	case e == nil:
		return "absent"
	case e.Operation() != jetstream.KeyValuePut:
		return fmt.Sprintf("deleted (revision %d)", e.Revision())
	}
	return fmt.Sprintf("%s (revision %d)", e.Value(), e.Revision())
}

// Job watches job id's state in the job state bucket until cond holds for
// it (cond is not called while the job has no state), fails tb if timeout
// passes first, and returns that state.
func Job(tb testing.TB, js jetstream.JetStream, id string, timeout time.Duration, cond func(*reelq.JobState) bool) *reelq.JobState {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, wire.BucketJobs)
	if err != nil {
		tb.Fatalf("waiting for job %s: %v", id, err)
	}
	var st *reelq.JobState
	Key(tb, kv, id, timeout, "job "+id, func(e jetstream.KeyValueEntry) bool {
		if e == nil || e.Operation() != jetstream.KeyValuePut {
			return false
		}
		st = new(reelq.JobState)
		if err := json.Unmarshal(e.Value(), st); err != nil {
			tb.Fatalf("job %s: state %s: %v", id, e.Value(), err)
		}
		return cond(st)
	})
	return st
}

// Counted waits until Stats read with o count every result stored before
// the read (their done and spend counts lag the results by the workers'
// fold interval) and returns them; it fails tb after timeout.
func Counted(tb testing.TB, ctx context.Context, i *inspect.Inspector, o inspect.StatsOptions, timeout time.Duration) *inspect.Stats {
	tb.Helper()
	var s *inspect.Stats
	Until(tb, timeout, "the counts to fold every result", func() error {
		var err error
		if s, err = i.Stats(ctx, o); err != nil {
			return err
		}
		if b := s.Folded.Behind(); b > 0 {
			return fmt.Errorf("folded through RESULTS sequence %d of %d", s.Folded.Through, s.Folded.Results)
		}
		return nil
	})
	return s
}
