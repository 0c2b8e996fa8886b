package reelq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// EnqueueStatus says what Enqueue did with one job.
type EnqueueStatus string

// Enqueue statuses.
const (
	// Published: a new job, now queued.
	Published EnqueueStatus = "published"
	// Known: the id is already known with the same content: nothing was
	// published, and nothing is paid twice. Phase and Result say where it is.
	Known EnqueueStatus = "known"
	// Failed: see Err (invalid, a conflicting id, or a publish error).
	Failed EnqueueStatus = "failed"
)

// EnqueueResult is the outcome of enqueueing one job.
type EnqueueResult struct {
	ID     string
	Status EnqueueStatus
	// Phase is a known job's phase ("queued" for one still waiting in the
	// queue).
	Phase Phase
	// Result is a known job's result, when it has finished.
	Result *Result
	// Err says why the job was not enqueued: it wraps ErrInvalidJob,
	// ErrConflict, or a publish error (publishing again is safe).
	Err error
}

// BatchOptions tune EnqueueBatch.
type BatchOptions struct {
	// Progress, if set, is called after each job's outcome is known, with
	// the number of outcomes so far and the total.
	Progress func(r EnqueueResult, done, total int)
}

// Enqueue publishes one job (see EnqueueBatch for the rules). An id that is
// already known with the same content returns the existing job (Status
// Known), never a second payment; with different content, an error
// wrapping ErrConflict.
func (c *Client) Enqueue(ctx context.Context, j Job) (EnqueueResult, error) {
	rs, err := c.EnqueueBatch(ctx, []Job{j}, BatchOptions{})
	if err != nil {
		return EnqueueResult{}, err
	}
	r := rs[0]
	if r.Status == Failed {
		return r, r.Err
	}
	return r, nil
}

// EnqueueBatch validates and publishes jobs. Jobs without an id get
// ContentID(digest, n), n counting identical jobs in this call, so
// publishing the same batch again (or an edited copy) never pays twice
// and never drops a job. An id already known with the same content is not
// published again (Known); with different content the job fails with
// ErrConflict and the known job is untouched. Invalid jobs fail with
// ErrInvalidJob; the others are still published (callers that want all
// or nothing validate first with Validate). It returns one result per job,
// in order; the error is set only if ctx ended, and the results then say
// which jobs were published.
func (c *Client) EnqueueBatch(ctx context.Context, jobs []Job, opts BatchOptions) ([]EnqueueResult, error) {
	out := make([]EnqueueResult, len(jobs))
	done := 0
	report := func(i int) {
		done++
		if opts.Progress != nil {
			opts.Progress(out[i], done, len(jobs))
		}
	}
	// Ids and validation, before anything is published.
	var ok []int
	seen := map[string]int{}
	occ := map[string]int{}
	now := time.Now().UTC()
	for i := range jobs {
		j := &jobs[i]
		if err := c.Validate(*j); err != nil {
			out[i] = EnqueueResult{ID: j.ID, Status: Failed, Err: err}
			report(i)
			continue
		}
		if j.ID == "" {
			d := j.Digest()
			occ[d]++
			j.ID = wire.ContentID(d, occ[d])
		}
		if prev, dup := seen[j.ID]; dup {
			out[i] = EnqueueResult{ID: j.ID, Status: Failed, Err: fmt.Errorf("%w: id %q repeats job %d of this batch", ErrInvalidJob, j.ID, prev+1)}
			report(i)
			continue
		}
		seen[j.ID] = i
		if j.EnqueuedAt == nil {
			j.EnqueuedAt = &now
		}
		if j.Priority == Normal {
			j.Priority = ""
		}
		out[i].ID = j.ID
		ok = append(ok, i)
	}
	// Windows are pipelined: the next window's known-id reads and
	// publishes go out while the previous window's acknowledgements
	// arrive, so the server is never idle waiting for the client. Once ctx
	// ends no window is sent, but the acknowledgements of those sent are
	// still awaited (for up to ackGrace), so the results and the batch
	// counters say exactly which jobs were published.
	actx, stop := graceCtx(ctx, ackGrace)
	defer stop()
	var inflight []*window
	collect := func(w *window) error {
		if err := c.collect(actx, jobs, w, out); err != nil {
			return err
		}
		for _, i := range w.idx {
			report(i)
		}
		return nil
	}
	var err error
	for start := 0; start < len(ok) && err == nil; start += c.opts.Window {
		if err = context.Cause(ctx); err != nil {
			break
		}
		var w *window
		if w, err = c.sendWindow(ctx, jobs, ok[start:min(start+c.opts.Window, len(ok))], out); err != nil {
			break
		}
		inflight = append(inflight, w)
		if len(inflight) > 2 {
			err = collect(inflight[0])
			inflight = inflight[1:]
		}
	}
	for _, w := range inflight {
		if cerr := collect(w); cerr != nil {
			return out, cerr
		}
	}
	if err == nil {
		err = context.Cause(ctx)
	}
	return out, err
}

