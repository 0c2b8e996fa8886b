package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TraceparentHeader carries a W3C trace context from a job to its result.
const TraceparentHeader = "traceparent"

// PublishResult publishes r on its result subject and waits for the
// server's acknowledgement. The message id result:<job_id> deduplicates a
// republish within the duplicate window, and an expected-last-sequence of
// 0 on the job's own subject refuses a second result at any time the first
// is still retained. Either way the job ends in exactly one result event;
// PublishResult then reports already=true and no error.
func PublishResult(ctx context.Context, js jetstream.JetStream, r *Result) (already bool, err error) {
	data, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("encode result %s: %w", r.ID, err)
	}
	msg := &nats.Msg{Subject: ResultSubject(r.Provider, r.ID), Data: data, Header: nats.Header{}}
	if r.Traceparent != "" {
		msg.Header.Set(TraceparentHeader, r.Traceparent)
	}
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(ResultMsgID(r.ID)), jetstream.WithExpectLastSequencePerSubject(0))
	if isWrongLastSequence(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("publish result %s: %w", r.ID, err)
	}
	return ack.Duplicate, nil
}

// LastResult returns the result event stored for a job, or
// jetstream.ErrMsgNotFound.
func LastResult(ctx context.Context, js jetstream.JetStream, provider, id string) (*Result, error) {
	s, err := js.Stream(ctx, StreamResults)
	if err != nil {
		return nil, err
	}
	m, err := s.GetLastMsgForSubject(ctx, ResultSubject(provider, id))
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("decode result %s: %w", id, err)
	}
	return &r, nil
}

// Event is a progress or operator event published on events.<provider>.<kind>.
type Event struct {
	Kind     string    `json:"kind"`
	Provider string    `json:"provider"`
	JobID    string    `json:"job_id,omitempty"`
	Batch    string    `json:"batch,omitempty"`
	Time     time.Time `json:"time"`
	// Attempt is the job's attempt number, where it applies.
	Attempt int `json:"attempt,omitempty"`
	// TaskID is the provider's task id, where known.
	TaskID string `json:"provider_task_id,omitempty"`
	// Progress is the provider's 0-100 progress, where reported.
	Progress *float64 `json:"progress,omitempty"`
	// Status is the provider's raw status word, where relevant.
	Status string `json:"status,omitempty"`
	// Reason explains pauses, retries and dead letters.
	Reason string `json:"reason,omitempty"`
	Code   string `json:"code,omitempty"`
	// Until is when a pause or back-off ends, where known.
	Until *time.Time `json:"until,omitempty"`
	// Worker names the replica that published the event.
	Worker string `json:"worker,omitempty"`
}

// Event kinds.
const (
	EventSubmitted        = "submitted"
	EventProgress         = "progress"
	EventRetry            = "retry"
	EventRateLimited      = "rate_limited"
	EventProviderPaused   = "provider_paused"
	EventProviderResumed  = "provider_resumed"
	EventAmbiguousSubmit  = "ambiguous_submit"
	EventRecoveredTask    = "recovered_task"
	EventDeadLettered     = "dead_lettered"
	EventCancelled        = "cancelled"
	EventCancelRequested  = "cancel_requested"
	EventCompleted        = "completed"
	EventDuplicateDropped = "duplicate_dropped"
)

// PublishEvent publishes e on core NATS; the EVENTS stream stores it.
// Events are best-effort: a lost event never affects a job.
func PublishEvent(nc *nats.Conn, e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return nc.Publish(EventSubject(e.Provider, e.Kind), data)
}
