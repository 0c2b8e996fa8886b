package worker

import (
	"fmt"
	"testing"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/slots"
)

func qjob(id string, p reelq.Priority, fk string) *job {
	return &job{id: id, env: reelq.Job{Priority: p, FairnessKey: fk}, fkh: slots.KeyHash(fk), heapIdx: -1}
}

func TestWaitQueueOrder(t *testing.T) {
	q := newWaitQueue()
	for i := range 5 {
		q.push(qjob(fmt.Sprintf("n%d", i), reelq.Normal, "a"))
	}
	q.push(qjob("h", reelq.High, "a"))
	if j := q.pop(); j.id != "h" {
		t.Fatalf("first pop %s, want the high job", j.id)
	}
	for i := range 5 {
		if j := q.pop(); j.id != fmt.Sprintf("n%d", i) {
			t.Fatalf("pop %d = %s, want FIFO within one key", i, j.id)
		}
	}
	if q.pop() != nil || q.len() != 0 {
		t.Fatal("queue not empty")
	}
}

// Under a steady stream of high jobs, low ones still get one dispatch in
// lowShareEvery.
func TestWaitQueueMinimumShare(t *testing.T) {
	q := newWaitQueue()
	for i := range 100 {
		q.push(qjob(fmt.Sprintf("l%d", i), reelq.Low, "bulk"))
	}
	low := 0
	for i := range 1000 {
		q.push(qjob(fmt.Sprintf("h%d", i), reelq.High, "live"))
		if q.pop().priority() == reelq.Low {
			low++
		}
	}
	if low != 1000/lowShareEvery {
		t.Fatalf("low got %d of 1000 dispatches, want %d", low, 1000/lowShareEvery)
	}
}

// Two keys alternate; a key that arrives later joins within one round.
func TestWaitQueueRoundRobin(t *testing.T) {
	q := newWaitQueue()
	for i := range 10 {
		q.push(qjob(fmt.Sprintf("a%d", i), reelq.Normal, "A"))
	}
	q.pop()
	for i := range 3 {
		q.push(qjob(fmt.Sprintf("b%d", i), reelq.Normal, "B"))
	}
	var got string
	for range 7 {
		got += q.pop().env.FairKey()
	}
	if got != "BABABAA" && got != "ABABABA" {
		t.Fatalf("order %s, want A and B alternating", got)
	}
}

// With a plan from the slots pool, keys are served in its proportions.
func TestWaitQueueWeights(t *testing.T) {
	q := newWaitQueue()
	q.setWeights(map[string]float64{slots.KeyHash("A"): 0.5, slots.KeyHash("B"): 2.5})
	for i := range 600 {
		q.push(qjob(fmt.Sprintf("a%d", i), reelq.Normal, "A"))
		q.push(qjob(fmt.Sprintf("b%d", i), reelq.Normal, "B"))
	}
	n := map[string]int{}
	for range 600 {
		n[q.pop().env.FairKey()]++
	}
	if n["B"] != 500 || n["A"] != 100 {
		t.Fatalf("served %v, want B 500 A 100 (weights 2.5 : 0.5)", n)
	}
}

func TestWaitQueueRemoveAndSurplus(t *testing.T) {
	q := newWaitQueue()
	js := []*job{qjob("a0", reelq.Normal, "A"), qjob("a1", reelq.Normal, "A"), qjob("b0", reelq.Normal, "B"), qjob("l0", reelq.Low, "A"), qjob("l1", reelq.Low, "A")}
	for _, j := range js {
		q.push(j)
	}
	if !q.remove(js[2]) || q.remove(js[2]) {
		t.Fatal("remove b0: want true once")
	}
	if j := q.popSurplus(); j.id != "l1" {
		t.Fatalf("surplus %s, want the last low job", j.id)
	}
	if q.len() != 3 {
		t.Fatalf("len %d, want 3", q.len())
	}
	if got := q.keys(reelq.Normal.Rank(), nil); len(got) != 1 || got[0] != slots.KeyHash("A") {
		t.Fatalf("normal keys %v, want only A", got)
	}
}