// ackGrace is how long EnqueueBatch still waits for the acknowledgements
// of jobs already sent once its context has ended.
const ackGrace = 5 * time.Second

// graceCtx is a context that ends grace after ctx does.
func graceCtx(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	g, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return g, func() {
		stop()
		cancel()
	}
}

// window is a group of jobs whose publishes are in flight.
type window struct {
	idx  []int
	pubs []pending
	// known are the window's known jobs of a batch with when they were
	// first enqueued: their counts are sent again (see countEnqueued).
	known []enqueued
}

// enqueued is a job counted in its batch's enqueued counter.
type enqueued struct {
	batch, id string
	at        time.Time
}

type pending struct {
	i    int
	f    jetstream.PubAckFuture
	span trace.Span
}

// sendWindow enqueues jobs[i] for i in win: it reads what is known of
// their ids (job state, then the queue) in a few batched requests and
// publishes the new ones asynchronously; collect checks the
// acknowledgements.
func (c *Client) sendWindow(ctx context.Context, jobs []Job, win []int, out []EnqueueResult) (*window, error) {
	ids := make([]string, len(win))
	for k, i := range win {
		ids[k] = jobs[i].ID
	}
	states, err := c.states(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("reelq: reading job state: %w", err)
	}
	w := &window{idx: win}
	var unknown []int
	for _, i := range win {
		j := &jobs[i]
		st := states[j.ID]
		if st == nil {
			unknown = append(unknown, i)
			continue
		}
		if st.Digest != "" && st.Digest != j.Digest() {
			out[i] = EnqueueResult{ID: j.ID, Status: Failed, Err: fmt.Errorf("%w: job %s (%s, %s)", ErrConflict, j.ID, st.Provider, st.Phase)}
			continue
		}
		out[i] = EnqueueResult{ID: j.ID, Status: Known, Phase: st.Phase, Result: st.StoredResult()}
		if st.Batch != "" && st.EnqueuedAt != nil {
			w.known = append(w.known, enqueued{st.Batch, j.ID, *st.EnqueuedAt})
		}
	}
	// Jobs with no state may still be waiting in the queue.
	subjects := make([]string, len(unknown))
	for k, i := range unknown {
		subjects[k] = wire.JobSubject(jobs[i].Provider, jobs[i].Priority, jobs[i].ID)
	}
	queued, err := c.queuedMsgs(ctx, subjects)
	if err != nil {
		return nil, fmt.Errorf("reelq: reading the queue: %w", err)
	}
	for k, i := range unknown {
		j := &jobs[i]
		if m, ok := queued[subjects[k]]; ok {
			out[i] = c.compareQueued(j, m)
			if q, err := DecodeJob(m.Data); err == nil && out[i].Status == Known && q.Batch != "" {
				w.known = append(w.known, enqueued{q.Batch, j.ID, m.Time})
			}
			continue
		}
		// The job's span lasts until its acknowledgement; its context
		// goes with the job as the message's traceparent.
		tctx, span := c.tracer().Start(ctx, "reelq.enqueue", trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(jobAttrs(subjects[k], j.ID, j.Provider, j.Batch)...))
		msg, err := c.jobMsg(tctx, j, 1)
		if err != nil {
			endSpan(span, err)
			out[i] = EnqueueResult{ID: j.ID, Status: Failed, Err: err}
			continue
		}
		f, err := c.js.PublishMsgAsync(msg, jetstream.WithMsgID(wire.JobMsgID(j.ID, 1)))
		if err != nil {
			endSpan(span, err)
			out[i] = EnqueueResult{ID: j.ID, Status: Failed, Err: publishErr(j, err)}
			continue
		}
		w.pubs = append(w.pubs, pending{i, f, span})
	}
	return w, nil
}

