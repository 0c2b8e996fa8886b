package inspect

import (
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

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// CancelRequested reports which of ids have a cancel request that the
// workers have not carried out yet, or keep (a request stays until the
// job state expires).
func (c *Inspector) CancelRequested(ctx context.Context, ids []string) (map[string]bool, error) {
	subjects := make([]string, 0, len(ids))
	for _, id := range ids {
		if reelq.ValidID(id) {
			subjects = append(subjects, "$KV."+wire.BucketCancel+"."+id)
		}
	}
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	msgs, err := c.s.LastMsgs(cctx, "KV_"+wire.BucketCancel, subjects)
	if err != nil {
		return nil, fmt.Errorf("reelq: cancel requests: %w", err)
	}
	out := map[string]bool{}
	for subj, m := range msgs {
		if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			continue
		}
		out[strings.TrimPrefix(subj, "$KV."+wire.BucketCancel+".")] = true
	}
	return out, nil
}

// ResolveOptions is an operator's verdict on a held job: exactly one of
// TaskID (the provider task the operator found on the provider's
// dashboard; the job resumes polling it) and Resubmit (submit again; the
// provider may bill twice).
type ResolveOptions struct {
	TaskID   string
	Resubmit bool
}

// Resolve settles a job held after a submission with unknown outcome (an
// operator identity is needed: the request goes to the CONTROL stream,
// and a worker carries it out). It waits until the job has left the held
// phase and returns its state.
func (c *Inspector) Resolve(ctx context.Context, id string, o ResolveOptions) (*reelq.JobState, error) {
	if (o.TaskID == "") == !o.Resubmit {
		return nil, errors.New("reelq: resolve needs exactly one of a task id and resubmit")
	}
	st, err := c.getState(ctx, id)
	if err != nil {
		return nil, err
	}
	if st.Phase != reelq.PhaseHeld {
		return st, fmt.Errorf("reelq: job %s is %s, not held", id, st.Phase)
	}
	body, _ := json.Marshal(map[string]any{"task_id": o.TaskID, "resubmit": o.Resubmit, "by": c.opts.By})
	cctx, cancel := c.s.ReqCtx(ctx)
	_, err = c.js.Publish(cctx, wire.ControlSubject("resolve", id), body)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("reelq: resolve %s: %w", id, err)
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(2*time.Second), backoff.WithMaxElapsedTime(0)), ctx)
	var last *reelq.JobState
	err = backoff.Retry(func() error {
		s, err := c.getState(ctx, id)
		if err != nil {
			return err
		}
		last = s
		switch {
		case s.Phase != reelq.PhaseHeld:
			return nil
		case s.ResolveRefused != "" && s.UpdatedAt.After(st.UpdatedAt):
			// A worker refused this request (any write to a held job after
			// the request is its answer).
			return backoff.Permanent(fmt.Errorf("%w: %s", ErrResolveRefused, s.ResolveRefused))
		}
		return errors.New("still held")
	}, b)
	return last, err
}

// ErrResolveRefused is a resolve a worker refused: the task is recorded
// by another job, the provider does not know it, or it names another job.
// The job stays held.
var ErrResolveRefused = errors.New("reelq: resolve refused")

// providerStore opens the provider state store (operator calls).
func (c *Inspector) providerStore(ctx context.Context) (*providerstate.Store, error) {
	kv, err := c.js.KeyValue(ctx, wire.BucketProviders)
	if err != nil {
		return nil, notReady(err)
	}
	return providerstate.New(c.js, kv, wire.StreamJobs, consumerNames), nil
}

func consumerNames(p string) []string {
	out := make([]string, 0, len(reelq.Priorities))
	for _, prio := range reelq.Priorities {
		out = append(out, wire.ConsumerName(p, prio))
	}
	return out
}

// Pause pauses provider for every worker until Resume (an operator
// identity is needed). It reports whether it was running before.
func (c *Inspector) Pause(ctx context.Context, provider, reason string) (bool, error) {
	if !reelq.KnownProvider(provider) {
		return false, fmt.Errorf("reelq: unknown provider %q (one of %s)", provider, strings.Join(reelq.Providers, ", "))
	}
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	ps, err := c.providerStore(cctx)
	if err != nil {
		return false, err
	}
	if reason == "" {
		reason = "paused by an operator"
	}
	st, changed, err := ps.Pause(cctx, provider, providerstate.CodeManual, reason, c.opts.By, 0)
	if err != nil {
		return false, err
	}
	if changed {
		c.event(reelq.Event{Kind: reelq.EventProviderPaused, Provider: provider, Code: st.Code, Reason: st.Reason})
	}
	return changed, nil
}

// Resume ends provider's pause, whatever its kind. It reports whether the
// provider was paused.
func (c *Inspector) Resume(ctx context.Context, provider string) (bool, error) {
	if !reelq.KnownProvider(provider) {
		return false, fmt.Errorf("reelq: unknown provider %q (one of %s)", provider, strings.Join(reelq.Providers, ", "))
	}
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	ps, err := c.providerStore(cctx)
	if err != nil {
		return false, err
	}
	changed, err := ps.Resume(cctx, provider, c.opts.By)
	if err != nil {
		return false, err
	}
	if changed {
		c.event(reelq.Event{Kind: reelq.EventProviderResumed, Provider: provider, Reason: "resumed by " + c.opts.By})
	}
	return changed, nil
}

// DeadLetter is a message in the DLQ stream.
type DeadLetter struct {
	Seq      uint64
	Time     time.Time
	Provider string
	// JobID is the job it was answered under (a seq- id for a message that
	// could not be attributed to a job).
	JobID string
	// Subject is where it was published; Code and Reason why it could not
	// run.
	Subject, Code, Reason string
	Data                  []byte
	Header                nats.Header
}

