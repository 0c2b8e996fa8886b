package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/jobstate"
)

// Outcome says what happened to one job handed to Producer.Publish.
type Outcome struct {
	ID string
	// Status is "published" (new job), "requeued" (known, never started,
	// and its message is gone from JOBS: published again), "duplicate"
	// (still queued, started or finished: not published), or "error".
	Status string
	// Phase is the existing job's phase for a duplicate.
	Phase jobstate.Phase
	Err   error
}

// Producer publishes jobs: first a job state record created with
// compare-and-set (so a job id is accepted once for as long as its state
// is kept, far beyond the JetStream duplicate window), then the job message
// with Nats-Msg-Id = job id. Both are published asynchronously in windows,
// so large batches run at the server's pace rather than one round trip per
// job.
type Producer struct {
	JS     jetstream.JetStream
	States *jobstate.Store
	// Window is how many jobs are in flight at once. Zero means 1000.
	Window int
	// Retries is how many times a failed publish is retried (with the
	// same message id, so retries never duplicate). Zero means 5.
	Retries int
	// Now stamps EnqueuedAt; nil means time.Now.
	Now func() time.Time
}

// Publish publishes jobs, which must have ids and be valid, calling
// progress (if set) as each one is settled. It returns one outcome per job,
// in order; the error is set only if ctx ended.
func (p *Producer) Publish(ctx context.Context, jobs []Job, progress func(Outcome)) ([]Outcome, error) {
	window := p.Window
	if window <= 0 {
		window = 1000
	}
	out := make([]Outcome, len(jobs))
	for start := 0; start < len(jobs); start += window {
		end := min(start+window, len(jobs))
		if err := p.publishWindow(ctx, jobs[start:end], out[start:end]); err != nil {
			return out, err
		}
		if progress != nil {
			for _, o := range out[start:end] {
				progress(o)
			}
		}
	}
	return out, nil
}

func (p *Producer) publishWindow(ctx context.Context, jobs []Job, out []Outcome) error {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	// 1. Claim each id with a state record (create-only).
	claim := make([]jetstream.PubAckFuture, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		out[i] = Outcome{ID: j.ID}
		if j.EnqueuedAt == nil {
			t := now().UTC()
			j.EnqueuedAt = &t
		}
		st := &jobstate.State{ID: j.ID, Provider: j.Provider, Batch: j.Batch, Phase: jobstate.Queued, EnqueuedAt: j.EnqueuedAt, UpdatedAt: now().UTC()}
		f, err := p.JS.PublishAsync(p.States.Subject(j.ID), jobstate.Encode(st), jetstream.WithExpectLastSequencePerSubject(0))
		if err != nil {
			out[i].Status, out[i].Err = "error", err
			continue
		}
		claim[i] = f
	}
	// 2. Publish the jobs whose claim succeeded, or that were claimed but
	// never started (an earlier enqueue died between the two steps).
	pub := make([]jetstream.PubAckFuture, len(jobs))
	for i, f := range claim {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
			out[i].Status = "published"
		case err := <-f.Err():
			if !isWrongLastSequence(err) {
				out[i].Status, out[i].Err = "error", fmt.Errorf("claim job %s: %w", jobs[i].ID, err)
				continue
			}
			st, _, gerr := p.States.Get(ctx, jobs[i].ID)
			if gerr != nil {
				out[i].Status, out[i].Err = "error", gerr
				continue
			}
			if st.Phase != jobstate.Queued {
				out[i].Status, out[i].Phase = "duplicate", st.Phase
				continue
			}
			// Never started. If its message is still in JOBS (waiting, or
			// between retries) the job is queued already: publishing again
			// would add a second message once the duplicate window has
			// passed. Only a claim whose message never made it (an earlier
			// enqueue died between the two steps) is published again.
			if p.stillQueued(ctx, &jobs[i]) {
				out[i].Status, out[i].Phase = "duplicate", st.Phase
				continue
			}
			out[i].Status, out[i].Phase = "requeued", st.Phase
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		pub[i] = p.publishJob(&jobs[i], &out[i])
	}
	// 3. Wait for the job publishes; retry failures with the same msg id.
	for i, f := range pub {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if rerr := p.retryJob(ctx, &jobs[i]); rerr != nil {
				out[i].Status, out[i].Err = "error", fmt.Errorf("publish job %s: %w (first error: %v)", jobs[i].ID, rerr, err)
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// stillQueued reports whether j's message is in the JOBS stream. Any
// error reads as "no", so the job is published again (harmless: the worker
// deduplicates by job state).
func (p *Producer) stillQueued(ctx context.Context, j *Job) bool {
	s, err := p.JS.Stream(ctx, StreamJobs)
	if err != nil {
		return false
	}
	_, err = s.GetLastMsgForSubject(ctx, JobSubject(j.Provider, j.ID))
	return err == nil
}

func (p *Producer) publishJob(j *Job, o *Outcome) jetstream.PubAckFuture {
	msg, err := JobMsg(j)
	if err != nil {
		o.Status, o.Err = "error", err
		return nil
	}
	f, err := p.JS.PublishMsgAsync(msg, jetstream.WithMsgID(j.ID))
	if err != nil {
		o.Status, o.Err = "error", err
		return nil
	}
	return f
}

func (p *Producer) retryJob(ctx context.Context, j *Job) error {
	retries := p.Retries
	if retries <= 0 {
		retries = 5
	}
	msg, err := JobMsg(j)
	if err != nil {
		return err
	}
	b := backoff.WithContext(backoff.WithMaxRetries(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond), backoff.WithMaxInterval(5*time.Second)), uint64(retries)), ctx)
	return backoff.Retry(func() error {
		_, err := p.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(j.ID))
		return err
	}, b)
}

// JobMsg is the message that carries j on its provider's subject.
func JobMsg(j *Job) (*nats.Msg, error) {
	data, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	return &nats.Msg{Subject: JobSubject(j.Provider, j.ID), Data: data, Header: nats.Header{}}, nil
}

// isWrongLastSequence reports a failed expected-last-sequence check: the
// subject already has a message (10071, or 10164 on replicated streams).
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}
