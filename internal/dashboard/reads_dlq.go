package dashboard

import (
	"context"
	"fmt"
	"math"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// deadLettersPage lists up to limit dead letters, oldest first, from the
// DLQ sequence after on (0: from the oldest kept). It reads only what it
// returns, however long the DLQ is.
func (r *reads) deadLettersPage(ctx context.Context, after uint64, limit int) ([]inspect.DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	if after == math.MaxUint64 {
		return nil, nil // nothing comes after the last sequence
	}
	var out []inspect.DeadLetter
	cctx, cancel := r.s.ReqCtx(ctx)
	defer cancel()
	err := r.s.DirectBatch(cctx, wire.StreamDLQ, map[string]any{"seq": after + 1, "batch": limit}, func(m store.Msg) bool {
		out = append(out, deadLetter(m))
		return len(out) < limit
	})
	if err != nil {
		return out, fmt.Errorf("reelq: dead letters: %w", err)
	}
	return out, nil
}

// deadLetterAt returns the dead letter at DLQ sequence seq.
func (r *reads) deadLetterAt(ctx context.Context, seq uint64) (inspect.DeadLetter, error) {
	if seq == 0 {
		return inspect.DeadLetter{}, fmt.Errorf("reelq: dead letter 0: %w (sequences start at 1)", reelq.ErrNotFound)
	}
	var out *inspect.DeadLetter
	cctx, cancel := r.s.ReqCtx(ctx)
	defer cancel()
	err := r.s.DirectBatch(cctx, wire.StreamDLQ, map[string]any{"seq": seq, "batch": 1}, func(m store.Msg) bool {
		if m.Seq == seq {
			d := deadLetter(m)
			out = &d
		}
		return false
	})
	if err != nil {
		return inspect.DeadLetter{}, fmt.Errorf("reelq: dead letter %d: %w", seq, err)
	}
	if out == nil {
		return inspect.DeadLetter{}, fmt.Errorf("reelq: dead letter %d: %w", seq, reelq.ErrNotFound)
	}
	return *out, nil
}

// deadLetterCount is how many messages the DLQ holds.
func (r *reads) deadLetterCount(ctx context.Context) (uint64, error) {
	cctx, cancel := r.s.ReqCtx(ctx)
	defer cancel()
	s, err := r.js.Stream(cctx, wire.StreamDLQ)
	if err != nil {
		return 0, fmt.Errorf("reelq: dead letters: %w", err)
	}
	info, err := s.Info(cctx)
	if err != nil {
		return 0, fmt.Errorf("reelq: dead letters: %w", err)
	}
	return info.State.Msgs, nil
}

// deadLetter is inspect's DeadLetter of a DLQ message (the headers the
// worker's publishDLQ sets).
func deadLetter(m store.Msg) inspect.DeadLetter {
	return inspect.DeadLetter{Seq: m.Seq, Time: m.Time, Provider: m.Header.Get("Reelq-Provider"), JobID: m.Header.Get("Reelq-Job-Id"),
		Subject: m.Header.Get("Reelq-Subject"), Code: m.Header.Get("Reelq-Error-Code"), Reason: m.Header.Get("Reelq-Error"),
		Data: m.Data, Header: m.Header}
}
