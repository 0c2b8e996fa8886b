package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// reads are the dashboard's own reads of job states, batch indexes, dead
// letters, archived outputs and the live feeds, by direct get over its
// connection (no consumer is made for a page view).
type reads struct {
	s  *store.Store
	js jetstream.JetStream
}

func newReads(nc *nats.Conn, js jetstream.JetStream) *reads {
	return &reads{s: &store.Store{NC: nc, JS: js, Timeout: 10 * time.Second}, js: js}
}

// jobStates reads the states of ids in a few batched requests (a page of a
// batch, say); ids without a state (unknown, or still in the queue) are
// absent from the result.
func (r *reads) jobStates(ctx context.Context, ids []string) (map[string]*reelq.JobState, error) {
	out := make(map[string]*reelq.JobState, len(ids))
	for start := 0; start < len(ids); start += store.MaxMultiLast * 4 {
		vals, err := r.s.KVValues(ctx, wire.BucketJobs, ids[start:min(start+store.MaxMultiLast*4, len(ids))])
		if err != nil {
			return nil, fmt.Errorf("reelq: job states: %w", err)
		}
		for id, data := range vals {
			if st, ok := decodeJobState(stored{Data: data}); ok {
				out[id] = st
			}
		}
	}
	return out, nil
}

// indexCursor is a position in a batch's index (see batchIndex): the
// BATCHES sequence of a chunk and how many of its ids come before it.
type indexCursor struct {
	Seq  uint64
	Skip int
}

// batchIndex reads up to limit job ids of batch from its index (the jobs
// a worker has picked up, in the order they were), from cursor on (the
// zero cursor: from the start). It returns the cursor after the last id
// and whether more may follow. It reads only the chunks it returns,
// however large the batch; an id the workers indexed twice (a job
// redelivered) can appear on two pages.
func (r *reads) batchIndex(ctx context.Context, batch string, from indexCursor, limit int) (ids []string, next indexCursor, more bool, err error) {
	if !reelq.ValidID(batch) {
		return nil, from, false, fmt.Errorf("%w: batch %q", reelq.ErrInvalidJob, batch)
	}
	if limit <= 0 {
		limit = 100
	}
	seq, skip := max(from.Seq, 1), from.Skip
	next = indexCursor{Seq: seq, Skip: skip}
	seen := map[string]bool{}
	for len(ids) < limit {
		n := 0
		full := false
		cctx, cancel := r.s.ReqCtx(ctx)
		err = r.s.DirectBatch(cctx, wire.StreamBatches, map[string]any{"seq": seq, "next_by_subj": wire.BatchIndexSubject(batch), "batch": 16}, func(m store.Msg) bool {
			n++
			var chunk []string
			if json.Unmarshal(m.Data, &chunk) != nil {
				chunk = nil
			}
			if m.Seq != seq {
				skip = 0
			}
			i := skip
			for ; i < len(chunk) && len(ids) < limit; i++ {
				if id := chunk[i]; !seen[id] {
					seen[id] = true
					ids = append(ids, id)
				}
			}
			if i < len(chunk) {
				next, full = indexCursor{Seq: m.Seq, Skip: i}, true
				return false
			}
			next, seq, skip = indexCursor{Seq: m.Seq + 1}, m.Seq+1, 0
			return len(ids) < limit
		})
		cancel()
		if err != nil {
			return ids, next, false, fmt.Errorf("reelq: batch index %s: %w", batch, err)
		}
		if full {
			return ids, next, true, nil
		}
		if n == 0 {
			return ids, next, false, nil
		}
	}
	return ids, next, true, nil
}

// batchStarted is when a worker first picked up one of batch's jobs (the
// first chunk of its index), or, before that, when its jobs were last
// counted as published; zero when neither is kept any more.
func (r *reads) batchStarted(ctx context.Context, batch string) (time.Time, error) {
	if !reelq.ValidID(batch) {
		return time.Time{}, fmt.Errorf("%w: batch %q", reelq.ErrInvalidJob, batch)
	}
	for _, q := range []struct{ stream, subj string }{
		{wire.StreamBatches, wire.BatchIndexSubject(batch)},
		{wire.StreamCounters, wire.BatchCounterSubject(batch, "enqueued")},
	} {
		var t time.Time
		cctx, cancel := r.s.ReqCtx(ctx)
		err := r.s.DirectBatch(cctx, q.stream, map[string]any{"seq": 1, "next_by_subj": q.subj, "batch": 1}, func(m store.Msg) bool {
			t = m.Time
			return false
		})
		cancel()
		if err != nil {
			return time.Time{}, fmt.Errorf("reelq: batch %s start: %w", batch, err)
		}
		if !t.IsZero() {
			return t, nil
		}
	}
	return time.Time{}, nil
}
