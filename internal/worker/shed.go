package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
)

// A job waiting for its next poll is most of what a replica holds when
// jobs are long: 100,000 of them wait for minutes between polls. While it
// waits it sheds what only its other steps need: its JOBS message (the
// body with the input and metadata, the headers, the subject) and its job
// state. It keeps the message's reply subject, to heartbeat and settle the
// message (the acks are publishes to it, as jetstream.Msg sends them), and
// what its polls read (shedState). The first step that needs more than a
// poll (the task finished, failed or timed out, a cancel) reads the state
// back (unshed): the input and metadata then come from the state, which
// stores them for retries and resolves.

// shedAfter is the shortest wait for a poll that sheds a job: reading its
// state back costs one round trip to the server when the job moves on, so
// a job polled more often than this (a provider that answers in
// milliseconds) keeps what it holds.
const shedAfter = time.Second

// shedState is what a shed job's polls read of its job state: 40 bytes
// for a task named by its id alone (Samsar's, Camb.ai's), where the
// state's *reelq.Task and a time.Time took 112.
type shedState struct {
	taskID      string
	urls        *taskURLs // the task's URLs; nil when it has none
	submittedAt stamp     // zero: unknown
	attempts    int
}

// taskURLs are the URLs of a task that has any (see reelq.Task).
type taskURLs struct{ poll, result, cancel string }

// shedTask is what a shed job keeps of t and its submission time.
func shedTask(t *reelq.Task, submittedAt *time.Time, attempts int) *shedState {
	s := &shedState{taskID: t.ID, attempts: attempts}
	if t.PollURL != "" || t.ResultURL != "" || t.CancelURL != "" {
		s.urls = &taskURLs{poll: t.PollURL, result: t.ResultURL, cancel: t.CancelURL}
	}
	if submittedAt != nil {
		s.submittedAt = stampOf(*submittedAt)
	}
	return s
}

// task is the task s keeps, and when it was submitted (nil: unknown).
func (s *shedState) task() (*reelq.Task, *time.Time) {
	t := &reelq.Task{ID: s.taskID}
	if s.urls != nil {
		t.PollURL, t.ResultURL, t.CancelURL = s.urls.poll, s.urls.result, s.urls.cancel
	}
	if s.submittedAt == 0 {
		return t, nil
	}
	at := s.submittedAt.time()
	return t, &at
}

// attempts is the run's failed attempts so far, from j's state or what
// it kept when it shed it; false when it has neither.
func (j *job) attempts() (int, bool) {
	switch {
	case j.shed != nil:
		return j.shed.attempts, true
	case j.st != nil:
		return j.st.Attempts, true
	}
	return 0, false
}

// acker is the part of a JOBS message the engine settles and heartbeats.
type acker interface {
	Ack() error
	Nak() error
	NakWithDelay(time.Duration) error
	TermWithReason(string) error
	InProgress() error
}

// replyAck acknowledges a JOBS message by its reply subject alone, with
// the payloads jetstream.Msg publishes for the same calls.
type replyAck struct {
	nc    *nats.Conn
	reply string
}

func (a *replyAck) Ack() error        { return a.nc.Publish(a.reply, []byte("+ACK")) }
func (a *replyAck) Nak() error        { return a.nc.Publish(a.reply, []byte("-NAK")) }
func (a *replyAck) InProgress() error { return a.nc.Publish(a.reply, []byte("+WPI")) }
func (a *replyAck) NakWithDelay(d time.Duration) error {
	return a.nc.Publish(a.reply, fmt.Appendf(nil, "-NAK {\"delay\": %d}", d.Nanoseconds()))
}
func (a *replyAck) TermWithReason(reason string) error {
	if reason == "" {
		return a.nc.Publish(a.reply, []byte("+TERM"))
	}
	return a.nc.Publish(a.reply, []byte("+TERM "+reason))
}

// acks is what settles and heartbeats j's message.
func (e *engine) acks(j *job) acker {
	if j.msg != nil {
		return j.msg
	}
	return &replyAck{nc: e.w.js.Conn(), reply: j.reply}
}

// shed drops j's message and state while it waits for a poll at (see
// above). Only a submitted job whose state in memory is the stored one
// sheds: one whose task record failed (recordTask) holds the only copy.
func (e *engine) shed(j *job, at time.Time) {
	st := j.st
	if j.shed != nil || j.msg == nil || st == nil || st.Phase != reelq.PhaseSubmitted || st.Task == nil ||
		j.unstored || time.Until(at) < shedAfter {
		return
	}
	j.reply = j.msg.Reply()
	j.shed = shedTask(st.Task, st.SubmittedAt, st.Attempts)
	j.msg, j.st = nil, nil
	j.env.Input, j.env.Metadata = nil, nil
}

// unshed reads a shed job's state back before a step that writes it or
// needs the input (finishing, archiving, a retry, a cancel). The state's
// input and metadata are the job's when its digest is the job's.
func (e *engine) unshed(ctx context.Context, j *job) error {
	if j.shed == nil {
		return nil
	}
	st, rev, err := e.w.states.Get(ctx, j.id)
	if err != nil {
		return err
	}
	if !j.sameContent(st.Digest) {
		return fmt.Errorf("%w (digest %s, the message's %s)", errStateReplaced, st.Digest, j.digestOf())
	}
	j.env.Input, j.env.Metadata = st.Input, st.Metadata
	j.st, j.rev, j.shed = st, rev, nil
	return nil
}

// errStateReplaced is a shed job's state read back with another content.
var errStateReplaced = errors.New("the job state holds another content than the message")

// withState runs next once a shed job has its state back. A job whose
// state cannot be read polls again later (the task runs on at the
// provider; the next poll's answer decides again); one whose state is gone
// or holds another content returns to the queue, where its next delivery
// decides as any delivery does (a job without a state starts; another
// content is a conflict).
func (e *engine) withState(ctx context.Context, j *job, next func() outcome) outcome {
	err := e.unshed(ctx, j)
	switch {
	case err == nil:
		return next()
	case errors.Is(err, jobstate.ErrNotFound), errors.Is(err, errStateReplaced):
		e.logJob(j).Error("the job state of a job waiting for its task is gone or replaced; returning the job to the queue", "err", err)
		return nak(0)
	}
	e.logJob(j).Warn("job state unavailable; polling again later", "err", err)
	return pollAt(time.Now().Add(stateRetry(0)))
}
