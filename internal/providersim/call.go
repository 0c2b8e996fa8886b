package providersim

import (
	"fmt"
	"net/http"
	"time"
)

// What a provider's simulated API builds on, beyond Enter, NewTask,
// Lookup and the knob checks in sim.go.

// Count records one answer of op with status in the provider's stats.
func (c *Call) Count(op string, status int) { c.s.count(c.p, op, status) }

// Knobs returns the provider's knobs now.
func (c *Call) Knobs() Knobs { return c.s.Knobs(c.p.name) }

// Now is the simulator's time.
func (c *Call) Now() time.Time { return c.s.now() }

// With runs f under the simulator's lock: the way to read or change a
// task's Data record that polls may read at the same time.
func (c *Call) With(f func()) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	f()
}

// SetDuration says how long t's output should last (the duration its job
// asked for); the output files are served stretched to it.
func (c *Call) SetDuration(t *Task, d time.Duration) { c.With(func() { t.duration = d }) }

// Peek is lookup without counting a request or marking the task reported.
func (c *Call) Peek(id string) (TaskView, bool) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	t, ok := c.p.tasks[id]
	if !ok || t.deleted {
		return TaskView{}, false
	}
	now := c.s.now()
	v := TaskView{Task: t, Elapsed: now.Sub(t.Created)}
	if total := t.DoneAt.Sub(t.Created); total > 0 && now.Before(t.DoneAt) {
		v.Progress = float64(int(100 * float64(now.Sub(t.Created)) / float64(total)))
	}
	return v, true
}

// Cancelled reads a task's cancelled flag under the lock.
func (c *Call) Cancelled(t *Task) bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return t.cancelled
}

// UnpaidTask records a task that will not run (no credits, or
// forbidden, for a provider that accepts such work and fails it later): it
// is not charged nor counted as a submission or as active, and it has
// failed from the start.
func (c *Call) UnpaidTask(key string, data any) *Task {
	s, p := c.s, c.p
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	now := s.now()
	t := &Task{
		ID:       fmt.Sprintf("%s-%06d-%04x", p.name, s.seq, s.rng.Uint32()&0xffff),
		Seq:      s.seq,
		Key:      key,
		Created:  now,
		DoneAt:   now,
		Fail:     true,
		reported: true, // never counted as active
		Data:     data,
	}
	p.tasks[t.ID] = t
	return t
}

// FindTask returns the provider's first task (in no particular order)
// match accepts, or nil; match runs under the simulator's lock, with its
// time.
func (c *Call) FindTask(match func(t *Task, now time.Time) bool) *Task {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	now := c.s.now()
	for _, t := range c.p.tasks {
		if match(t, now) {
			return t
		}
	}
	return nil
}

// ClipSize is the size of the MP4 an output serves by default.
func ClipSize() int { return len(avMP4) }

// expired is the status provider p's expired output links answer.
func (p *provider) expired() int {
	if p.api.Expired != 0 {
		return p.api.Expired
	}
	return http.StatusNotFound
}

// BaseURL is the scheme and host the request was addressed to, for the
// absolute URLs (poll_url) a real API returns.
func BaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
