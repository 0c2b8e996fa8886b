package worker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/waitfor"
)

// A job waiting for its next poll keeps neither its message (body,
// headers) nor its input, metadata or job state: only the message's
// reply subject and what its polls read. Before it moves on it reads its
// state back, input and metadata included, and its message is still
// settled: the ack goes by the reply subject.
func TestPollingJobShedsItsMessageAndInput(t *testing.T) {
	t.Parallel()
	h := newLoopHarness(t, &harnessPool{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j := h.pull("shed")[0]
	input := string(j.env.Input)
	h.e.post(evMsg{j: j})
	claim := h.nextTask("the claim")

	// The claim step, played: the job is submitted and its task recorded.
	st := h.e.newState(j, reelq.PhaseSubmitting)
	rev, err := h.w.states.Create(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	next := *st
	now := time.Now().UTC()
	next.Phase, next.Task, next.SubmittedAt, next.Submissions = reelq.PhaseSubmitted, &reelq.Task{ID: "task-1"}, &now, 1
	if rev, err = h.w.states.Update(ctx, st, &next, rev); err != nil {
		t.Fatal(err)
	}
	j.st, j.rev = &next, rev
	h.finish(claim, pollAt(time.Now().Add(time.Hour)))

	// A cancel request makes it poll now: the poll step has the job.
	h.e.post(evCancel{id: j.id})
	poll := h.nextTask("the poll after the cancel request")
	if poll.j != j {
		t.Fatalf("started %s, want %s", poll.j.id, j.id)
	}
	if j.msg != nil || j.st != nil || j.env.Input != nil || j.env.Metadata != nil {
		t.Errorf("a job waiting for a poll keeps its message %v, state %v, input %s, metadata %s; want none", j.msg != nil, j.st != nil, j.env.Input, j.env.Metadata)
	}
	if task, _ := j.polled(); j.shed == nil || task == nil || task.ID != "task-1" || j.reply == "" {
		t.Fatalf("the shed job keeps %+v and reply subject %q; want its task and the subject", j.shed, j.reply)
	}
	if err := h.e.unshed(ctx, j); err != nil {
		t.Fatal(err)
	}
	if j.st == nil || j.st.Phase != reelq.PhaseSubmitted || j.rev != rev || string(j.env.Input) != input || j.shed != nil {
		t.Fatalf("read back: state %+v at %d (want %d), input %s (want %s)", j.st, j.rev, rev, j.env.Input, input)
	}
	h.finish(poll, ack())
	waitfor.Until(t, 10*time.Second, "the message acked by its reply subject", func() error {
		info, err := h.e.cons[reelq.Normal].Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 {
			return fmt.Errorf("%d messages wait for an ack", info.NumAckPending)
		}
		return nil
	})
}

// A job keeps its content digest in 32 bytes and gives it back as the
// job state stores it; any other form is kept as it is.
func TestDigestPackedRoundTrip(t *testing.T) {
	t.Parallel()
	d := (&reelq.Job{Provider: "samsar", Input: []byte(`{"prompt":"p"}`)}).Digest()
	j := &job{digest: packDigest(d)}
	if len(j.digest) != 32 || j.digestOf() != d || !j.sameContent(d) || !j.sameContent("") {
		t.Fatalf("packed %q (%d bytes) gives %q; want 32 bytes giving %q", j.digest, len(j.digest), j.digestOf(), d)
	}
	if other := (&reelq.Job{Provider: "samsar", Input: []byte(`{"prompt":"q"}`)}).Digest(); j.sameContent(other) {
		t.Fatalf("%s matches %s", other, d)
	}
	if odd := (&job{digest: packDigest("md5:abc")}); odd.digestOf() != "md5:abc" || !odd.sameContent("md5:abc") {
		t.Fatalf("an unknown form became %q", odd.digest)
	}
}

// A job keeps its timer's due time, its last poll and its last token as
// Unix nanoseconds: an instant comes back as the same instant, the zero
// time as the zero time, and stamps order as their instants do (the
// timer heap compares them).
func TestStampRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 8, 1, 2, 3, 456789012, time.UTC)
	if got := stampOf(at).time(); !got.Equal(at) {
		t.Fatalf("%s came back as %s", at, got)
	}
	if now := time.Now(); !stampOf(now).time().Equal(now) {
		t.Fatalf("now (with its monotonic reading) came back as %s, want %s", stampOf(now).time(), now)
	}
	if s := stampOf(time.Now()).time().String(); !strings.Contains(s, " m=") {
		t.Fatalf("a stamp of now came back without a monotonic reading (%s): a wall-clock step would move it", s)
	}
	if got := stamp(0).time(); !got.IsZero() || stampOf(time.Time{}) != 0 {
		t.Fatalf("the zero time came back as %s (stamp %d)", got, stampOf(time.Time{}))
	}
	h := timerHeap{}
	a, b := &job{heapIdx: -1}, &job{heapIdx: -1}
	h.schedule(b, at.Add(time.Nanosecond))
	h.schedule(a, at)
	if next, _ := h.next(); !next.Equal(at) {
		t.Fatalf("the heap's next is %s, want %s", next, at)
	}
	if due := h.popDue(at); len(due) != 1 || due[0] != a {
		t.Fatalf("due at %s: %d jobs, want the first alone", at, len(due))
	}
}

// A shed job keeps its task's id, its URLs only when it has any, and its
// submission time; its polls get them back as the state held them.
func TestShedTaskRoundTrip(t *testing.T) {
	t.Parallel()
	sub := time.Date(2026, 12, 8, 1, 2, 3, 4, time.UTC)
	for _, c := range []struct {
		task reelq.Task
		at   *time.Time
	}{
		{reelq.Task{ID: "samsar-1"}, &sub},
		{reelq.Task{ID: "seg-1", PollURL: "http://x/poll/seg-1"}, nil},
		{reelq.Task{ID: "fal-1", PollURL: "http://x/s", ResultURL: "http://x/r", CancelURL: "http://x/c"}, &sub},
	} {
		s := shedTask(&c.task, c.at, 2)
		if (s.urls == nil) != (c.task.PollURL == "" && c.task.ResultURL == "" && c.task.CancelURL == "") {
			t.Errorf("%s: keeps URLs %+v", c.task.ID, s.urls)
		}
		got, at := s.task()
		if *got != c.task || (at == nil) != (c.at == nil) || (at != nil && !at.Equal(*c.at)) || s.attempts != 2 {
			t.Errorf("%+v submitted %v came back as %+v submitted %v", c.task, c.at, *got, at)
		}
	}
}
