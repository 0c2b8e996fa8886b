package inspect

import (
	"context"
	"fmt"
	"math"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// DeadLettersPage lists up to limit dead letters, oldest first, from the
// DLQ sequence after on (0: from the oldest kept). It reads only what it
// returns, however long the DLQ is.
func (c *Inspector) DeadLettersPage(ctx context.Context, after uint64, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	if after == math.MaxUint64 {
		return nil, nil // nothing comes after the last sequence
	}
	var out []DeadLetter
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	err := c.s.DirectBatch(cctx, wire.StreamDLQ, map[string]any{"seq": after + 1, "batch": limit}, func(m store.Msg) bool {
		out = append(out, deadLetter(m))
		return len(out) < limit
	})
	if err != nil {
		return out, fmt.Errorf("reelq: dead letters: %w", err)
	}
	return out, nil
}

// DeadLetterAt returns the dead letter at DLQ sequence seq.
func (c *Inspector) DeadLetterAt(ctx context.Context, seq uint64) (DeadLetter, error) {
	if seq == 0 {
		return DeadLetter{}, fmt.Errorf("reelq: dead letter 0: %w (sequences start at 1)", reelq.ErrNotFound)
	}
	var out *DeadLetter
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	err := c.s.DirectBatch(cctx, wire.StreamDLQ, map[string]any{"seq": seq, "batch": 1}, func(m store.Msg) bool {
		if m.Seq == seq {
			d := deadLetter(m)
			out = &d
		}
		return false
	})
	if err != nil {
		return DeadLetter{}, fmt.Errorf("reelq: dead letter %d: %w", seq, err)
	}
	if out == nil {
		return DeadLetter{}, fmt.Errorf("reelq: dead letter %d: %w", seq, reelq.ErrNotFound)
	}
	return *out, nil
}

// DeadLetterCount is how many messages the DLQ holds.
func (c *Inspector) DeadLetterCount(ctx context.Context) (uint64, error) {
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	s, err := c.js.Stream(cctx, wire.StreamDLQ)
	if err != nil {
		return 0, fmt.Errorf("reelq: dead letters: %w", err)
	}
	info, err := s.Info(cctx)
	if err != nil {
		return 0, fmt.Errorf("reelq: dead letters: %w", err)
	}
	return info.State.Msgs, nil
}
