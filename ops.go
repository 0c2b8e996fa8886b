package reelq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/providerstate"
)

// CancelOutcome says what Cancel did.
type CancelOutcome struct {
	ID string
	// Requested: the workers carry the cancel out (a queued job finishes as
	// cancelled without reaching the provider; a running one is stopped at
	// the provider where its API allows). AlreadyFinished: nothing to do.
	Status string
	Phase  Phase
	// StillBilled is set for a running job whose provider has no cancel
	// API: the job ends as cancelled, but the provider finishes the task
	// and bills it.
	StillBilled bool
	// Result is the finished job's result.
	Result *Result
}

// Cancel outcomes.
const (
	CancelRequested       = "requested"
	CancelAlreadyFinished = "already finished"
)

// Cancel asks the workers to cancel job id: a request in the reelq_cancel
// bucket, which every worker watches. Wait for the cancelled result with
// Wait.
func (c *Client) Cancel(ctx context.Context, id string) (CancelOutcome, error) {
	st, err := c.Get(ctx, id)
	if err != nil {
		return CancelOutcome{ID: id}, err
	}
	return c.cancel(ctx, st, "")
}

func (c *Client) cancel(ctx context.Context, st *JobState, reason string) (CancelOutcome, error) {
	out := CancelOutcome{ID: st.ID, Phase: st.Phase}
	if st.Phase == PhaseFinished {
		out.Status, out.Result = CancelAlreadyFinished, st.StoredResult()
		return out, nil
	}
	cctx, cancel := c.reqCtx(ctx)
	defer cancel()
	if _, err := c.cancels.Put(cctx, st.ID, c.cancelRequest(st.Provider, reason)); err != nil {
		return out, fmt.Errorf("reelq: cancel %s: %w", st.ID, err)
	}
	out.Status = CancelRequested
	out.StillBilled = (st.Phase == PhaseSubmitted || st.Phase == PhaseSubmitting || st.Phase == PhaseArchiving) && !c.Cancelable(st.Provider)
	return out, nil // the worker that takes the request publishes the cancel_requested event
}

// CancelRequested reports which of ids have a cancel request that the
// workers have not carried out yet, or keep (a request stays until the
// job state expires).
func (c *Client) CancelRequested(ctx context.Context, ids []string) (map[string]bool, error) {
	subjects := make([]string, 0, len(ids))
	for _, id := range ids {
		if ValidID(id) {
			subjects = append(subjects, "$KV."+BucketCancel+"."+id)
		}
	}
	cctx, cancel := c.reqCtx(ctx)
	defer cancel()
	msgs, err := c.lastMsgs(cctx, "KV_"+BucketCancel, subjects)
	if err != nil {
		return nil, fmt.Errorf("reelq: cancel requests: %w", err)
	}
	out := map[string]bool{}
	for subj, m := range msgs {
		if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			continue
		}
		out[strings.TrimPrefix(subj, "$KV."+BucketCancel+".")] = true
	}
	return out, nil
}

func (c *Client) cancelRequest(provider, reason string) []byte {
	b, _ := json.Marshal(map[string]any{"provider": provider, "by": c.opts.By, "at": time.Now().UTC(), "reason": reason})
	return b
}

// BatchJob is a job of a batch, as BatchJobs lists it.
type BatchJob struct {
	ID       string
	Provider string
	// State is the job's state (for a job still waiting in the queue, a
	// "queued" state read from its message).
	State *JobState
}

