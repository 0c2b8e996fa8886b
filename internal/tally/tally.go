// Package tally folds the result events of RESULTS into the done and
// spend counts per batch and per provider, off the job path: one worker
// at a time (the holder of a lease) reads RESULTS in stream order, in
// chunks, and adds each chunk to the counts in the tallies bucket
// (wire.BucketTallies) with compare-and-set.
//
// # Exactly once
//
// Each count's value carries the RESULTS sequence of the last result
// counted in it ("through"). A chunk adds to a count only the results
// past its through, and writes the sum with the revision it read: a
// conflict reads the count again and adds only what is still missing. A
// checkpoint (wire.TallyThroughKey) says the sequence every count is
// folded through; it moves after every count of a chunk has. A folder
// stopped mid-chunk, or two folders at once (a lease handed over while the
// old holder still runs), therefore count every stored result once. A
// result is counted because it is stored, once, whatever republished it:
// no duplicate window is involved.
package tally

import (
	"encoding/json"
	"strconv"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/wire"
)

// Value is a count as stored: Val in the form of a JetStream counter's
// value (so store.CounterValue reads both), Through the RESULTS sequence
// of the last result counted in it.
type Value struct {
	Val     string `json:"val,omitempty"`
	Through uint64 `json:"through"`
}

// Decode reads a stored value; a value it cannot read counts as empty.
func Decode(data []byte) (n uint64, through uint64) {
	var v Value
	if json.Unmarshal(data, &v) != nil {
		return 0, 0
	}
	n, _ = strconv.ParseUint(v.Val, 10, 64)
	return n, v.Through
}

func encode(n, through uint64) []byte {
	b, _ := json.Marshal(Value{Val: strconv.FormatUint(n, 10), Through: through})
	return b
}

// increments are the counts result r adds to, by key: done_<status> of its
// batch and of its provider, and its estimated spend (in millionths of the
// unit) per batch and per provider: what the workers counted in COUNTERS
// before the fold. A result whose names cannot make a key (only workers
// publish results; this is a message of some other program) counts
// nothing: a key the bucket refuses would stop the fold.
func increments(r *reelq.Result, add func(key string, by uint64)) {
	if !reelq.ValidID(r.Provider) || !reelq.ValidID(r.Status) || (r.Batch != "" && !reelq.ValidID(r.Batch)) {
		return
	}
	if r.Batch != "" {
		add(wire.TallyKey("batch", r.Batch, "done_"+r.Status), 1)
	}
	add(wire.TallyKey("provider", r.Provider, "done_"+r.Status), 1)
	if r.Cost != nil && r.Cost.Amount > 0 && reelq.ValidID(r.Cost.Unit) {
		micro := uint64(money.FromFloat(r.Cost.Amount))
		field := wire.SpendCounterField(r.Cost.Unit)
		if r.Batch != "" {
			add(wire.TallyKey("batch", r.Batch, field), micro)
		}
		add(wire.TallyKey("provider", r.Provider, field), micro)
	}
}
