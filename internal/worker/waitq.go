package worker

import (
	"container/heap"
	"time"

	"github.com/reelq/reelq"
)

// waitQueue holds the jobs an engine has pulled and not started, ordered
// for dispatch: the highest priority first, fairness keys round-robin
// within a priority (so two batches progress together), and a minimum
// share for the lower priorities (every lowShareEvery-th dispatch made
// while a lower priority has jobs waiting goes to it), so they never
// starve under a steady stream of higher-priority work. Not safe for
// concurrent use: the engine's loop owns it.
type waitQueue struct {
	levels [4]*fairQueue // by Priority.Rank (1 low .. 3 high)
	n      int
	picks  int
}

// lowShareEvery is the minimum share of the lower priorities: one
// dispatch in lowShareEvery.
const lowShareEvery = 10

func newWaitQueue() *waitQueue {
	q := &waitQueue{}
	for i := 1; i <= 3; i++ {
		q.levels[i] = &fairQueue{byKey: map[string]*fifo{}}
	}
	return q
}

func (q *waitQueue) len() int { return q.n }

// count returns how many jobs of priority p wait.
func (q *waitQueue) count(p reelq.Priority) int { return q.levels[p.Rank()].n }

// top returns the rank of the highest priority with waiting jobs (0: none).
func (q *waitQueue) top() int {
	for r := 3; r >= 1; r-- {
		if q.levels[r].n > 0 {
			return r
		}
	}
	return 0
}

func (q *waitQueue) push(j *job) {
	q.levels[j.prio.Rank()].push(j)
	q.n++
}

// pushFront returns j to the head of its fairness key's line (a job that
// could not start: it keeps its place).
func (q *waitQueue) pushFront(j *job) {
	q.levels[j.prio.Rank()].pushFront(j)
	q.n++
}

// pop removes and returns the next job to start, or nil.
func (q *waitQueue) pop() *job {
	top := q.top()
	if top == 0 {
		return nil
	}
	r := top
	q.picks++
	if q.picks%lowShareEvery == 0 {
		// The minimum share: the next lower level with waiting jobs,
		// rotating among the lower levels.
		var lower []int
		for l := top - 1; l >= 1; l-- {
			if q.levels[l].n > 0 {
				lower = append(lower, l)
			}
		}
		if len(lower) > 0 {
			r = lower[(q.picks/lowShareEvery)%len(lower)]
		}
	}
	j := q.levels[r].pop()
	q.n--
	return j
}

// popSurplus removes and returns a job this replica can spare: from the
// lowest priority, the last of the longest line (the job that would wait
// longest here), or nil.
func (q *waitQueue) popSurplus() *job {
	for r := 1; r <= 3; r++ {
		f := q.levels[r]
		if f.n == 0 {
			continue
		}
		best := -1
		for i, k := range f.ring {
			if best < 0 || f.byKey[k].len() > f.byKey[f.ring[best]].len() {
				best = i
			}
		}
		l := f.byKey[f.ring[best]]
		j := l.items[len(l.items)-1]
		l.items[len(l.items)-1] = nil
		l.items = l.items[:len(l.items)-1]
		f.n--
		if l.len() == 0 {
			f.dropKey(best)
		}
		q.n--
		return j
	}
	return nil
}

// remove takes j out of the queue (a cancel, or a settle while waiting).
func (q *waitQueue) remove(j *job) bool {
	if q.levels[j.prio.Rank()].remove(j) {
		q.n--
		return true
	}
	return false
}

// all calls f for every waiting job.
func (q *waitQueue) all(f func(*job)) {
	for r := 1; r <= 3; r++ {
		for _, k := range q.levels[r].ring {
			for _, j := range q.levels[r].byKey[k].items[q.levels[r].byKey[k].head:] {
				f(j)
			}
		}
	}
}

// fairQueue is one priority's jobs: a FIFO line per fairness key, served
// round-robin.
type fairQueue struct {
	byKey map[string]*fifo
	ring  []string // keys with waiting jobs, in service order
	next  int      // index in ring of the key served next
	n     int
}