// collect waits for a window's acknowledgements.
func (c *Client) collect(ctx context.Context, jobs []Job, w *window, out []EnqueueResult) error {
	var published []enqueued
	for _, p := range w.pubs {
		j := &jobs[p.i]
		tctx := trace.ContextWithSpan(ctx, p.span)
		select {
		case ack := <-p.f.Ok():
			if ack.Duplicate {
				// Another producer published this id within the duplicate
				// window, after we looked: compare with what it published.
				out[p.i] = c.compareSeq(tctx, j, ack.Sequence)
				p.span.SetAttributes(attribute.String("reelq.enqueue.status", string(out[p.i].Status)))
				endSpan(p.span, out[p.i].Err)
				if out[p.i].Status == Published {
					published = append(published, enqueued{batch: j.Batch, id: j.ID})
				}
				continue
			}
			out[p.i] = EnqueueResult{ID: j.ID, Status: Published, Phase: PhaseQueued}
			p.span.SetAttributes(attribute.String("reelq.enqueue.status", string(Published)))
			endSpan(p.span, nil)
			published = append(published, enqueued{batch: j.Batch, id: j.ID})
		case <-p.f.Err():
			err := c.republish(tctx, j)
			endSpan(p.span, err)
			if err != nil {
				out[p.i] = EnqueueResult{ID: j.ID, Status: Failed, Err: publishErr(j, err)}
				continue
			}
			out[p.i] = EnqueueResult{ID: j.ID, Status: Published, Phase: PhaseQueued}
			published = append(published, enqueued{batch: j.Batch, id: j.ID})
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	c.countEnqueued(ctx, append(published, c.uncertain(ctx, w.known)...))
	return nil
}

// compareQueued reports a job whose id is already waiting in the queue.
func (c *Client) compareQueued(j *Job, m store.Msg) EnqueueResult {
	q, err := DecodeJob(m.Data)
	if err == nil && q.Provider == "" {
		q.Provider = j.Provider
	}
	if err != nil || q.Digest() != j.Digest() {
		return EnqueueResult{ID: j.ID, Status: Failed, Err: fmt.Errorf("%w: job %s is waiting in the queue with other content", ErrConflict, j.ID)}
	}
	return EnqueueResult{ID: j.ID, Status: Known, Phase: PhaseQueued}
}

func (c *Client) compareSeq(ctx context.Context, j *Job, seq uint64) EnqueueResult {
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	s, err := c.js.Stream(cctx, wire.StreamJobs)
	if err == nil {
		var raw *jetstream.RawStreamMsg
		if raw, err = s.GetMsg(cctx, seq); err == nil {
			return c.compareQueued(j, store.Msg{Data: raw.Data})
		}
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return c.afterGone(ctx, j, seq)
	}
	// Unreadable: report it as known, which it is.
	return EnqueueResult{ID: j.ID, Status: Known, Phase: PhaseQueued}
}

// afterGone handles a duplicate of a message a worker has already
// removed: the job's state decides. Without a state the message never
// became the job: a worker dead-lettered it (a copy under this id with
// other content, such as another producer squatting a content id, or an
// unreadable one), so ours is published under a message id of its own
// (<id>:after:<seq>; workers attribute it by the part before ":").
func (c *Client) afterGone(ctx context.Context, j *Job, seq uint64) EnqueueResult {
	st, err := c.getState(ctx, j.ID)
	switch {
	case err == nil && st.Digest != "" && st.Digest != j.Digest():
		return EnqueueResult{ID: j.ID, Status: Failed, Err: fmt.Errorf("%w: job %s (%s, %s)", ErrConflict, j.ID, st.Provider, st.Phase)}
	case err == nil:
		return EnqueueResult{ID: j.ID, Status: Known, Phase: st.Phase, Result: st.StoredResult()}
	case !errors.Is(err, ErrNotFound):
		return EnqueueResult{ID: j.ID, Status: Known, Phase: PhaseQueued}
	}
	msg, err := c.jobMsg(ctx, j, 1)
	if err == nil {
		cctx, cancel := c.s.ReqCtx(ctx)
		_, err = c.js.PublishMsg(cctx, msg, jetstream.WithMsgID(wire.JobMsgID(j.ID, 1)+":after:"+strconv.FormatUint(seq, 10)))
		cancel()
	}
	if err != nil {
		return EnqueueResult{ID: j.ID, Status: Failed, Err: publishErr(j, err)}
	}
	return EnqueueResult{ID: j.ID, Status: Published, Phase: PhaseQueued}
}

// republish retries a failed publish with the same message id (so a
// retry never duplicates).
func (c *Client) republish(ctx context.Context, j *Job) error {
	msg, err := c.jobMsg(ctx, j, 1)
	if err != nil {
		return err
	}
	b := backoff.WithContext(backoff.WithMaxRetries(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond), backoff.WithMaxInterval(5*time.Second)), 5), ctx)
	return backoff.Retry(func() error {
		cctx, cancel := c.s.ReqCtx(ctx)
		defer cancel()
		_, err := c.js.PublishMsg(cctx, msg, jetstream.WithMsgID(wire.JobMsgID(j.ID, 1)))
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
			return backoff.Permanent(err)
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode != 0 {
			return backoff.Permanent(err) // refused (too large, stream full): retrying will not help
		}
		return err
	}, b)
}

