package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/jobstate"
)

// Canceller cancels jobs on behalf of an operator.
type Canceller struct {
	JS     jetstream.JetStream
	States *jobstate.Store
	// By names who cancelled, for events.
	By string
}

// Cancel outcomes.
const (
	CancelDone      = "cancelled"
	CancelRequested = "cancel requested (running: the worker stops it at the provider where the API allows)"
	CancelTooLate   = "already finished"
)

// Cancel cancels job id. A queued job is finished as cancelled here and
// now, with one cancelled result event, and never reaches the provider:
// the job state compare-and-set makes this race-free against a worker
// claiming it. A job already submitted gets a cancel request, which the
// worker holding it acts on at its next poll.
func (c *Canceller) Cancel(ctx context.Context, id string) (string, error) {
	var res *Result
	outcome := ""
	st, _, err := c.States.Mutate(ctx, id, nil, func(st *jobstate.State) error {
		switch st.Phase {
		case jobstate.Finished:
			outcome = CancelTooLate
			return jobstate.ErrNoChange
		case jobstate.Queued:
			now := time.Now().UTC()
			res = &Result{ID: id, Provider: st.Provider, Batch: st.Batch, Status: StatusCancelled,
				Error:    &ErrorInfo{Code: "cancelled", Message: "cancelled before it started"},
				Attempts: st.Attempts, EnqueuedAt: st.EnqueuedAt, CompletedAt: now}
			data, _ := json.Marshal(res)
			st.Phase, st.Result, st.LastError = jobstate.Finished, data, "cancelled"
			outcome = CancelDone
		default:
			if st.CancelRequested {
				outcome = CancelRequested
				return jobstate.ErrNoChange
			}
			st.CancelRequested = true
			outcome = CancelRequested
		}
		return nil
	})
	if errors.Is(err, jobstate.ErrNotFound) {
		return "", fmt.Errorf("unknown job %q", id)
	}
	if err != nil {
		return "", err
	}
	if res == nil {
		if outcome == CancelRequested {
			c.event(EventCancelRequested, st, "cancel requested while running")
		}
		if outcome == CancelTooLate && len(st.Result) > 0 {
			var r Result
			if json.Unmarshal(st.Result, &r) == nil {
				return CancelTooLate + " (" + r.Status + ")", nil
			}
		}
		return outcome, nil
	}
	// Carry the metadata from the queued message, if it is still there.
	s, serr := c.JS.Stream(ctx, StreamJobs)
	if serr == nil {
		if m, err := s.GetLastMsgForSubject(ctx, JobSubject(res.Provider, id)); err == nil {
			if j, err := DecodeJob(m.Data); err == nil {
				res.Metadata = j.Metadata
			}
		}
	}
	if _, err := PublishResult(ctx, c.JS, res); err != nil {
		// Keep the queued message: the worker that receives it finds the
		// finished state and publishes the stored result. (Purging it here
		// regardless, as this code once did, left such a job without any
		// result event.)
		return "", fmt.Errorf("cancelled, but publishing the result failed (a worker will publish it when it sees the job): %w", err)
	}
	if serr == nil {
		// Remove the queued message; a worker holding it meanwhile sees
		// the finished state and only acks it.
		_ = s.Purge(ctx, jetstream.WithPurgeSubject(JobSubject(res.Provider, id)))
	}
	c.event(EventCancelled, st, "cancelled before it started")
	return outcome, nil
}

func (c *Canceller) event(kind string, st *jobstate.State, reason string) {
	if st == nil {
		return
	}
	_ = PublishEvent(c.JS.Conn(), Event{Kind: kind, Provider: st.Provider, JobID: st.ID, Batch: st.Batch, Reason: reason, Worker: c.By})
}
