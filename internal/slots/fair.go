package slots

import (
	"cmp"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"time"
)

// MaxKeys is the number of fairness keys a worker advertises at most; a
// worker with more waiting keys advertises the first MaxKeys (by hash).
const MaxKeys = 32

// KeyHash is the short form of a fairness key advertised in the slots
// bucket (12 hex digits of FNV-1a): it bounds the value's size and keeps
// tenant names out of it.
func KeyHash(key string) string {
	h := fnv.New64a()
	h.Write([]byte(key))
	s := strconv.FormatUint(h.Sum64()&(1<<48-1), 16)
	for len(s) < 12 {
		s = "0" + s
	}
	return s
}

// holderDemand is one live holder with demand, as the fairness plan sees it.
type holderDemand struct {
	id   string
	want int
	n    int
	keys []string // hashes; a holder without keys has a key of its own
}

// wanting returns the live holders of holders with want > 0, me replaced by
// mine (this worker's current local demand), sorted by id.
func wanting(holders map[string]entry, me string, mine entry, now time.Time) []holderDemand {
	var out []holderDemand
	add := func(id string, e entry) {
		if e.Want <= 0 {
			return
		}
		keys := e.Keys
		if len(keys) == 0 {
			keys = []string{"#" + id}
		}
		out = append(out, holderDemand{id: id, want: e.Want, n: e.N, keys: keys})
	}
	for id, e := range holders {
		if id != me && e.live(now) {
			add(id, e)
		}
	}
	add(me, mine)
	slices.SortFunc(out, func(a, b holderDemand) int { return cmp.Compare(a.id, b.id) })
	return out
}

// waterfill splits total capacity among keys, equally where it can: each
// key gets an equal part of what is left, drawn from the holders that have
// it (each holder gives at most its capacity), keys with the fewest
// holders first so that a key only one holder can serve gets that holder's
// capacity before keys every holder can serve; capacity no key could take
// goes to the holders' keys afterwards (work-conserving). It returns, per
// holder (by index in hs), the capacity planned for each of its keys.
// Every worker computes the same plan from the same view.
func waterfill(total float64, hs []holderDemand, capOf func(holderDemand) float64) []map[string]float64 {
	plan := make([]map[string]float64, len(hs))
	rem := make([]float64, len(hs))
	byKey := map[string][]int{}
	for i, h := range hs {
		plan[i] = map[string]float64{}
		rem[i] = capOf(h)
		for _, k := range h.keys {
			byKey[k] = append(byKey[k], i)
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(len(byKey[a]), len(byKey[b])); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	// unprocessed[i]: keys of holder i not planned yet.
	unprocessed := make([]int, len(hs))
	for i, h := range hs {
		unprocessed[i] = len(h.keys)
	}
	budget := total
	for ki, k := range keys {
		need := budget / float64(len(keys)-ki)
		idx := slices.Clone(byKey[k])
		// Draw first from the holders with the fewest other keys still to
		// plan, so capacity others could use for those keys is left to
		// them; equally among holders alike in that.
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(unprocessed[a], unprocessed[b]) })
		for g := 0; g < len(idx); {
			e := g
			for e < len(idx) && unprocessed[idx[e]] == unprocessed[idx[g]] {
				e++
			}
			group := slices.Clone(idx[g:e])
			slices.SortStableFunc(group, func(a, b int) int { return cmp.Compare(rem[a], rem[b]) })
			for gi, i := range group {
				if need <= 1e-9 {
					break
				}
				take := math.Min(need/float64(len(group)-gi), rem[i])
				if take > 0 {
					plan[i][k] += take
					rem[i] -= take
					need -= take
					budget -= take
				}
			}
			g = e
		}
		for _, i := range idx {
			unprocessed[i]--
		}
	}
	// Leftover capacity: to each holder's keys equally, within the budget.
	for i, h := range hs {
		if budget <= 1e-9 {
			break
		}
		if take := math.Min(rem[i], budget); take > 1e-9 {
			for _, k := range h.keys {
				plan[i][k] += take / float64(len(h.keys))
			}
			rem[i] -= take
			budget -= take
		}
	}
	return plan
}

// entitlements is each wanting holder's fair number of slots: the
// capacity planned for it by waterfill over the holders' demand (want),
// made whole numbers by largest remainder, with at least one slot each
// while the holders are no more than capacity. Holders are listed by id, so
// ties go the same way on every worker. Holders not listed are entitled to
// nothing.
func entitlements(hs []holderDemand, capacity int) map[string]int {
	ent := make(map[string]int, len(hs))
	if len(hs) == 0 || capacity <= 0 {
		return ent
	}
	if len(hs) > capacity {
		// More holders than slots: one each, as many as get one.
		for _, h := range hs {
			ent[h.id] = 1
		}
		return ent
	}
	plan := waterfill(float64(capacity), hs, func(h holderDemand) float64 { return float64(h.want) })
	share := make([]float64, len(hs))
	left := capacity
	for i, h := range hs {
		for _, x := range plan[i] {
			share[i] += x
		}
		ent[h.id] = 1
		left--
	}
	// The rest by largest remainder over share-1.
	type rest struct {
		i    int
		frac float64
	}
	var rs []rest
	for i, h := range hs {
		extra := math.Max(0, math.Min(share[i], float64(h.want))-1)
		whole := int(math.Floor(extra + 1e-9))
		whole = min(whole, left)
		ent[h.id] += whole
		left -= whole
		rs = append(rs, rest{i: i, frac: extra - float64(whole)})
	}
	slices.SortStableFunc(rs, func(a, b rest) int { return cmp.Compare(b.frac, a.frac) })
	for _, r := range rs {
		if left == 0 {
			break
		}
		if r.frac > 1e-9 && ent[hs[r.i].id] < hs[r.i].want {
			ent[hs[r.i].id]++
			left--
		}
	}
	return ent
}

// keyWeights is how this worker should divide the slots it holds among its
// fairness keys so that, with the other holders doing the same, every key
// gets an equal part of the provider cluster-wide: waterfill over the slots
// the holders hold now. Nil when this worker holds none or has no keys.
func keyWeights(hs []holderDemand, me string) map[string]float64 {
	total := 0
	mine := -1
	for i, h := range hs {
		total += h.n
		if h.id == me {
			mine = i
		}
	}
	if mine < 0 || hs[mine].n == 0 {
		return nil
	}
	plan := waterfill(float64(total), hs, func(h holderDemand) float64 { return float64(h.n) })
	return plan[mine]
}
