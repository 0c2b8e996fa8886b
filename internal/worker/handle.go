package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/queue"
)

// jobRun is one delivery of one job.
type jobRun struct {
	w    *Worker
	name string
	rt   *Runtime
	m    queue.Msg
	md   *jetstream.MsgMetadata
	job  queue.Job
	st   *jobstate.State
	rev  uint64
	log  *slog.Logger
	// traceparent is the producer's W3C trace context, if any.
	traceparent string
	// settled is set once the message has been acked, nak'ed or termed.
	settled bool
	// exhausted is set when the failed attempt that ends the job has
	// already been counted in st.Attempts.
	exhausted bool
	// probe is set while this delivery is the one job let through to test
	// a provider paused for credits (Worker.takeProbe).
	probe bool
}

// errRequeue asks the caller to re-read the job state and decide again.
var errRequeue = errors.New("state changed; re-evaluate")

func (w *Worker) handle(ctx context.Context, name string, rt *Runtime, m queue.Msg) {
	w.m.AddInFlight(name, 1)
	defer w.m.AddInFlight(name, -1)
	md, err := m.Metadata()
	if err != nil {
		w.log.Error("message without metadata; terminating it", "provider", name, "subject", m.Subject(), "err", err)
		_ = m.TermWithReason("no metadata")
		return
	}
	r := &jobRun{w: w, name: name, rt: rt, m: m, md: md, traceparent: m.Headers().Get(queue.TraceparentHeader), probe: w.takeProbe(name)}
	r.log = w.log.With("provider", name, "stream_seq", md.Sequence.Stream, "delivery", md.NumDelivered)
	if r.traceparent != "" {
		r.log = r.log.With("trace_id", traceID(r.traceparent))
	}
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("handler panic", "panic", p, "stack", string(debug.Stack()))
			if !r.settled {
				r.retry(ctx, fmt.Errorf("internal error: handler panic: %v", p))
			}
		}
		if !r.settled {
			// Every path settles; this is a last resort that never loses a job.
			r.log.Error("job left unsettled; returning it to the queue")
			r.nak(5 * time.Second)
		}
		r.releaseProbe()
	}()
	r.run(ctx)
}

func (r *jobRun) run(ctx context.Context) {
	job, err := r.decode()
	r.job = job
	r.log = r.log.With("job_id", job.ID)
	if job.Batch != "" {
		r.log = r.log.With("batch", job.Batch)
	}
	if err != nil {
		r.deadLetter(ctx, "invalid_request", err)
		return
	}
	init := &jobstate.State{ID: job.ID, Provider: r.name, Batch: job.Batch, Phase: jobstate.Queued, EnqueuedAt: r.enqueuedAt()}
	for range 20 {
		st, rev, err := r.w.states.GetOrCreate(ctx, init)
		if err != nil {
			if ctx.Err() != nil {
				r.nak(0)
				return
			}
			r.log.Warn("job state unavailable; retrying later", "err", err)
			r.nak(5 * time.Second)
			return
		}
		r.st, r.rev = st, rev
		if err := r.step(ctx); !errors.Is(err, errRequeue) {
			return
		}
	}
	r.log.Error("job state kept changing; returning the job to the queue")
	r.nak(5 * time.Second)
}

// step acts on the job's current phase. It returns errRequeue when the
// state changed under it and must be read again.
func (r *jobRun) step(ctx context.Context) error {
	st := r.st
	if st.Phase == jobstate.Finished {
		r.republish(ctx)
		return nil
	}
	if st.CancelRequested {
		r.cancel(ctx, "cancelled on request")
		return nil
	}
	switch st.Phase {
	case jobstate.Queued, jobstate.Submitting:
		// Validate before paying; a job already submitted is followed to
		// its end even if the rules changed since (e.g. a model list).
		if err := r.job.Validate(r.validators()); err != nil {
			r.finish(ctx, queue.StatusFailed, nil, &queue.ErrorInfo{Code: invalidCode(err), Message: r.w.redact(err.Error())})
			return nil
		}
		if r.isProbe() && st.Phase == jobstate.Queued {
			r.log.Info("this job is the probe for the paused provider")
		}
		if err := r.submit(ctx); err != nil {
			return err
		}
		if r.settled {
			return nil
		}
		fallthrough
	case jobstate.Submitted:
		// A job that only polls cannot tell whether credits are back.
		r.releaseProbe()
		r.poll(ctx)
		return nil
	}
	r.finish(ctx, queue.StatusFailed, nil, &queue.ErrorInfo{Code: "internal", Message: fmt.Sprintf("unknown job phase %q", st.Phase)})
	return nil
}

func (r *jobRun) validators() map[string]queue.Validator {
	return map[string]queue.Validator{r.name: r.rt.Provider}
}

