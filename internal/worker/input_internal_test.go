package worker

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/reelq/reelq"
)

// shares reports whether b's bytes lie inside data's memory.
func shares(data, b []byte) bool {
	if len(data) == 0 || len(b) == 0 {
		return false
	}
	d0, b0 := uintptr(unsafe.Pointer(unsafe.SliceData(data))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return b0 >= d0 && b0+uintptr(len(b)) <= d0+uintptr(len(data))
}

// A job in flight keeps its input once: in the message it holds until it
// is settled. The decoded input and the job state read back from the
// bucket (a redelivery, a conflict) are that copy, not two more (each was
// a copy of its own before; issue 28's "a waiting job should not keep its
// input in memory" gets as far as one copy, see within).
func TestJobKeepsOneCopyOfItsInput(t *testing.T) {
	t.Parallel()
	h := newLoopHarness(t, &harnessPool{})
	j := h.pull("one-copy")[0]
	if !shares(j.msg.Data(), j.env.Input) {
		t.Fatalf("the decoded input %s is a copy of its own, not the message's", j.env.Input)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.w.states.Create(ctx, h.e.newState(j, reelq.PhaseQueued)); err != nil {
		t.Fatal(err)
	}
	st, _, err := h.w.states.Get(ctx, j.id)
	if err != nil {
		t.Fatal(err)
	}
	shareInput(j, st)
	if string(st.Input) != string(j.env.Input) || !shares(j.msg.Data(), st.Input) {
		t.Fatalf("the state's input %s is a copy of its own, not the message's", st.Input)
	}
	// An input the message does not hold (a state of different content)
	// stays the state's own.
	st.Input = []byte(`{"prompt":"another"}`)
	shareInput(j, st)
	if string(st.Input) != `{"prompt":"another"}` {
		t.Fatalf("a different input was replaced: %s", st.Input)
	}
}
