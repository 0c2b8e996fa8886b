package slots

import (
	"testing"
	"testing/synctest"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func live(n, want, top int) entry {
	return entry{N: n, Until: t0.Add(time.Minute), Want: want, Top: top}
}

func expired(n, want, top int) entry {
	return entry{N: n, Until: t0.Add(-time.Second), Want: want, Top: top}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	until := t0.Add(time.Minute)
	for _, tc := range []struct {
		name    string
		cur     map[string]entry
		r       request
		n       int
		granted int
		changed bool
		absent  bool // "me" not in next
	}{
		{name: "empty key grants min(k, cap)", r: request{add: 5, addTop: 2, want: 5, top: 2}, n: 4, granted: 4, changed: true},
		{name: "within free", cur: map[string]entry{"x": live(3, 3, 0)}, r: request{add: 2, addTop: 2}, n: 1, granted: 1, changed: true},
		{name: "nothing free, no demand change: no write",
			cur: map[string]entry{"x": live(3, 3, 0), "me": live(1, 1, 0)},
			r:   request{keep: 1, add: 1, addTop: 2, want: 1, top: 0}, n: 1, changed: false},
		{name: "expired holders are pruned and their slots free",
			cur: map[string]entry{"x": expired(4, 4, 3)}, r: request{add: 4, addTop: 1}, n: 4, granted: 4, changed: true},
		{name: "higher top with unmet demand keeps free slots",
			cur: map[string]entry{"x": live(2, 3, 3), "me": live(1, 2, 2)},
			r:   request{keep: 1, add: 1, addTop: 2, want: 2, top: 2}, n: 1, changed: false},
		{name: "higher top keeps only what it lacks",
			cur: map[string]entry{"x": live(0, 1, 3)}, r: request{add: 4, addTop: 2, want: 4, top: 2}, n: 3, granted: 3, changed: true},
		{name: "lower top does not block",
			cur: map[string]entry{"x": live(0, 4, 1)}, r: request{add: 4, addTop: 2, want: 4, top: 2}, n: 4, granted: 4, changed: true},
		{name: "equal top below fair share first once I hold my share",
			cur: map[string]entry{"x": live(1, 3, 2), "me": live(2, 4, 2)},
			r:   request{keep: 2, add: 1, addTop: 2, want: 4, top: 2}, n: 2, changed: false},
		{name: "equal top: up to my fair share first come",
			cur: map[string]entry{"x": live(0, 3, 2)}, r: request{add: 4, addTop: 2, want: 4, top: 2}, n: 2, granted: 2, changed: true},
		{name: "equal top at its fair share does not block",
			cur: map[string]entry{"x": live(2, 3, 2), "me": live(2, 4, 2)},
			r:   request{capacity: 5, keep: 2, add: 1, addTop: 2, want: 4, top: 2}, n: 3, granted: 1, changed: true},
		{name: "release is a change",
			cur: map[string]entry{"me": live(3, 3, 2)}, r: request{keep: 1, want: 3, top: 2}, n: 1, changed: true},
		{name: "release and no demand removes the entry",
			cur: map[string]entry{"me": live(3, 3, 2)}, r: request{keep: 0}, n: 0, changed: true, absent: true},
		{name: "release allowed over cap",
			cur: map[string]entry{"x": live(4, 4, 0), "me": live(3, 3, 0)}, r: request{keep: 2, want: 3}, n: 2, changed: true},
		{name: "renewal over cap keeps its slots",
			cur: map[string]entry{"x": live(4, 4, 0), "me": live(3, 3, 0)}, r: request{keep: 3, want: 3}, n: 3, changed: false},
		{name: "expired own lease is claimed back within free",
			cur: map[string]entry{"x": live(3, 3, 0), "me": expired(3, 3, 0)}, r: request{keep: 3, want: 3}, n: 1, changed: true},
		{name: "removed own entry is claimed back within free",
			cur: map[string]entry{"x": live(4, 4, 0)}, r: request{keep: 2, want: 2}, n: 0, changed: true},
		{name: "demand only", cur: map[string]entry{"x": live(4, 4, 0)}, r: request{add: 0, want: 2, top: 3}, n: 0, changed: true},
		{name: "no entry, nothing wanted: no write", cur: map[string]entry{"x": live(4, 4, 0)}, r: request{}, n: 0, changed: false, absent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			r.me, r.until = "me", until
			if r.capacity == 0 {
				r.capacity = 4
			}
			out := decide(tc.cur, t0, r)
			if out.n != tc.n || out.granted != tc.granted || out.changed != tc.changed {
				t.Errorf("n=%d granted=%d changed=%v; want n=%d granted=%d changed=%v", out.n, out.granted, out.changed, tc.n, tc.granted, tc.changed)
			}
			mine, ok := out.next["me"]
			if ok == tc.absent {
				t.Errorf("entry present = %v, want %v", ok, !tc.absent)
			}
			if ok && (mine.N != out.n || !mine.Until.Equal(until) || mine.Want != r.want || mine.Top != r.top) {
				t.Errorf("entry %+v", mine)
			}
			sum, before := 0, 0
			for id, e := range out.next {
				if !e.live(t0) {
					t.Errorf("expired holder %s kept", id)
				}
				sum += e.N
			}
			for _, e := range tc.cur {
				if e.live(t0) {
					before += e.N
				}
			}
			if sum > r.capacity && sum > before {
				t.Errorf("write raises the live sum to %d over Cap %d", sum, r.capacity)
			}
		})
	}
}

