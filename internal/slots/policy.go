package slots

import (
	"slices"
	"time"
)

// entry is one holder's record in the provider's key.
type entry struct {
	N int `json:"n"` // slots held
	// Until is the lease expiry on the server's clock: Renewed + TTL (see
	// normalize). Entries written by older releases carry no TTL: their
	// Until is their writer's clock, taken as it is.
	Until time.Time `json:"until"`
	Want  int       `json:"want"` // slots the holder could use now
	Top   int       `json:"top"`  // highest priority rank among its waiting jobs
	// Keys are the hashes (KeyHash) of the fairness keys of its jobs at
	// rank Top, at most MaxKeys, sorted; none: a key of its own.
	Keys []string `json:"keys,omitempty"`
	// Renewed is the server's timestamp of the write that last renewed the
	// lease; absent in the entry the value's own write renewed (its holder
	// made that write), which then renewed at the value's timestamp.
	Renewed *time.Time `json:"renewed,omitempty"`
	// TTL is the lease length from Renewed, in milliseconds.
	TTL int64 `json:"ttl_ms,omitempty"`
}

// value is the JSON stored under the provider's key.
type value struct {
	Holders map[string]entry `json:"holders"`
}

func (e entry) live(now time.Time) bool { return e.Until.After(now) }

// normalize returns holders as read from a value the server stored at
// stamp: every lease measured from the server's timestamp of the write
// that renewed it (Renewed, or stamp for the entry whose holder made this
// write), never from a holder's clock. A zero stamp (not known) leaves the
// entries as written.
func normalize(holders map[string]entry, stamp time.Time) map[string]entry {
	if stamp.IsZero() {
		return holders
	}
	out := make(map[string]entry, len(holders))
	for id, e := range holders {
		if e.TTL > 0 {
			r := stamp
			if e.Renewed != nil {
				r = *e.Renewed
			}
			e.Renewed = &r
			e.Until = r.Add(time.Duration(e.TTL) * time.Millisecond)
		}
		out[id] = e
	}
	return out
}

func (e entry) unmet() int { return max(0, e.Want-e.N) }

// fairShares is every wanting holder's entitlement (see entitlements),
// counting this worker with its local demand mine.
func fairShares(holders map[string]entry, me string, mine entry, now time.Time, capacity int) map[string]int {
	return entitlements(wanting(holders, me, mine, now), capacity)
}

// othersHeld is the sum of n over live holders other than me.
func othersHeld(holders map[string]entry, me string, now time.Time) int {
	s := 0
	for id, e := range holders {
		if id != me && e.live(now) {
			s += e.N
		}
	}
	return s
}

// claims is the unmet demand of the live holders that come before this
// worker for a slot it would take for a job of priority top, split by
// reason: higher is owed to holders with a higher top (all their unmet
// demand), equal to holders with the same top below their fair share
// (up to the fair share; they come first only once this worker holds its
// own fair share).
func claims(holders map[string]entry, me string, now time.Time, top int, fair map[string]int) (higher, equal int) {
	for id, e := range holders {
		if id == me || !e.live(now) || e.unmet() == 0 {
			continue
		}
		switch {
		case e.Top > top:
			higher += e.unmet()
		case e.Top == top && e.N < fair[id]:
			equal += min(e.Want, fair[id]) - e.N
		}
	}
	return higher, equal
}

// request is what one compare-and-set wants for this worker's entry.
type request struct {
	me       string
	capacity int
	keep     int // slots to keep (normally the committed n minus pending releases)
	add      int // extra slots wanted
	addTop   int // priority of the jobs the extra slots are for
	want     int // demand to advertise
	top      int
	keys     []string
	until    time.Time     // new lease expiry (server clock, estimated)
	ttl      time.Duration // lease length from the write
}

// outcome is the allocation a request leads to.
type outcome struct {
	next    map[string]entry // the value to write: expired holders pruned
	n       int              // this worker's slots after the write
	granted int              // of add
	changed bool             // next differs from the current value in anything but leases and pruning
}