// DeadLetters lists the DLQ, oldest first.
func (c *Inspector) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	var out []DeadLetter
	seq := uint64(1)
	for {
		n, last := 0, uint64(0)
		cctx, cancel := c.s.ReqCtx(ctx)
		err := c.s.DirectBatch(cctx, wire.StreamDLQ, map[string]any{"seq": seq, "batch": 500}, func(m store.Msg) bool {
			n++
			last = m.Seq
			out = append(out, deadLetter(m))
			return true
		})
		cancel()
		if err != nil {
			return out, err
		}
		if n == 0 || last < seq {
			return out, nil
		}
		seq = last + 1
	}
}

func deadLetter(m store.Msg) DeadLetter {
	return DeadLetter{Seq: m.Seq, Time: m.Time, Provider: m.Header.Get("Reelq-Provider"), JobID: m.Header.Get("Reelq-Job-Id"),
		Subject: m.Header.Get("Reelq-Subject"), Code: m.Header.Get("Reelq-Error-Code"), Reason: m.Header.Get("Reelq-Error"),
		Data: m.Data, Header: m.Header}
}

// Redrive says what Redrive did with a dead letter (or, with dryRun,
// would do).
type Redrive struct {
	Seq uint64
	// Action is RedriveRetried (the job runs again as Run), RedriveDropped
	// (the job is Phase: finished and succeeded, or not finished; the
	// message is only removed) or RedriveRepublished (a message that could
	// not be attributed to a job, published again to Subject).
	Action  string
	JobID   string
	Run     int
	Phase   reelq.Phase
	Subject string
	// DryRun is set when nothing was changed.
	DryRun bool
}

// String says what was done (or would be) as a person reads it:
// "retried j1 as run 2", "would republish message 7 to jobs.samsar".
func (r Redrive) String() string {
	var s string
	switch r.Action {
	case RedriveRetried:
		s = fmt.Sprintf("retry %s as run %d", r.JobID, r.Run)
	case RedriveDropped:
		s = fmt.Sprintf("drop: job %s is %s", r.JobID, r.Phase)
	default:
		s = fmt.Sprintf("republish message %d to %s", r.Seq, r.Subject)
	}
	if r.DryRun {
		return "would " + s
	}
	switch r.Action {
	case RedriveRetried:
		return "retried" + strings.TrimPrefix(s, "retry")
	case RedriveDropped:
		return "dropped" + strings.TrimPrefix(s, "drop")
	}
	return "republished" + strings.TrimPrefix(s, "republish")
}

// Redrive actions.
const (
	RedriveRetried     = "retried"
	RedriveDropped     = "dropped"
	RedriveRepublished = "republished"
)

// Redrive publishes a dead letter's message again and removes it from the
// DLQ. A job with a state (dead-lettered as poison, say) runs again as a
// new run, like Client.Retry; a message that could not be attributed to a
// job is republished as it was (if it is still malformed, it is
// dead-lettered again). With dryRun nothing changes; the Redrive says
// what would be done.
func (c *Inspector) Redrive(ctx context.Context, d DeadLetter, dryRun bool) (Redrive, error) {
	out := Redrive{Seq: d.Seq, JobID: d.JobID, DryRun: dryRun}
	if st, err := c.getState(ctx, d.JobID); err == nil && !strings.HasPrefix(d.JobID, "seq-") {
		out.Phase = st.Phase
		if st.Phase == reelq.PhaseFinished && !st.Succeeded() {
			out.Action, out.Run = RedriveRetried, st.Run+1
			if dryRun {
				return out, nil
			}
			run, err := c.client.Retry(ctx, d.JobID)
			if err != nil {
				return Redrive{}, err
			}
			out.Run = run
			return out, c.deleteDLQ(ctx, d.Seq)
		}
		out.Action = RedriveDropped
		if dryRun {
			return out, nil
		}
		return out, c.deleteDLQ(ctx, d.Seq)
	}
	subj := d.Subject
	if subj == "" {
		if d.Provider == "" {
			return Redrive{}, fmt.Errorf("reelq: dead letter %d has no subject or provider", d.Seq)
		}
		subj = "jobs." + d.Provider
	}
	out.Action, out.Subject, out.JobID = RedriveRepublished, subj, ""
	if dryRun {
		return out, nil
	}
	msg := &nats.Msg{Subject: subj, Data: d.Data, Header: nats.Header{}}
	for k, v := range d.Header {
		if !strings.HasPrefix(k, "Reelq-Error") && !strings.HasPrefix(k, "Nats-") && k != "Reelq-Provider" && k != "Reelq-Job-Id" && k != "Reelq-Stream-Seq" && k != "Reelq-Subject" {
			msg.Header[k] = v
		}
	}
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	if _, err := c.js.PublishMsg(cctx, msg, jetstream.WithMsgID("redrive:"+strconv.FormatUint(d.Seq, 10))); err != nil {
		return Redrive{}, fmt.Errorf("reelq: redrive %d: %w", d.Seq, err)
	}
	return out, c.deleteDLQ(ctx, d.Seq)
}

func (c *Inspector) deleteDLQ(ctx context.Context, seq uint64) error {
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	s, err := c.js.Stream(cctx, wire.StreamDLQ)
	if err != nil {
		return err
	}
	if err := s.DeleteMsg(cctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("reelq: remove dead letter %d: %w", seq, err)
	}
	return nil
}

// DeleteResults deletes the durable consumer Results(Name) created.
func (c *Inspector) DeleteResults(ctx context.Context, name string) error {
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	return c.js.DeleteConsumer(cctx, wire.StreamResults, c.opts.ConsumerPrefix+"_"+name)
}
