package reelq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
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
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	if _, err := c.cancels.Put(cctx, st.ID, c.cancelRequest(st.Provider, reason)); err != nil {
		return out, fmt.Errorf("reelq: cancel %s: %w", st.ID, err)
	}
	out.Status = CancelRequested
	out.StillBilled = (st.Phase == PhaseSubmitted || st.Phase == PhaseSubmitting || st.Phase == PhaseArchiving) && !c.Cancelable(st.Provider)
	return out, nil // the worker that takes the request publishes the cancel_requested event
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
	if err := c.scanQueued(ctx, func(j Job, m store.Msg) {
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
		cctx, cancel := c.s.ReqCtx(ctx)
		err := c.s.DirectBatch(cctx, wire.StreamBatches, map[string]any{"seq": seq, "next_by_subj": wire.BatchIndexSubject(batch), "batch": 1000}, func(m store.Msg) bool {
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
	for start := 0; start < len(ids); start += store.MaxMultiLast * 4 {
		states, err := c.states(ctx, ids[start:min(start+store.MaxMultiLast*4, len(ids))])
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
func (c *Client) scanQueued(ctx context.Context, f func(Job, store.Msg)) error {
	seq := uint64(1)
	for {
		n, last := 0, uint64(0)
		cctx, cancel := c.s.ReqCtx(ctx)
		err := c.s.DirectBatch(cctx, wire.StreamJobs, map[string]any{"seq": seq, "batch": 1000}, func(m store.Msg) bool {
			n++
			last = m.Seq
			j, err := DecodeJob(m.Data)
			if err != nil {
				return true
			}
			if ps, ok := wire.ParseJobSubject(m.Subject); ok {
				j.Provider = ps.Provider
				if j.ID == "" {
					j.ID = ps.ID
				}
				if p := Priority(ps.Priority); p != "" && p != Normal {
					j.Priority = p
				}
			}
			if j.ID == "" {
				j.ID = wire.SeqID(m.Seq)
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
// several at a time, and yields each job's outcome (with its error, if its
// request failed; a finished job's outcome says CancelAlreadyFinished).
// An error with an outcome without ID ends it: the batch could not be
// listed, or ctx ended.
func (c *Client) CancelBatch(ctx context.Context, batch, reason string) iter.Seq2[CancelOutcome, error] {
	return func(yield func(CancelOutcome, error) bool) {
		jobs, err := c.BatchJobs(ctx, batch)
		if err != nil {
			yield(CancelOutcome{}, err)
			return
		}
		type item struct {
			st *JobState
			f  jetstream.PubAckFuture
		}
		var pend []item
		// flush yields the pending requests' outcomes; false when the
		// caller stopped or ctx ended.
		flush := func() bool {
			defer func() { pend = pend[:0] }()
			for _, it := range pend {
				out := CancelOutcome{ID: it.st.ID, Phase: it.st.Phase, Status: CancelRequested,
					StillBilled: it.st.Phase != PhaseQueued && it.st.Phase != PhaseHeld && !c.Cancelable(it.st.Provider)}
				var err error
				select {
				case <-it.f.Ok():
				case perr := <-it.f.Err():
					err = fmt.Errorf("reelq: cancel %s: %w", it.st.ID, perr)
				case <-ctx.Done():
					yield(CancelOutcome{}, context.Cause(ctx))
					return false
				}
				if !yield(out, err) {
					return false
				}
			}
			return true
		}
		for _, b := range jobs {
			if ctx.Err() != nil {
				break
			}
			if b.State.Phase == PhaseFinished {
				if !yield(CancelOutcome{ID: b.ID, Phase: b.State.Phase, Status: CancelAlreadyFinished, Result: b.State.StoredResult()}, nil) {
					return
				}
				continue
			}
			f, err := c.js.PublishMsgAsync(&nats.Msg{Subject: "$KV." + wire.BucketCancel + "." + b.ID, Data: c.cancelRequest(b.Provider, reason)})
			if err != nil {
				if !yield(CancelOutcome{ID: b.ID}, err) {
					return
				}
				continue
			}
			pend = append(pend, item{b.State, f})
			if len(pend) >= c.opts.Window && !flush() {
				return
			}
		}
		if !flush() {
			return
		}
		if ctx.Err() != nil {
			yield(CancelOutcome{}, context.Cause(ctx))
		}
	}
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
		msg.Header.Set(wire.HeaderTraceparent, st.Traceparent)
	}
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	if _, err := c.js.PublishMsg(cctx, msg, jetstream.WithMsgID(wire.JobMsgID(st.ID, run))); err != nil {
		return 0, publishErr(&j, err)
	}
	return run, nil
}

// RetryOutcome is what RetryBatch did with one job.
type RetryOutcome struct {
	ID string
	// Run is the new run's number.
	Run int
}

// RetryBatch retries every finished job of batch whose last run ended in
// one of statuses (default: failed and cancelled; jobs that succeeded are
// never retried) and yields each retry (with its error, if it failed). An
// error with an outcome without ID ends it: statuses include succeeded,
// the batch could not be listed, or ctx ended.
func (c *Client) RetryBatch(ctx context.Context, batch string, statuses []string) iter.Seq2[RetryOutcome, error] {
	return func(yield func(RetryOutcome, error) bool) {
		if len(statuses) == 0 {
			statuses = []string{StatusFailed, StatusCancelled}
		}
		if slices.Contains(statuses, StatusSucceeded) {
			yield(RetryOutcome{}, ErrSucceeded)
			return
		}
		jobs, err := c.BatchJobs(ctx, batch)
		if err != nil {
			yield(RetryOutcome{}, err)
			return
		}
		for _, b := range jobs {
			if ctx.Err() != nil {
				yield(RetryOutcome{}, context.Cause(ctx))
				return
			}
			r := b.State.StoredResult()
			if b.State.Phase != PhaseFinished || r == nil || !slices.Contains(statuses, r.Status) {
				continue
			}
			run, err := c.retry(ctx, b.State)
			if !yield(RetryOutcome{ID: b.ID, Run: run}, err) {
				return
			}
		}
	}
}