func invalidCode(err error) string {
	if errors.Is(err, providers.ErrInvalidInput) {
		return "invalid_input"
	}
	return "invalid_request"
}

// decode parses the job, filling the id from the message when the request
// has none: the Nats-Msg-Id header, the subject's last token, or the
// stream sequence, in that order, so every delivery agrees on it.
func (r *jobRun) decode() (queue.Job, error) {
	job, err := queue.DecodeJob(r.m.Data())
	if job.ID == "" {
		job.ID = r.fallbackID()
	}
	if job.Provider == "" && err == nil {
		job.Provider = r.name
	}
	if err != nil {
		job.Provider = r.name
		return job, err
	}
	if job.Provider != r.name {
		return job, fmt.Errorf("%w: provider %q does not match subject %s", queue.ErrInvalidJob, job.Provider, r.m.Subject())
	}
	if !queue.ValidID(job.ID) {
		bad := job.ID
		job.ID = r.fallbackID()
		return job, fmt.Errorf("%w: id %q must be 1-128 characters of letters, digits, '-' or '_'", queue.ErrInvalidJob, bad)
	}
	return job, nil
}

func (r *jobRun) fallbackID() string {
	if id := r.m.Headers().Get("Nats-Msg-Id"); queue.ValidID(id) {
		return id
	}
	if toks := strings.Split(r.m.Subject(), "."); len(toks) == 3 && queue.ValidID(toks[2]) {
		return toks[2]
	}
	return fmt.Sprintf("seq-%d", r.md.Sequence.Stream)
}

func (r *jobRun) enqueuedAt() *time.Time {
	if r.job.EnqueuedAt != nil {
		return r.job.EnqueuedAt
	}
	t := r.md.Timestamp.UTC()
	return &t
}

// update writes the state with compare-and-set. On a conflict it returns
// errRequeue so the caller re-reads and decides again.
func (r *jobRun) update(ctx context.Context, fn func(st *jobstate.State)) error {
	next := *r.st
	fn(&next)
	rev, err := r.w.states.Update(ctx, &next, r.rev)
	if errors.Is(err, jobstate.ErrConflict) {
		return errRequeue
	}
	if err != nil {
		return err
	}
	r.st, r.rev = &next, rev
	return nil
}

// settle helpers. They use a context that survives shutdown: a job that
// reached a verdict must be able to record it.

func (r *jobRun) settleCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

func (r *jobRun) nak(delay time.Duration) {
	r.settled = true
	var err error
	if delay > 0 {
		err = r.m.NakWithDelay(delay)
	} else {
		err = r.m.Nak()
	}
	if err != nil {
		r.log.Warn("nak failed; the job returns after AckWait", "err", err)
	}
}

func (r *jobRun) ack(ctx context.Context) {
	r.settled = true
	sctx, cancel := r.settleCtx(ctx)
	defer cancel()
	if err := r.m.DoubleAck(sctx); err != nil {
		r.log.Warn("ack not confirmed; a redelivery will republish the same result and ack again", "err", err)
	}
}

// shutdownNak returns a job cut short by shutdown to the queue at once,
// without using an attempt.
func (r *jobRun) shutdownNak() {
	r.log.Info("job interrupted by shutdown; returned to the queue", "phase", r.st.Phase)
	r.nak(0)
}

func (r *jobRun) isProbe() bool { return r.probe }

// pausedForUs reports whether the provider is paused and this job is not
// the probe allowed through.
func (r *jobRun) pausedForUs() bool {
	v, _ := r.w.pstate.View(r.name)
	return v.Paused && !r.probe
}

// releaseProbe gives up the probe claim if this job is the probe and the
// claim still stands (a verdict, pause or resume, clears it already). It
// runs once: after it, a new claim by this replica is not ours to release.
func (r *jobRun) releaseProbe() {
	if !r.probe {
		return
	}
	r.probe = false
	_ = r.w.pstate.ReleaseProbe(context.Background(), r.name, r.w.cfg.WorkerID)
}

func (r *jobRun) event(kind string, mod func(*queue.Event)) {
	e := queue.Event{Kind: kind, Provider: r.name, JobID: r.job.ID, Batch: r.job.Batch}
	if r.st != nil {
		e.Attempt = r.st.Attempts + 1
		if r.st.Task != nil {
			e.TaskID = r.st.Task.ID
		}
	}
	if mod != nil {
		mod(&e)
	}
	r.w.event(e)
}

// traceID extracts the trace id from a W3C traceparent header.
func traceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) == 4 && len(parts[1]) == 32 {
		return parts[1]
	}
	return ""
}

// cost estimates the job's cost, if its input is valid.
func (r *jobRun) cost() *providers.Cost {
	if len(r.job.Input) == 0 || r.rt.Provider.Validate(r.job.Input) != nil {
		return nil
	}
	c := r.rt.Provider.Estimate(r.job.Input)
	return &c
}

func rawJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