// BatchJobs lists the jobs of batch: those a worker has seen (from the
// batch index) and those whose messages are in the queue (read from JOBS),
// each with its state (for a job no worker has taken yet, a "queued" state
// read from its message).
func (c *Client) BatchJobs(ctx context.Context, batch string) ([]BatchJob, error) {
	if !ValidID(batch) {
		return nil, fmt.Errorf("%w: batch %q", ErrInvalidJob, batch)
	}
	found := map[string]*BatchJob{}
	// Jobs still in the queue.
	if err := c.scanQueued(ctx, func(j Job, m storedMsg) {
		if j.Batch != batch {
			return
		}
		enq := m.Time.UTC()
		if j.EnqueuedAt != nil {
			enq = *j.EnqueuedAt
		}
		found[j.ID] = &BatchJob{ID: j.ID, Provider: j.Provider, State: &JobState{ID: j.ID, Provider: j.Provider, Batch: j.Batch,
			Priority: j.Priority, FairnessKey: j.FairnessKey, Phase: PhaseQueued, Run: 1, Seq: m.Seq, Input: j.Input,
			Metadata: j.Metadata, EnqueuedAt: &enq, UpdatedAt: m.Time}}
	}); err != nil {
		return nil, err
	}
	// Jobs a worker has seen, from the batch index.
	seen := map[string]bool{}
	var ids []string
	seq := uint64(1)
	for {
		n, last := 0, uint64(0)
		cctx, cancel := c.reqCtx(ctx)
		err := c.directBatch(cctx, StreamBatches, map[string]any{"seq": seq, "next_by_subj": BatchIndexSubject(batch), "batch": 1000}, func(m storedMsg) bool {
			n++
			last = m.Seq
			var chunk []string
			if json.Unmarshal(m.Data, &chunk) == nil {
				for _, id := range chunk {
					if !seen[id] {
						seen[id] = true
						ids = append(ids, id)
					}
				}
			}
			return true
		})
		cancel()
		if err != nil {
			return nil, err
		}
		if n == 0 || last < seq {
			break
		}
		seq = last + 1
	}
	// A message still in JOBS may be running already (a worker pulled it
	// and has not indexed it yet): its state, where it has one, wins.
	for id := range found {
		if !seen[id] {
			ids = append(ids, id)
		}
	}
	for start := 0; start < len(ids); start += maxMultiLast * 4 {
		states, err := c.states(ctx, ids[start:min(start+maxMultiLast*4, len(ids))])
		if err != nil {
			return nil, err
		}
		for id, st := range states {
			found[id] = &BatchJob{ID: id, Provider: st.Provider, State: st}
		}
	}
	out := make([]BatchJob, 0, len(found))
	for _, b := range found {
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b BatchJob) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// scanQueued calls f for every job message waiting in JOBS.
func (c *Client) scanQueued(ctx context.Context, f func(Job, storedMsg)) error {
	seq := uint64(1)
	for {
		n, last := 0, uint64(0)
		cctx, cancel := c.reqCtx(ctx)
		err := c.directBatch(cctx, StreamJobs, map[string]any{"seq": seq, "batch": 1000}, func(m storedMsg) bool {
			n++
			last = m.Seq
			j, err := DecodeJob(m.Data)
			if err != nil {
				return true
			}
			if ps, ok := ParseJobSubject(m.Subject); ok {
				j.Provider = ps.Provider
				if j.ID == "" {
					j.ID = ps.ID
				}
				if ps.Priority != "" && ps.Priority != Normal {
					j.Priority = ps.Priority
				}
			}
			if j.ID == "" {
				j.ID = SeqID(m.Seq)
			}
			f(j, m)
			return true
		})
		cancel()
		if err != nil {
			return err
		}
		if n == 0 || last < seq {
			return nil
		}
		seq = last + 1
	}
}

// CancelBatch requests the cancel of every unfinished job of batch,
// several at a time, calling progress (if set) after each. It stops when
// ctx ends, returning how many were requested so far.
func (c *Client) CancelBatch(ctx context.Context, batch, reason string, progress func(CancelOutcome, error)) (int, error) {
	jobs, err := c.BatchJobs(ctx, batch)
	if err != nil {
		return 0, err
	}
	type item struct {
		st *JobState
		f  jetstream.PubAckFuture
	}
	n := 0
	var pend []item
	flush := func() error {
		for _, it := range pend {
			out := CancelOutcome{ID: it.st.ID, Phase: it.st.Phase, Status: CancelRequested,
				StillBilled: it.st.Phase != PhaseQueued && it.st.Phase != PhaseHeld && !c.Cancelable(it.st.Provider)}
			select {
			case <-it.f.Ok():
				n++
				if progress != nil {
					progress(out, nil)
				}
			case err := <-it.f.Err():
				if progress != nil {
					progress(out, fmt.Errorf("reelq: cancel %s: %w", it.st.ID, err))
				}
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		pend = pend[:0]
		return nil
	}
	for _, b := range jobs {
		if ctx.Err() != nil {
			break
		}
		if b.State.Phase == PhaseFinished {
			if progress != nil {
				progress(CancelOutcome{ID: b.ID, Phase: b.State.Phase, Status: CancelAlreadyFinished, Result: b.State.StoredResult()}, nil)
			}
			continue
		}
		f, err := c.js.PublishMsgAsync(&nats.Msg{Subject: "$KV." + BucketCancel + "." + b.ID, Data: c.cancelRequest(b.Provider, reason)})
		if err != nil {
			if progress != nil {
				progress(CancelOutcome{ID: b.ID}, err)
			}
			continue
		}
		pend = append(pend, item{b.State, f})
		if len(pend) >= c.opts.Window {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := flush(); err != nil {
		return n, err
	}
	if ctx.Err() != nil {
		return n, context.Cause(ctx)
	}
	return n, nil
}

// ErrSucceeded is returned by Retry for a job that succeeded: it is never
// run (and paid) again.
var ErrSucceeded = errors.New("reelq: the job succeeded; a job that succeeded is never paid again")

// ErrNotFinished is returned by Retry for a job that has not finished.
var ErrNotFinished = errors.New("reelq: the job has not finished")

// Retry runs a finished job that did not succeed (failed or cancelled)
// again, under the same id, as run n+1; its result event carries the run
// number. It returns the new run's number.
func (c *Client) Retry(ctx context.Context, id string) (int, error) {
	st, err := c.Get(ctx, id)
	if err != nil {
		return 0, err
	}
	return c.retry(ctx, st)
}

func (c *Client) retry(ctx context.Context, st *JobState) (int, error) {
	switch {
	case st.Phase != PhaseFinished:
		return 0, fmt.Errorf("%w: %s is %s", ErrNotFinished, st.ID, st.Phase)
	case st.Succeeded():
		return 0, fmt.Errorf("%w (%s)", ErrSucceeded, st.ID)
	}
	run := st.Run + 1
	j := Job{ID: st.ID, Provider: st.Provider, Batch: st.Batch, Priority: st.Priority, FairnessKey: st.FairnessKey,
		Input: st.Input, Metadata: st.Metadata, Expect: st.Expect}
	msg, err := c.jobMsg(ctx, &j, run)
	if err != nil {
		return 0, err
	}
	if st.Traceparent != "" {
		msg.Header.Set(HeaderTraceparent, st.Traceparent)
	}
	cctx, cancel := c.reqCtx(ctx)
	defer cancel()
	if _, err := c.js.PublishMsg(cctx, msg, jetstream.WithMsgID(JobMsgID(st.ID, run))); err != nil {
		return 0, publishErr(&j, err)
	}
	return run, nil
}

// RetryBatch retries every finished job of batch whose last run ended in
// one of statuses (default: failed and cancelled); jobs that succeeded are
// never retried. It returns the ids retried.
func (c *Client) RetryBatch(ctx context.Context, batch string, statuses []string, progress func(id string, run int, err error)) ([]string, error) {
	if len(statuses) == 0 {
		statuses = []string{StatusFailed, StatusCancelled}
	}
	for _, s := range statuses {
		if s == StatusSucceeded {
			return nil, ErrSucceeded
		}
	}
	jobs, err := c.BatchJobs(ctx, batch)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, b := range jobs {
		if ctx.Err() != nil {
			return done, context.Cause(ctx)
		}
		r := b.State.StoredResult()
		if b.State.Phase != PhaseFinished || r == nil || !slices.Contains(statuses, r.Status) {
			continue
		}
		run, err := c.retry(ctx, b.State)
		if progress != nil {
			progress(b.ID, run, err)
		}
		if err == nil {
			done = append(done, b.ID)
		}
	}
	return done, nil
}

// ResolveOptions is an operator's verdict on a held job: exactly one of
// TaskID (the provider task the operator found on the provider's
// dashboard; the job resumes polling it) and Resubmit (submit again; the
// provider may bill twice).
type ResolveOptions struct {
	TaskID   string
	Resubmit bool
}

// Resolve settles a job held after a submission with unknown outcome (an
// operator identity is needed: the request goes to the CONTROL stream,
// and a worker carries it out). It waits until the job has left the held
// phase and returns its state.
func (c *Client) Resolve(ctx context.Context, id string, o ResolveOptions) (*JobState, error) {
	if (o.TaskID == "") == !o.Resubmit {
		return nil, errors.New("reelq: resolve needs exactly one of a task id and resubmit")
	}
	st, err := c.getState(ctx, id)
	if err != nil {
		return nil, err
	}
	if st.Phase != PhaseHeld {
		return st, fmt.Errorf("reelq: job %s is %s, not held", id, st.Phase)
	}
	body, _ := json.Marshal(map[string]any{"task_id": o.TaskID, "resubmit": o.Resubmit, "by": c.opts.By})
	cctx, cancel := c.reqCtx(ctx)
	_, err = c.js.Publish(cctx, ControlSubject("resolve", id), body)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("reelq: resolve %s: %w", id, err)
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(2*time.Second), backoff.WithMaxElapsedTime(0)), ctx)
	var last *JobState
	err = backoff.Retry(func() error {
		s, err := c.getState(ctx, id)
		if err != nil {
			return err
		}
		last = s
		switch {
		case s.Phase != PhaseHeld:
			return nil
		case s.ResolveRefused != "" && s.UpdatedAt.After(st.UpdatedAt):
			// A worker refused this request (any write to a held job after
			// the request is its answer).
			return backoff.Permanent(fmt.Errorf("%w: %s", ErrResolveRefused, s.ResolveRefused))
		}
		return errors.New("still held")
	}, b)
	return last, err
}

// ErrResolveRefused is a resolve a worker refused: the task is recorded
// by another job, the provider does not know it, or it names another job.
// The job stays held.
var ErrResolveRefused = errors.New("reelq: resolve refused")

// providerStore opens the provider state store (operator calls).
func (c *Client) providerStore(ctx context.Context) (*providerstate.Store, error) {
	kv, err := c.js.KeyValue(ctx, BucketProviders)
	if err != nil {
		return nil, notReady(err)
	}
	return providerstate.New(c.js, kv, StreamJobs, consumerNames), nil
}

func consumerNames(p string) []string {
	out := make([]string, 0, len(Priorities))
	for _, prio := range Priorities {
		out = append(out, ConsumerName(p, prio))
	}
	return out
}

// Pause pauses provider for every worker until Resume (an operator
// identity is needed). It reports whether it was running before.
func (c *Client) Pause(ctx context.Context, provider, reason string) (bool, error) {
	if !KnownProvider(provider) {
		return false, fmt.Errorf("reelq: unknown provider %q (one of %s)", provider, strings.Join(Providers, ", "))
	}
	cctx, cancel := c.reqCtx(ctx)
	defer cancel()
	ps, err := c.providerStore(cctx)
	if err != nil {
		return false, err
	}
	if reason == "" {
		reason = "paused by an operator"
	}
	st, changed, err := ps.Pause(cctx, provider, providerstate.CodeManual, reason, c.opts.By, 0)
	if err != nil {
		return false, err
	}
	if changed {
		c.event(Event{Kind: EventProviderPaused, Provider: provider, Code: st.Code, Reason: st.Reason})
	}
	return changed, nil
}

// Resume ends provider's pause, whatever its kind. It reports whether the
// provider was paused.
func (c *Client) Resume(ctx context.Context, provider string) (bool, error) {
	if !KnownProvider(provider) {
		return false, fmt.Errorf("reelq: unknown provider %q (one of %s)", provider, strings.Join(Providers, ", "))
	}
	cctx, cancel := c.reqCtx(ctx)
	defer cancel()
	ps, err := c.providerStore(cctx)
	if err != nil {
		return false, err
	}
	changed, err := ps.Resume(cctx, provider, c.opts.By)
	if err != nil {
		return false, err
	}
	if changed {
		c.event(Event{Kind: EventProviderResumed, Provider: provider, Reason: "resumed by " + c.opts.By})
	}
	return changed, nil
}

// DeadLetter is a message in the DLQ stream.
type DeadLetter struct {
	Seq      uint64
	Time     time.Time
	Provider string
	// JobID is the job it was answered under (a seq- id for a message that
	// could not be attributed to a job).
	JobID string
	// Subject is where it was published; Code and Reason why it could not
	// run.
	Subject, Code, Reason string
	Data                  []byte
	Header                nats.Header
}

// DeadLetters lists the DLQ, oldest first.
func (c *Client) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	var out []DeadLetter
	seq := uint64(1)
	for {
		n, last := 0, uint64(0)
		cctx, cancel := c.reqCtx(ctx)
		err := c.directBatch(cctx, StreamDLQ, map[string]any{"seq": seq, "batch": 500}, func(m storedMsg) bool {
			n++
			last = m.Seq
			out = append(out, deadLetter(m))
			return true
		})
		cancel()
		if err != nil {
			return out, err
		}
		if n == 0 || last < seq {
			return out, nil
		}
		seq = last + 1
	}
}

func deadLetter(m storedMsg) DeadLetter {
	return DeadLetter{Seq: m.Seq, Time: m.Time, Provider: m.Header.Get("Reelq-Provider"), JobID: m.Header.Get("Reelq-Job-Id"),
		Subject: m.Header.Get("Reelq-Subject"), Code: m.Header.Get("Reelq-Error-Code"), Reason: m.Header.Get("Reelq-Error"),
		Data: m.Data, Header: m.Header}
}

// Redrive publishes a dead letter's message again and removes it from the
// DLQ. A job with a state (dead-lettered as poison, say) runs again as a
// new run, like Retry; a message that could not be attributed to a job is
// republished as it was (if it is still malformed, it is dead-lettered
// again). With dryRun nothing changes; the returned string says what
// would be done.
func (c *Client) Redrive(ctx context.Context, d DeadLetter, dryRun bool) (string, error) {
	if st, err := c.getState(ctx, d.JobID); err == nil && !strings.HasPrefix(d.JobID, "seq-") {
		if st.Phase == PhaseFinished && !st.Succeeded() {
			if dryRun {
				return fmt.Sprintf("would retry %s as run %d", d.JobID, st.Run+1), nil
			}
			run, err := c.retry(ctx, st)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("retried %s as run %d", d.JobID, run), c.deleteDLQ(ctx, d.Seq)
		}
		if dryRun {
			return fmt.Sprintf("would drop: job %s is %s", d.JobID, st.Phase), nil
		}
		return fmt.Sprintf("dropped: job %s is %s", d.JobID, st.Phase), c.deleteDLQ(ctx, d.Seq)
	}
	subj := d.Subject
	if subj == "" {
		if d.Provider == "" {
			return "", fmt.Errorf("reelq: dead letter %d has no subject or provider", d.Seq)
		}
		subj = "jobs." + d.Provider
	}
	if dryRun {
		return fmt.Sprintf("would republish message %d to %s", d.Seq, subj), nil
	}
	msg := &nats.Msg{Subject: subj, Data: d.Data, Header: nats.Header{}}
	for k, v := range d.Header {
		if !strings.HasPrefix(k, "Reelq-Error") && !strings.HasPrefix(k, "Nats-") && k != "Reelq-Provider" && k != "Reelq-Job-Id" && k != "Reelq-Stream-Seq" && k != "Reelq-Subject" {
			msg.Header[k] = v
		}
	}
	cctx, cancel := c.reqCtx(ctx)
	defer cancel()
	if _, err := c.js.PublishMsg(cctx, msg, jetstream.WithMsgID("redrive:"+strconv.FormatUint(d.Seq, 10))); err != nil {
		return "", fmt.Errorf("reelq: redrive %d: %w", d.Seq, err)
	}
	return fmt.Sprintf("republished message %d to %s", d.Seq, subj), c.deleteDLQ(ctx, d.Seq)
}

func (c *Client) deleteDLQ(ctx context.Context, seq uint64) error {
	cctx, cancel := c.reqCtx(ctx)
	defer cancel()
	s, err := c.js.Stream(cctx, StreamDLQ)
	if err != nil {
		return err
	}
	if err := s.DeleteMsg(cctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("reelq: remove dead letter %d: %w", seq, err)
	}
	return nil
}
