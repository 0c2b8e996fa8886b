package worker

import (
	"container/heap"
	"github.com/reelq/reelq/internal/slots"
	"time"
)

// waitQueue holds the jobs an engine has pulled and not started, ordered
// for dispatch: the highest priority first, fairness keys sharing the
// provider within a priority (equal parts cluster-wide, see fairQueue and
// slots.Pool.KeyWeights; so two batches progress together), and a minimum
// share for the lower priorities (every lowShareEvery-th dispatch made
// while a lower priority has jobs waiting goes to it), so they never
// starve under a steady stream of higher-priority work. Not safe for
// concurrent use: the engine's loop owns it.
type waitQueue struct {
	levels [levels]*fairQueue // by job.level: 1 low .. 3 high, 4 resume
	n      int
	picks  int
}

// lowShareEvery is the minimum share of the lower priorities: one
// dispatch in lowShareEvery.
const lowShareEvery = 10

// Waiting-queue levels: the priorities' ranks, and above them resumeLevel,
// redelivered jobs whose task already runs at the provider (their worker
// died): they take slots before any new submission, so the provider never
// runs more than the cap (slots.PriorityResume in the slot leases).
const (
	resumeLevel = slots.PriorityResume
	levels      = resumeLevel + 1
)

func newWaitQueue() *waitQueue {
	q := &waitQueue{}
	for i := 1; i < levels; i++ {
		q.levels[i] = &fairQueue{byKey: map[string]*line{}}
	}
	return q
}

func (q *waitQueue) len() int { return q.n }

// top returns the rank of the highest priority with waiting jobs (0: none).
func (q *waitQueue) top() int {
	for r := levels - 1; r >= 1; r-- {
		if q.levels[r].n > 0 {
			return r
		}
	}
	return 0
}

func (q *waitQueue) push(j *job) {
	q.levels[j.level()].push(j)
	q.n++
}

// pushFront returns j to the head of its fairness key's line (a job that
// could not start: it keeps its place).
func (q *waitQueue) pushFront(j *job) {
	q.levels[j.level()].pushFront(j)
	q.n++
}

// count returns the number of jobs waiting at level r.
func (q *waitQueue) count(r int) int { return q.levels[r].n }

// popLevel removes and returns the next job of level r, or nil.
func (q *waitQueue) popLevel(r int) *job {
	if q.levels[r].n == 0 {
		return nil
	}
	q.n--
	return q.levels[r].pop()
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
	for r := 1; r < levels; r++ {
		f := q.levels[r]
		if f.n == 0 {
			continue
		}
		var best *line
		for _, l := range f.heap {
			if best == nil || l.len() > best.len() {
				best = l
			}
		}
		j := best.items[len(best.items)-1]
		best.items[len(best.items)-1] = nil
		best.items = best.items[:len(best.items)-1]
		f.n--
		if best.len() == 0 {
			f.drop(best)
		}
		q.n--
		return j
	}
	return nil
}

// remove takes j out of the queue (a cancel, or a settle while waiting).
func (q *waitQueue) remove(j *job) bool {
	if q.levels[j.level()].remove(j) {
		q.n--
		return true
	}
	return false
}

// setWeights sets the fairness plan: the slots this replica should give
// each fairness key (by slots.KeyHash), from the cluster-wide plan. Nil
// serves the keys equally.
func (q *waitQueue) setWeights(w map[string]float64) {
	for r := 1; r < levels; r++ {
		q.levels[r].weights = w
	}
}

// keys appends the hashes of the fairness keys waiting at rank r.
func (q *waitQueue) keys(r int, dst []string) []string {
	for _, l := range q.levels[r].heap {
		dst = append(dst, l.hash)
	}
	return dst
}

// version changes whenever a fairness key starts or stops waiting.
func (q *waitQueue) version() uint64 {
	var v uint64
	for r := 1; r < levels; r++ {
		v += q.levels[r].version
	}
	return v
}