func TestShouldYield(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		holders  map[string]entry
		capacity int
		held     int
		want     int
		myTop    int
		yield    bool
	}{
		{name: "nobody waiting", holders: map[string]entry{"x": live(1, 1, 0)}, capacity: 4, held: 3, want: 5, myTop: 2},
		{name: "higher top waiting", holders: map[string]entry{"x": live(0, 1, 3)}, capacity: 4, held: 4, want: 5, myTop: 2, yield: true},
		{name: "higher top waiting, free slot covers it", holders: map[string]entry{"x": live(0, 1, 3)}, capacity: 4, held: 3, want: 5, myTop: 2},
		{name: "higher top holder satisfied", holders: map[string]entry{"x": live(1, 1, 3)}, capacity: 2, held: 1, want: 5, myTop: 2},
		{name: "lower top waiting", holders: map[string]entry{"x": live(0, 3, 1)}, capacity: 4, held: 4, want: 5, myTop: 2},
		{name: "equal top below fair, I above", holders: map[string]entry{"x": live(1, 3, 2)}, capacity: 4, held: 3, want: 5, myTop: 2, yield: true},
		{name: "equal top below fair, I at fair", holders: map[string]entry{"x": live(0, 3, 2), "y": live(3, 3, 1)}, capacity: 4, held: 1, want: 3, myTop: 2},
		{name: "equal top at fair", holders: map[string]entry{"x": live(2, 3, 2)}, capacity: 4, held: 2, want: 5, myTop: 2},
		{name: "idle slot (top none) and anyone waiting", holders: map[string]entry{"x": live(0, 1, 1)}, capacity: 1, held: 1, want: 1, myTop: 0, yield: true},
		{name: "expired waiter ignored", holders: map[string]entry{"x": expired(0, 1, 3)}, capacity: 4, held: 4, want: 5, myTop: 2},
		{name: "over cap", holders: map[string]entry{"x": live(3, 3, 0)}, capacity: 4, held: 2, want: 2, myTop: 3, yield: true},
		{name: "holding nothing", holders: map[string]entry{"x": live(0, 3, 3)}, capacity: 4, held: 0, want: 5, myTop: 0},
		{name: "fair share of 3 holders is Cap/3", holders: map[string]entry{"x": live(0, 1, 2), "y": live(1, 1, 2)}, capacity: 4, held: 3, want: 3, myTop: 2, yield: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]entry{"me": live(tc.held, tc.want, tc.myTop)}
			for id, e := range tc.holders {
				h[id] = e
			}
			if got := shouldYield(h, "me", t0, tc.capacity, tc.held, tc.want, tc.myTop, nil); got != tc.yield {
				t.Errorf("shouldYield = %v, want %v", got, tc.yield)
			}
		})
	}
}

// TestLeaseTimeline follows a Pool's local view through time (fake clock,
// no KV): another holder's expiry frees its slots and fires Changed at
// its until; this worker's own lease stops counting TTL/8 before its
// until, also with Changed.
func TestLeaseTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 8 * time.Second
		p := New(nil, Config{Provider: "segmind", Worker: "me", Cap: 4, TTL: ttl})
		start := time.Now()
		p.mu.Lock()
		p.n, p.until, p.myRev, p.want = 2, start.Add(ttl), 7, 3
		p.setViewLocked(7, map[string]entry{
			"me":    {N: 2, Until: start.Add(ttl), Want: 3, Top: 2},
			"other": {N: 2, Until: start.Add(ttl / 2), Want: 2, Top: 3},
		})
		p.mu.Unlock()
		if h, f := p.Held(), p.Snapshot().Free; h != 2 || f != 0 {
			t.Fatalf("Held=%d Free=%d, want 2 and 0", h, f)
		}

		<-p.Changed(p.Version())
		if d := time.Since(start); d != ttl/2 {
			t.Errorf("first change after %v, want the other lease's expiry at %v", d, ttl/2)
		}
		if a := p.Snapshot(); a.Free != 2 || len(a.Holders) != 1 || a.Held != 2 {
			t.Errorf("after the other lease expired: %+v", a)
		}

		<-p.Changed(p.Version())
		if d := time.Since(start); d != ttl-ttl/8 {
			t.Errorf("second change after %v, want %v (own lease less TTL/8)", d, ttl-ttl/8)
		}
		if h := p.Held(); h != 0 {
			t.Errorf("Held = %d with the own lease about to expire", h)
		}
		if p.Yield(PriorityNone) {
			t.Error("Yield with nothing usable held")
		}
	})
}

// TestRemovedEntryIsLost: a newer value without this worker's entry makes
// Held 0 and asks Run for an immediate renewal; an older one does not.
func TestRemovedEntryIsLost(t *testing.T) {
	t.Parallel()
	p := New(nil, Config{Provider: "segmind", Worker: "me", Cap: 4})
	now := time.Now()
	p.mu.Lock()
	p.n, p.until, p.myRev = 2, now.Add(time.Minute), 10
	p.setViewLocked(10, map[string]entry{"me": {N: 2, Until: p.until}})
	p.setViewLocked(9, map[string]entry{}) // older (a read that raced)
	lostOld := p.lost
	p.setViewLocked(11, map[string]entry{"x": {N: 4, Until: now.Add(time.Minute)}})
	lost, renew := p.lost, p.renewNow
	p.mu.Unlock()
	if lostOld {
		t.Error("an older value marked the lease lost")
	}
	if !lost || !renew || p.Held() != 0 {
		t.Errorf("lost=%v renewNow=%v Held=%d after a newer value without the entry", lost, renew, p.Held())
	}
}