// publishErr explains a refused publish.
func publishErr(j *Job, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return fmt.Errorf("job %s: nothing stores %s (unknown provider, or the streams are missing): %w", j.ID, wire.JobSubject(j.Provider, j.Priority, j.ID), err)
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("job %s: the message is larger than the server allows: %w", j.ID, err)
	case errors.As(err, &apiErr) && strings.Contains(strings.ToLower(apiErr.Description), "maximum"):
		return fmt.Errorf("job %s: refused by the queue (%s); nothing was published: %w", j.ID, apiErr.Description, err)
	}
	return fmt.Errorf("job %s: publish failed (publishing again is safe): %w", j.ID, err)
}

// jobMsg is the message that carries j's run, and ctx's trace context.
func (c *Client) jobMsg(ctx context.Context, j *Job, run int) (*nats.Msg, error) {
	data, err := encodeJob(j)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	if err := c.opts.Limits.CheckMessage(len(data)); err != nil {
		return nil, err
	}
	m := &nats.Msg{Subject: wire.JobSubject(j.Provider, j.Priority, j.ID), Data: data, Header: nats.Header{}}
	if run > 1 {
		m.Header.Set(wire.HeaderRun, strconv.Itoa(run))
	}
	injectTrace(ctx, m.Header)
	return m, nil
}

