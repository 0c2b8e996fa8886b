package slots

import (
	"math"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestKeyHash(t *testing.T) {
	h := KeyHash("tenant-a")
	if len(h) != 12 || h == KeyHash("tenant-b") || h != KeyHash("tenant-a") {
		t.Fatalf("KeyHash = %q (b %q)", h, KeyHash("tenant-b"))
	}
}

// A big batch every worker holds and a small one only w3 holds: the small
// one is served by w3 alone, so w3 is entitled to more slots and gives
// most of them to the small batch; the big one gets the rest everywhere.
func TestFairPlanSmallBatchOnOneWorker(t *testing.T) {
	a, b := KeyHash("A"), KeyHash("B")
	hs := []holderDemand{
		{id: "w1", want: 5, n: 1, keys: []string{a}},
		{id: "w2", want: 5, n: 1, keys: []string{a}},
		{id: "w3", want: 5, n: 3, keys: []string{a, b}},
	}
	ent := entitlements(hs, 5)
	if ent["w1"] != 1 || ent["w2"] != 1 || ent["w3"] != 3 {
		t.Fatalf("entitlements = %v, want w1 1 w2 1 w3 3", ent)
	}
	w := keyWeights(hs, "w3")
	if !near(w[b], 2.5) || !near(w[a], 0.5) {
		t.Fatalf("w3 weights = %v, want B 2.5 A 0.5", w)
	}
	if w := keyWeights(hs, "w1"); !near(w[a], 1) || len(w) != 1 {
		t.Fatalf("w1 weights = %v, want A 1", w)
	}
}

// Without keys (or with one key everywhere) slots split as evenly as whole
// numbers allow, the same way on every worker, and every worker gets one.
func TestFairPlanEvenSplit(t *testing.T) {
	for _, keys := range [][]string{nil, {KeyHash("A")}} {
		hs := []holderDemand{
			{id: "w1", want: 9, keys: keys},
			{id: "w2", want: 9, keys: keys},
			{id: "w3", want: 9, keys: keys},
		}
		if keys == nil {
			for i := range hs {
				hs[i].keys = []string{"#" + hs[i].id}
			}
		}
		ent := entitlements(hs, 5)
		if ent["w1"] != 2 || ent["w2"] != 2 || ent["w3"] != 1 {
			t.Fatalf("keys %v: entitlements = %v, want 2 2 1", keys, ent)
		}
	}
}

// A worker wanting less than its part leaves the rest to the others.
func TestFairPlanSmallDemand(t *testing.T) {
	hs := []holderDemand{
		{id: "w1", want: 1, keys: []string{"#w1"}},
		{id: "w2", want: 10, keys: []string{"#w2"}},
	}
	ent := entitlements(hs, 8)
	if ent["w1"] != 1 || ent["w2"] != 7 {
		t.Fatalf("entitlements = %v, want w1 1 w2 7", ent)
	}
}

// More wanting workers than slots: one each (oversubscribed claims resolve
// by arrival, as before keys existed).
func TestFairPlanMoreHoldersThanSlots(t *testing.T) {
	var hs []holderDemand
	for _, id := range []string{"a", "b", "c"} {
		hs = append(hs, holderDemand{id: id, want: 3, keys: []string{"#" + id}})
	}
	ent := entitlements(hs, 2)
	if len(ent) != 3 || ent["a"] != 1 || ent["c"] != 1 {
		t.Fatalf("entitlements = %v", ent)
	}
}

// Keys are drawn first from workers with the fewest other keys to plan:
// A (w1, w2) and B (w2, w3) and C (w3 only) all get 2 of 6.
func TestFairPlanChain(t *testing.T) {
	a, b, c := "a", "b", "c"
	hs := []holderDemand{
		{id: "w1", n: 2, want: 2, keys: []string{a}},
		{id: "w2", n: 2, want: 2, keys: []string{a, b}},
		{id: "w3", n: 2, want: 2, keys: []string{b, c}},
	}
	plan := waterfill(6, hs, func(h holderDemand) float64 { return float64(h.n) })
	got := map[string]float64{}
	for _, p := range plan {
		for k, x := range p {
			got[k] += x
		}
	}
	if !near(got[a], 2) || !near(got[b], 2) || !near(got[c], 2) {
		t.Fatalf("per key = %v (plan %v), want 2 each", got, plan)
	}
}

// The policy acts on keys: a worker holding slots for the big batch only
// yields one to the worker that alone holds the small batch and is below
// its entitlement.
func TestYieldForSmallBatch(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	until := now.Add(time.Minute)
	a, b := KeyHash("A"), KeyHash("B")
	holders := map[string]entry{
		"w1": {N: 2, Want: 5, Top: PriorityNormal, Keys: []string{a}, Until: until},
		"w2": {N: 1, Want: 5, Top: PriorityNormal, Keys: []string{a}, Until: until},
		"w3": {N: 2, Want: 5, Top: PriorityNormal, Keys: []string{a, b}, Until: until},
	}
	if !shouldYield(holders, "w1", now, 5, 2, 5, PriorityNormal, []string{a}) {
		t.Fatal("w1 (2 slots, entitled to 1) keeps its slot while w3 (2, entitled to 3) waits")
	}
	if shouldYield(holders, "w2", now, 5, 1, 5, PriorityNormal, []string{a}) {
		t.Fatal("w2 at its entitlement yields")
	}
	// With one key everywhere, once the split is the planned 2/2/1 nobody
	// yields (no churn for uneven whole numbers).
	holders["w2"] = entry{N: 2, Want: 5, Top: PriorityNormal, Keys: []string{a}, Until: until}
	holders["w3"] = entry{N: 1, Want: 5, Top: PriorityNormal, Keys: []string{a}, Until: until}
	for id, e := range holders {
		if shouldYield(holders, id, now, 5, e.N, 5, PriorityNormal, e.Keys) {
			t.Fatalf("%s yields with one key everywhere", id)
		}
	}
}