// decide computes the next value of the key from cur at time now. It never
// raises the sum of n over live holders above r.capacity: slots kept from a
// lease that is no longer live (or was pruned) are claimed again like new
// ones, within free, and new slots are granted only within free minus the
// claims of holders that come first (see claims). Releases, renewals and
// demand updates are always possible.
func decide(cur map[string]entry, now time.Time, r request) outcome {
	next := make(map[string]entry, len(cur)+1)
	others := 0
	for id, e := range cur {
		if id == r.me || !e.live(now) {
			continue
		}
		next[id] = e
		others += e.N
	}
	mine, had := cur[r.me]
	curN := 0
	if had && mine.live(now) {
		curN = mine.N
	}
	base := max(0, r.keep)
	if base > curN { // reclaim a lost lease only within free
		base = curN + max(0, min(base-curN, r.capacity-others-curN))
	}
	granted := 0
	if free := r.capacity - others - base; r.add > 0 && free > 0 {
		fairs := fairShares(next, r.me, entry{N: base, Want: max(r.want, base+r.add), Top: r.top, Keys: r.keys}, now, r.capacity)
		fair := fairs[r.me]
		higher, equal := claims(next, r.me, now, r.addTop, fairs)
		avail := free - higher
		if avail > 0 {
			granted = min(r.add, avail)
			// Up to its fair share this worker competes with equal-top
			// holders on arrival order; beyond it, their shortfall first.
			if room := max(0, fair-base); granted > room {
				granted = room + max(0, min(granted-room, avail-room-equal))
			}
		}
	}
	n := base + granted
	if n > 0 || r.want > 0 {
		next[r.me] = entry{N: n, Until: r.until, Want: r.want, Top: r.top, Keys: r.keys, TTL: r.ttl.Milliseconds()}
	}
	changed := had != (n > 0 || r.want > 0) ||
		(had && (mine.N != n || mine.Want != r.want || mine.Top != r.top || !slices.Equal(mine.Keys, r.keys) || !mine.live(now)))
	return outcome{next: next, n: n, granted: granted, changed: changed}
}

// shouldYield is Yield's policy: whether this worker (holding held slots,
// local demand want) should give one slot back instead of reusing it for a
// waiting job of priority myTop.
//
// It yields when the live holders together hold more than capacity (caps
// disagree or were lowered), or when holders that come before it (a higher
// top with unmet demand, or the same top below the fair share while this
// worker holds more than it) need more than is free now.
func shouldYield(holders map[string]entry, me string, now time.Time, capacity, held, want, myTop int, keys []string) bool {
	if held <= 0 {
		return false
	}
	others := othersHeld(holders, me, now)
	if others+held > capacity {
		return true
	}
	fairs := fairShares(holders, me, entry{N: held, Want: want, Top: myTop, Keys: keys}, now, capacity)
	higher, equal := claims(holders, me, now, myTop, fairs)
	need := higher
	if held > fairs[me] {
		need += equal
	}
	return need > capacity-others-held
}

// Holder is one live holder's share of a provider's slots.
type Holder struct {
	// Worker names the holder: "<worker id>/<incarnation>" (see workerOf).
	Worker string    `json:"worker"`
	N      int       `json:"n"`
	Want   int       `json:"want"`
	Top    int       `json:"top"`
	Until  time.Time `json:"until"`
}

// Allocation is a snapshot of a provider's slots as this worker sees them.
type Allocation struct {
	Provider string `json:"provider"`
	Worker   string `json:"worker"`
	Cap      int    `json:"cap"`
	// Revision is the KV revision of the view (0: none yet).
	Revision uint64 `json:"revision"`
	// Holders are the live holders, this worker included, by worker id.
	Holders []Holder `json:"holders"`
	// Held is this worker's usable slots (see Pool.Held).
	Held int `json:"held"`
	// Free is Cap minus the slots of live holders; negative when they
	// hold more than this worker's Cap.
	Free int `json:"free"`
	// Demand is the sum of want over live holders; Unmet the sum of
	// want - n where positive (jobs waiting for a slot).
	Demand int `json:"demand"`
	Unmet  int `json:"unmet"`
	// Writes and Conflicts count this pool's committed compare-and-set
	// writes and the ones lost to another writer since New.
	Writes    uint64 `json:"writes"`
	Conflicts uint64 `json:"conflicts"`
}

// allocation summarises holders at now. Holders must already hold this
// worker's current entry.
func allocation(holders map[string]entry, now time.Time, capacity int) Allocation {
	a := Allocation{Cap: capacity, Free: capacity}
	for id, e := range holders {
		if !e.live(now) {
			continue
		}
		a.Holders = append(a.Holders, Holder{Worker: id, N: e.N, Want: e.Want, Top: e.Top, Until: e.Until})
		a.Free -= e.N
		a.Demand += e.Want
		a.Unmet += e.unmet()
	}
	slices.SortFunc(a.Holders, func(x, y Holder) int {
		if x.Worker < y.Worker {
			return -1
		}
		if x.Worker > y.Worker {
			return 1
		}
		return 0
	})
	return a
}

// nextExpiry is the earliest lease expiry after now among holders other
// than me (zero if none).
func nextExpiry(holders map[string]entry, me string, now time.Time) time.Time {
	var t time.Time
	for id, e := range holders {
		if id != me && e.live(now) && (t.IsZero() || e.Until.Before(t)) {
			t = e.Until
		}
	}
	return t
}