// countEnqueued adds jobs to their batches' enqueued counters, one
// increment per job under the Nats-Msg-Id cnt:e:<id>: the server stores
// one per job within the COUNTERS duplicate window however often it is
// sent. A producer stopped between a job's acknowledgement and its count
// (Ctrl-C past ackGrace, a crash) leaves the count short until the same
// jobs are enqueued again within the window, which counts them as known
// (see uncertain). The increments are acknowledged before it returns; one
// the server did not take is sent again a few times, then left to the
// next run.
func (c *Client) countEnqueued(ctx context.Context, jobs []enqueued) {
	var futs []jetstream.PubAckFuture
	for _, e := range jobs {
		if e.batch == "" {
			continue
		}
		if f, err := c.js.PublishMsgAsync(enqueuedIncr(e)); err == nil {
			futs = append(futs, f)
		}
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case <-f.Err():
			b := backoff.WithContext(backoff.WithMaxRetries(backoff.NewConstantBackOff(200*time.Millisecond), 5), ctx)
			_ = backoff.Retry(func() error {
				cctx, cancel := c.s.ReqCtx(ctx)
				defer cancel()
				_, err := c.js.PublishMsg(cctx, f.Msg())
				return err
			}, b)
		case <-ctx.Done():
			return
		}
	}
}

func enqueuedIncr(e enqueued) *nats.Msg {
	m := nats.NewMsg(wire.BatchCounterSubject(e.batch, "enqueued"))
	m.Header.Set("Nats-Incr", "+1")
	m.Header.Set(wire.HeaderMsgID, "cnt:e:"+e.id)
	return m
}

// uncertain returns the known jobs whose count may be missing and can be
// sent again without counting twice: those first enqueued within the
// COUNTERS duplicate window, less countMargin for the clocks.
func (c *Client) uncertain(ctx context.Context, known []enqueued) []enqueued {
	if len(known) == 0 {
		return nil
	}
	win := c.counterWindow(ctx)
	var out []enqueued
	for _, e := range known {
		if time.Since(e.at) < win-countMargin {
			out = append(out, e)
		}
	}
	return out
}

// countMargin allows for the clocks of producers, and the time between a
// job's enqueue and its count.
const countMargin = 5 * time.Minute

// counterWindow is the duplicate window of COUNTERS (0 while unreadable),
// read once per client.
func (c *Client) counterWindow(ctx context.Context) time.Duration {
	c.cwMu.Lock()
	defer c.cwMu.Unlock()
	if c.cw == 0 {
		cctx, cancel := c.s.ReqCtx(ctx)
		defer cancel()
		if s, err := c.js.Stream(cctx, wire.StreamCounters); err == nil {
			c.cw = s.CachedInfo().Config.Duplicates
		}
	}
	return c.cw
}

// encodeJob is json.Marshal(j) for a validated job, without re-scanning
// the raw input and metadata (already checked) or reflecting: the client
// encodes every job it publishes, and this is most of its CPU. The id,
// batch and fairness key of a valid job need no escaping.
func encodeJob(j *Job) ([]byte, error) {
	if !validTokens(j) {
		return json.Marshal(j)
	}
	b := make([]byte, 0, 96+len(j.Input)+len(j.Metadata))
	b = append(b, '{')
	field := func(name, v string) {
		if v == "" {
			return
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":"`...)
		b = append(b, v...)
		b = append(b, '"')
	}
	field("id", j.ID)
	field("provider", j.Provider)
	field("batch", j.Batch)
	field("priority", string(j.Priority))
	field("fairness_key", j.FairnessKey)
	b = append(b, `,"input":`...)
	b = append(b, bytes.TrimSpace(j.Input)...)
	if m := bytes.TrimSpace(j.Metadata); len(m) > 0 {
		b = append(b, `,"metadata":`...)
		b = append(b, m...)
	}
	if j.Expect != nil {
		e, err := json.Marshal(j.Expect)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"expect":`...)
		b = append(b, e...)
	}
	if j.EnqueuedAt != nil {
		b = append(b, `,"enqueued_at":"`...)
		b = j.EnqueuedAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return append(b, '}'), nil
}

// validTokens reports whether j's string fields need no JSON escaping,
// and its input and metadata are single-line-safe raw JSON values.
func validTokens(j *Job) bool {
	return ValidID(j.ID) && KnownProvider(j.Provider) && (j.Batch == "" || ValidID(j.Batch)) &&
		(j.FairnessKey == "" || ValidID(j.FairnessKey)) && j.Priority.valid() && len(bytes.TrimSpace(j.Input)) > 0
}