func (f *fairQueue) line(key string) *fifo {
	l := f.byKey[key]
	if l == nil {
		l = &fifo{}
		f.byKey[key] = l
	}
	if l.len() == 0 {
		// A key that (re)gains jobs joins the round just before the key
		// served next, so it waits at most one round.
		pos := f.next
		f.ring = append(f.ring, "")
		copy(f.ring[pos+1:], f.ring[pos:])
		f.ring[pos] = key
		f.next = pos + 1
		if f.next >= len(f.ring) {
			f.next = 0
		}
		if len(f.ring) == 1 {
			f.next = 0
		}
	}
	return l
}

func (f *fairQueue) push(j *job) {
	f.line(j.fk).push(j)
	f.n++
}

func (f *fairQueue) pushFront(j *job) {
	f.line(j.fk).pushFront(j)
	f.n++
}

func (f *fairQueue) pop() *job {
	if len(f.ring) == 0 {
		return nil
	}
	if f.next >= len(f.ring) {
		f.next = 0
	}
	key := f.ring[f.next]
	l := f.byKey[key]
	j := l.pop()
	f.n--
	if l.len() == 0 {
		f.dropKey(f.next)
	} else {
		f.next = (f.next + 1) % len(f.ring)
	}
	return j
}

func (f *fairQueue) dropKey(i int) {
	delete(f.byKey, f.ring[i])
	f.ring = append(f.ring[:i], f.ring[i+1:]...)
	if f.next > i {
		f.next--
	}
	if len(f.ring) == 0 || f.next >= len(f.ring) {
		f.next = 0
	}
}

func (f *fairQueue) remove(j *job) bool {
	l := f.byKey[j.fk]
	if l == nil || !l.remove(j) {
		return false
	}
	f.n--
	if l.len() == 0 {
		for i, k := range f.ring {
			if k == j.fk {
				f.dropKey(i)
				break
			}
		}
	}
	return true
}

// fifo is a slice-backed queue.
type fifo struct {
	items []*job
	head  int
}

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) push(j *job) { q.items = append(q.items, j) }

func (q *fifo) pushFront(j *job) {
	if q.head > 0 {
		q.head--
		q.items[q.head] = j
		return
	}
	q.items = append([]*job{j}, q.items...)
}

func (q *fifo) pop() *job {
	j := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head > 64 && q.head*2 >= len(q.items) {
		q.items = append(q.items[:0:0], q.items[q.head:]...)
		q.head = 0
	}
	return j
}

func (q *fifo) remove(j *job) bool {
	for i := q.head; i < len(q.items); i++ {
		if q.items[i] == j {
			copy(q.items[i:], q.items[i+1:])
			q.items[len(q.items)-1] = nil
			q.items = q.items[:len(q.items)-1]
			return true
		}
	}
	return false
}

// timerHeap orders jobs by the time their next step is due.
type timerHeap []*job

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, k int) bool { return h[i].due.Before(h[k].due) }
func (h timerHeap) Swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].heapIdx, h[k].heapIdx = i, k
}
func (h *timerHeap) Push(x any) {
	j := x.(*job)
	j.heapIdx = len(*h)
	*h = append(*h, j)
}
func (h *timerHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	j.heapIdx = -1
	*h = old[:len(old)-1]
	return j
}

func (h *timerHeap) schedule(j *job, at time.Time) {
	j.due = at
	if j.heapIdx >= 0 {
		heap.Fix(h, j.heapIdx)
		return
	}
	heap.Push(h, j)
}

func (h *timerHeap) unschedule(j *job) {
	if j.heapIdx >= 0 {
		heap.Remove(h, j.heapIdx)
	}
}

// popDue removes and returns the jobs due at now.
func (h *timerHeap) popDue(now time.Time) []*job {
	var out []*job
	for h.Len() > 0 && !(*h)[0].due.After(now) {
		out = append(out, heap.Pop(h).(*job))
	}
	return out
}

// next returns the earliest due time, or false.
func (h timerHeap) next() (time.Time, bool) {
	if len(h) == 0 {
		return time.Time{}, false
	}
	return h[0].due, true
}