// fairQueue is one priority's jobs: a FIFO line per fairness key, served
// by stride scheduling: each line has a pass, the line with the lowest pass
// goes next and its pass grows by 1/weight (its key's planned slots here;
// equal weights make it round-robin). A key that starts waiting joins at
// the current pass, after the lines already there, so it waits at most
// one round.
type fairQueue struct {
	byKey   map[string]*line
	heap    lineHeap
	weights map[string]float64
	vtime   float64 // pass of the line served last
	joins   uint64
	version uint64
	n       int
}

// line is one fairness key's waiting jobs.
type line struct {
	fifo
	key   string
	hash  string
	pass  float64
	order uint64
	idx   int
}

func (f *fairQueue) line(j *job) *line {
	l := f.byKey[j.env.FairKey()]
	if l == nil {
		f.joins++
		f.version++
		l = &line{key: j.env.FairKey(), hash: j.fkh, pass: f.vtime, order: f.joins}
		f.byKey[l.key] = l
		heap.Push(&f.heap, l)
	}
	return l
}

func (f *fairQueue) push(j *job) {
	f.line(j).push(j)
	f.n++
}

func (f *fairQueue) pushFront(j *job) {
	f.line(j).pushFront(j)
	f.n++
}

// stride is how far a line's pass moves per job served.
func (f *fairQueue) stride(l *line) float64 {
	if len(f.weights) == 0 {
		return 1
	}
	w, ok := f.weights[l.hash]
	if !ok {
		// Not in the plan yet (the key just arrived): as an average key.
		s := 0.0
		for _, x := range f.weights {
			s += x
		}
		w = s / float64(len(f.weights))
	}
	return 1 / max(w, 1e-3)
}

func (f *fairQueue) pop() *job {
	if len(f.heap) == 0 {
		return nil
	}
	l := f.heap[0]
	j := l.pop()
	f.n--
	f.vtime = l.pass
	if l.len() == 0 {
		f.drop(l)
	} else {
		l.pass += f.stride(l)
		heap.Fix(&f.heap, l.idx)
	}
	return j
}

func (f *fairQueue) drop(l *line) {
	heap.Remove(&f.heap, l.idx)
	delete(f.byKey, l.key)
	f.version++
}

func (f *fairQueue) remove(j *job) bool {
	l := f.byKey[j.env.FairKey()]
	if l == nil || !l.remove(j) {
		return false
	}
	f.n--
	if l.len() == 0 {
		f.drop(l)
	}
	return true
}

// lineHeap orders lines by pass, then by the order they joined.
type lineHeap []*line

func (h lineHeap) Len() int { return len(h) }
func (h lineHeap) Less(i, k int) bool {
	if h[i].pass != h[k].pass {
		return h[i].pass < h[k].pass
	}
	return h[i].order < h[k].order
}
func (h lineHeap) Swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].idx, h[k].idx = i, k
}
func (h *lineHeap) Push(x any) {
	l := x.(*line)
	l.idx = len(*h)
	*h = append(*h, l)
}
func (h *lineHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return l
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
func (h timerHeap) Less(i, k int) bool { return h[i].due < h[k].due }
func (h timerHeap) Swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].heapIdx, h[k].heapIdx = int32(i), int32(k)
}
func (h *timerHeap) Push(x any) {
	j := x.(*job)
	j.heapIdx = int32(len(*h))
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
	j.due = stampOf(at)
	if j.heapIdx >= 0 {
		heap.Fix(h, int(j.heapIdx))
		return
	}
	heap.Push(h, j)
}

func (h *timerHeap) unschedule(j *job) {
	if j.heapIdx >= 0 {
		heap.Remove(h, int(j.heapIdx))
	}
}

// popDue removes and returns the jobs due at now.
func (h *timerHeap) popDue(now time.Time) []*job {
	var out []*job
	for h.Len() > 0 && (*h)[0].due <= stampOf(now) {
		out = append(out, heap.Pop(h).(*job))
	}
	return out
}

// next returns the earliest due time, or false.
func (h timerHeap) next() (time.Time, bool) {
	if len(h) == 0 {
		return time.Time{}, false
	}
	return h[0].due.time(), true
}
