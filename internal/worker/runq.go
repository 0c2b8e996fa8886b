package worker

import (
	"context"
	"runtime/debug"
	"sync"
	"time"
)

// start hands j's next step to the executors.
func (e *engine) start(j *job, step func(*engine, context.Context, *job) outcome) {
	e.runq.push(task{j: j, step: step})
}

func (e *engine) executor(ctx context.Context, q *runQueue) {
	for {
		t, ok := q.pop()
		if !ok {
			return
		}
		out := e.runStep(ctx, t)
		e.post(evDone{j: t.j, out: out})
	}
}

// runStep runs t's step. A step whose write found the job's state changed
// under it (a conflict) returns reread; runStep then reads the state again
// and decides (claimExisting), up to maxRereads times: the one place the
// step chain goes round, so no step calls back into an earlier one.
func (e *engine) runStep(ctx context.Context, t task) (out outcome) {
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("job step panicked; returning the job to the queue", "job_id", t.j.id, "panic", p, "stack", string(debug.Stack()))
			out = nak(5 * time.Second)
		}
	}()
	ctx = withJobSpan(ctx, t.j)
	out = t.step(e, ctx, t.j)
	for range maxRereads {
		if out.kind != outReread {
			return out
		}
		out = e.claimExisting(ctx, t.j)
	}
	if out.kind == outReread {
		e.logJob(t.j).Error("job state kept changing; returning the job to the queue")
		return waitFor(5 * time.Second)
	}
	return out
}

// maxRereads bounds the reads of a job's state one step makes when
// its writes keep conflicting.
const maxRereads = 20

// task is one step of one job for the executors.
type task struct {
	j    *job
	step func(*engine, context.Context, *job) outcome
}

// runQueue is the executors' FIFO of steps: unbounded, so the loop never
// blocks handing work out.
type runQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	q      []task
	head   int
	closed bool
}

func newRunQueue() *runQueue {
	r := &runQueue{}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *runQueue) push(t task) {
	r.mu.Lock()
	r.q = append(r.q, t)
	r.mu.Unlock()
	r.cond.Signal()
}

func (r *runQueue) pop() (task, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.head == len(r.q) && !r.closed {
		r.cond.Wait()
	}
	if r.head == len(r.q) {
		return task{}, false
	}
	t := r.q[r.head]
	r.q[r.head] = task{}
	r.head++
	if r.head > 1024 && r.head*2 >= len(r.q) {
		r.q = append(r.q[:0:0], r.q[r.head:]...)
		r.head = 0
	}
	return t, true
}

// close wakes the executors; they finish the queued steps, then return.
func (r *runQueue) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cond.Broadcast()
}
