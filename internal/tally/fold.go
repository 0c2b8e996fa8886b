package tally

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// chunkMax bounds the results one chunk folds; page the results read per
// direct get.
const (
	chunkMax = 4096
	page     = 512
)

// add is one result's contribution to one count.
type add struct {
	seq uint64
	by  uint64
}

// cached is the last value and revision a folder read or wrote of a key:
// the next write tries that revision first, without reading.
type cached struct {
	rev, n, through uint64
}

// maxCached bounds the folder's cache of keys (one per batch and status):
// past it the cache starts again empty.
const maxCached = 10_000

// folder folds chunks of RESULTS into the tallies bucket. It is used by
// one goroutine (its Folder's).
type folder struct {
	s     *store.Store
	kv    jetstream.KeyValue
	pos   uint64 // the sequence this folder has folded through
	cache map[string]cached
	// beforeWrite, if set, runs when a count is read and its new value
	// about to be written; afterKey after each count a chunk has written
	// (tests stop a folder there, or run another).
	beforeWrite func(key string)
	afterKey    func(key string)
}

// foldChunk folds the results stored after the checkpoint (or this
// folder's own position, if further), up to chunkMax of them. more says
// whether results are left to fold.
func (f *folder) foldChunk(ctx context.Context) (n int, more bool, err error) {
	if f.cache == nil || len(f.cache) > maxCached {
		f.cache = map[string]cached{}
	}
	through, err := f.read(ctx, wire.TallyThroughKey)
	if err != nil {
		return 0, false, err
	}
	f.cache[wire.TallyThroughKey] = through
	start := max(through.through, f.pos) + 1
	last, err := f.s.LastSeq(ctx, wire.StreamResults)
	if err != nil {
		return 0, false, fmt.Errorf("results' last sequence: %w", err)
	}
	if last < start {
		f.pos = start - 1
		return 0, false, nil
	}
	adds := map[string][]add{}
	end, pending := start-1, uint64(0)
	for n < chunkMax {
		cctx, cancel := f.s.ReqCtx(ctx)
		got := 0
		pending, err = f.s.DirectPage(cctx, wire.StreamResults, map[string]any{"seq": end + 1, "batch": min(page, chunkMax-n)}, func(m store.Msg) bool {
			end, got = m.Seq, got+1
			var r reelq.Result
			if json.Unmarshal(m.Data, &r) == nil {
				increments(&r, func(key string, by uint64) { adds[key] = append(adds[key], add{m.Seq, by}) })
			}
			return true
		})
		cancel()
		if err != nil {
			return 0, false, fmt.Errorf("read results from %d: %w", end+1, err)
		}
		n += got
		if pending == 0 || got == 0 {
			break
		}
	}
	if pending == 0 {
		// Every result stored up to last was read (deleted ones are
		// skipped): the chunk reaches last even if its own last result
		// is older.
		end = max(end, last)
	}
	keys := make([]string, 0, len(adds))
	for k := range adds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := f.apply(ctx, k, adds[k]); err != nil {
			return 0, false, fmt.Errorf("tally %s: %w", k, err)
		}
		if f.afterKey != nil {
			f.afterKey(k)
		}
	}
	if err := f.apply(ctx, wire.TallyThroughKey, []add{{seq: end}}); err != nil {
		return 0, false, fmt.Errorf("tally checkpoint: %w", err)
	}
	f.pos = end
	return n, pending > 0, nil
}

// apply adds to key the adds (in stream order) past its through, with
// compare-and-set on its revision: on a conflict (another folder moved it)
// it reads the key again and adds only what is still missing.
func (f *folder) apply(ctx context.Context, key string, adds []add) error {
	c, ok := f.cache[key]
	for {
		if !ok {
			var err error
			if c, err = f.read(ctx, key); err != nil {
				return err
			}
		}
		n, through := c.n, c.through
		for _, a := range adds {
			if a.seq > through {
				n, through = n+a.by, a.seq
			}
		}
		if through == c.through {
			f.cache[key] = c
			return nil
		}
		if f.beforeWrite != nil {
			f.beforeWrite(key)
		}
		cctx, cancel := f.s.ReqCtx(ctx)
		var rev uint64
		var err error
		if c.rev == 0 {
			rev, err = f.kv.Create(cctx, key, encode(n, through))
		} else {
			rev, err = f.kv.Update(cctx, key, encode(n, through), c.rev)
		}
		cancel()
		switch {
		case err == nil:
			f.cache[key] = cached{rev: rev, n: n, through: through}
			return nil
		case errors.Is(err, jetstream.ErrKeyExists):
			ok = false // moved by another folder (or expired): read it again
		default:
			delete(f.cache, key)
			return err
		}
	}
}

// read reads key's count and revision (zero when absent).
func (f *folder) read(ctx context.Context, key string) (cached, error) {
	cctx, cancel := f.s.ReqCtx(ctx)
	defer cancel()
	e, err := f.kv.Get(cctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return cached{}, nil
	case err != nil:
		return cached{}, err
	}
	n, through := Decode(e.Value())
	return cached{rev: e.Revision(), n: n, through: through}, nil
}
