package reelq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"

	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// Get returns job id's state: from the job state bucket once a worker has
// picked the job up, or, for a job still waiting in the queue (including
// one published with `nats pub`), a state in phase "queued" read from the
// JOBS stream itself. It returns an error matching ErrNotFound, naming
// the id, for an unknown id.
//
// A job always has its state or its message: a worker (or a canceller)
// writes the state before the message leaves JOBS. Two reads cannot both
// miss an existing job unless the state was written between them, so
// when the queue has no message either, Get reads the state once more.
func (c *Client) Get(ctx context.Context, id string) (*JobState, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: id %q", ErrInvalidJob, id)
	}
	st, err := c.getState(ctx, id)
	if !errors.Is(err, ErrNotFound) {
		return st, err
	}
	if c.betweenReads != nil {
		c.betweenReads(id)
	}
	j, m, err := c.findQueued(ctx, id)
	if err != nil {
		return nil, err
	}
	if j == nil {
		// Picked up (or cancelled) and removed from the queue since the
		// first read: the state is there now.
		return c.getState(ctx, id)
	}
	enq := m.Time.UTC()
	if j.EnqueuedAt != nil {
		enq = *j.EnqueuedAt
	}
	return &JobState{ID: id, Provider: j.Provider, Batch: j.Batch, Priority: j.Priority, FairnessKey: j.FairnessKey,
		Digest: j.Digest(), Phase: PhaseQueued, Run: 1, Seq: m.Seq, Input: j.Input, Metadata: j.Metadata, EnqueuedAt: &enq,
		UpdatedAt: m.Time}, nil
}

// findQueued looks for job id's message in JOBS under every provider and
// priority subject form, in one request.
func (c *Client) findQueued(ctx context.Context, id string) (*Job, store.Msg, error) {
	var subjects []string
	for _, p := range Providers {
		subjects = append(subjects, "jobs."+p+"."+id, "jobs."+p+".high."+id, "jobs."+p+".normal."+id, "jobs."+p+".low."+id)
	}
	msgs, err := c.queuedMsgs(ctx, subjects)
	if err != nil {
		return nil, store.Msg{}, err
	}
	for _, s := range subjects {
		m, ok := msgs[s]
		if !ok {
			continue
		}
		j, err := DecodeJob(m.Data)
		if err != nil {
			continue
		}
		if ps, ok := wire.ParseJobSubject(s); ok {
			j.Provider = ps.Provider
			if p := Priority(ps.Priority); p != "" && p != Normal {
				j.Priority = p
			}
		}
		j.ID = id
		return &j, m, nil
	}
	return nil, store.Msg{}, nil
}

// Wait blocks until job id's current run has a result and returns it (at
// once if it already has one; a retry still waiting in the queue is the
// current run). It returns an error matching ErrNotFound, naming the id,
// for an unknown id, and ctx's error
// if ctx ends first.
func (c *Client) Wait(ctx context.Context, id string) (*Result, error) {
	st, err := c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r := st.StoredResult(); r != nil && st.Phase == PhaseFinished {
		// A retry not yet picked up by a worker is a later run: wait for it.
		_, m, err := c.findQueued(ctx, id)
		if err != nil {
			return nil, err
		}
		run, _ := strconv.Atoi(m.Header.Get(wire.HeaderRun))
		if run <= st.Run {
			return r, nil
		}
		st.Run = run
	}
	// Watch the job's result subject from its last message on: an
	// earlier run's result is skipped.
	var out *Result
	err = c.s.WatchLast(ctx, wire.StreamResults, wire.ResultSubject(st.Provider, id), func(m store.Msg) bool {
		var r Result
		if json.Unmarshal(m.Data, &r) != nil {
			return true
		}
		if r.Run == 0 {
			r.Run = 1
		}
		if r.Run >= st.Run {
			out = &r
			return false
		}
		return true
	})
	switch {
	case out != nil:
		return out, nil
	case ctx.Err() != nil:
		return nil, context.Cause(ctx)
	}
	return nil, fmt.Errorf("reelq: follow results: %w", err)
}

// follow yields the results stored from RESULTS sequence start on (0:
// the next one stored), of provider's jobs only if provider is set.
func (c *Client) follow(ctx context.Context, start uint64, provider string) iter.Seq2[*Delivery, error] {
	var filters []string
	if provider != "" {
		filters = []string{wire.ResultSubject(provider, "*")}
	}
	return store.Seq(ctx, c.s, wire.StreamResults, filters, start, "follow results", func(m store.Msg) (*Delivery, bool) {
		r, ok := decodeResult(m.Data)
		if !ok {
			return nil, false
		}
		return &Delivery{Result: r, Seq: m.Seq}, true
	})
}

// decodeResult reads a result event (run 1 when it names none).
func decodeResult(data []byte) (*Result, bool) {
	var r Result
	if json.Unmarshal(data, &r) != nil {
		return nil, false
	}
	if r.Run == 0 {
		r.Run = 1
	}
	return &r, true
}

// ResultsSeq returns the RESULTS stream's last sequence: take it before
// publishing, then Follow from it, and no result can be missed whatever
// the clocks say.
func (c *Client) ResultsSeq(ctx context.Context) (uint64, error) {
	return c.s.LastSeq(ctx, wire.StreamResults)
}

// WaitOptions tune WaitAll.
type WaitOptions struct {
	// From is the RESULTS sequence to follow results from: ResultsSeq()+1
	// taken before the jobs were published, so no result can slip by
	// whatever the clocks say. 0 means from the stream's end when WaitAll
	// starts.
	From uint64
}

// WaitAll yields a result for the current run of every job in ids, as
// each arrives (jobs already finished at once, from their state), and
// ends after the last one. On ctx's end it yields ctx's error.
func (c *Client) WaitAll(ctx context.Context, ids []string, o WaitOptions) iter.Seq2[*Result, error] {
	return func(yield func(*Result, error) bool) {
		start := o.From
		if start == 0 {
			last, err := c.ResultsSeq(ctx)
			if err != nil {
				yield(nil, err)
				return
			}
			start = last + 1
		}
		want := make(map[string]int, len(ids)) // id -> run awaited
		for _, id := range ids {
			want[id] = 1
		}
		// Jobs that finished (or run a later run) are read from their state.
		for i := 0; i < len(ids); i += store.MaxMultiLast * 4 {
			states, err := c.states(ctx, ids[i:min(i+store.MaxMultiLast*4, len(ids))])
			if err != nil {
				yield(nil, err)
				return
			}
			for id, st := range states {
				want[id] = st.Run
				if r := st.StoredResult(); r != nil && st.Phase == PhaseFinished {
					delete(want, id)
					if !yield(r, nil) {
						return
					}
				}
			}
		}
		if len(want) == 0 {
			return
		}
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for d, err := range c.follow(fctx, start, "") {
			if err != nil {
				yield(nil, err)
				return
			}
			r := d.Result
			if run, ok := want[r.ID]; !ok || r.Run < run {
				continue
			}
			delete(want, r.ID)
			if !yield(r, nil) || len(want) == 0 {
				return
			}
		}
		yield(nil, context.Cause(ctx))
	}
}
