package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/kvwatch"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/wire"
)

// cancelSet is this replica's view of the cancel requests in the
// reelq_cancel bucket, kept by a watch: producers write a key per job to
// cancel, the workers carry the request out. A worker learns of a request
// for a job it runs from the watch (no read per poll), and checks the set
// before it starts any job.
type cancelSet struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu   sync.RWMutex
	ids  map[string]string // job id -> provider
	sink func(id, provider string)
}

// CancelRequest is the value of a cancel key.
type CancelRequest struct {
	Provider string    `json:"provider,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	By       string    `json:"by,omitempty"`
	At       time.Time `json:"at"`
}

func newCancelSet(kv jetstream.KeyValue, log *slog.Logger) *cancelSet {
	return &cancelSet{kv: kv, log: log, ids: map[string]string{}}
}

func (c *cancelSet) setSink(f func(id, provider string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sink = f
}

func (c *cancelSet) has(id string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.ids[id]
	return ok
}

// watch loads every cancel request, then follows new ones until ctx ends.
// It returns once the initial values are loaded, with a channel closed when
// the watch stops.
func (c *cancelSet) watch(ctx context.Context) (<-chan struct{}, error) {
	return kvwatch.Follow(ctx, c.kv, "cancel requests", c.apply)
}

func (c *cancelSet) apply(e jetstream.KeyValueEntry, live bool) {
	id := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		c.mu.Lock()
		delete(c.ids, id)
		c.mu.Unlock()
		return
	}
	var req CancelRequest
	_ = json.Unmarshal(e.Value(), &req)
	c.mu.Lock()
	c.ids[id] = req.Provider
	sink := c.sink
	c.mu.Unlock()
	if live && sink != nil {
		if req.Provider != "" {
			sink(id, req.Provider)
			return
		}
		for _, p := range reelq.Providers {
			sink(id, p)
		}
	}
}

// runCanceller carries out cancel requests for jobs no worker holds: one
// replica (a shared durable consumer) finishes a queued job as cancelled at
// once, publishes its result and removes its message, so `cancel` does not
// wait for the job's turn. Jobs that run are cancelled by the replica
// running them (it sees the request in its cancelSet).
func (w *Worker) runCanceller(ctx context.Context) {
	// A new consumer starts from every request kept (the last per job), so
	// one made before any worker ran is carried out too; an existing one
	// keeps its policy (the server refuses to change it) and its position.
	policy := jetstream.DeliverLastPerSubjectPolicy
	if c, err := w.js.Consumer(ctx, "KV_"+queue.BucketCancel, "reelq-canceller"); err == nil {
		policy = c.CachedInfo().Config.DeliverPolicy
	}
	cons, err := w.js.CreateOrUpdateConsumer(ctx, "KV_"+queue.BucketCancel, jetstream.ConsumerConfig{
		Durable: "reelq-canceller", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: 64,
		DeliverPolicy: policy, FilterSubject: "$KV." + queue.BucketCancel + ".>", Description: "reelq: cancel requests for queued jobs",
	})
	if err != nil {
		if ctx.Err() == nil {
			w.log.Error("canceller not started; queued jobs are cancelled when a worker picks them up", "err", err)
		}
		return
	}
	w.consumeLoop(ctx, cons, "canceller", func(ctx context.Context, m jetstream.Msg) error {
		id := m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]
		if len(m.Data()) == 0 {
			return nil // a deleted request
		}
		var req CancelRequest
		_ = json.Unmarshal(m.Data(), &req)
		if md, err := m.Metadata(); err == nil && md.NumDelivered == 1 && reelq.ValidID(id) && reelq.KnownProvider(req.Provider) {
			// The job's timeline shows the request: only workers write
			// job events, so nobody can forge one in a stranger's.
			w.event(reelq.Event{Kind: reelq.EventCancelRequested, Provider: req.Provider, JobID: id, Reason: cancelReason(req)})
		}
		return w.cancelQueued(ctx, id, req)
	})
}

// cancelReason is what the cancel_requested event says of req (who and
// why, as the request says, at most 500 bytes).
func cancelReason(req CancelRequest) string {
	s := "requested"
	if req.By != "" {
		s += " by " + req.By
	}
	if req.Reason != "" {
		s += ": " + req.Reason
	}
	if len(s) > 500 {
		s = strings.ToValidUTF8(s[:500], "")
	}
	return s
}

// consumeLoop feeds handle from a durable consumer one message at a time
// until ctx ends; a handler error returns the message after a delay.
func (w *Worker) consumeLoop(ctx context.Context, cons jetstream.Consumer, name string, handle func(context.Context, jetstream.Msg) error) {
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(fctx))
		cancel()
		if err != nil {
			// An empty fetch ends in a deadline, no messages, or nats.go's
			// timeout: nothing to report.
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
				w.log.Warn(name+" pull failed", "err", err)
				sleepCtx(ctx, time.Second)
			}
			continue
		}
		if err := handle(ctx, msg); err != nil {
			w.log.Warn(name+" request failed; will retry", "subject", msg.Subject(), "err", err)
			_ = msg.NakWithDelay(5 * time.Second)
			continue
		}
		_ = msg.Ack()
	}
}

// cancelQueued finishes job id as cancelled if it has not started.
func (w *Worker) cancelQueued(ctx context.Context, id string, req CancelRequest) error {
	for range 10 {
		st, rev, err := w.states.Get(ctx, id)
		switch {
		case errors.Is(err, jobstate.ErrNotFound):
			st, rev = nil, 0
		case err != nil:
			return err
		}
		if st != nil && st.Phase != reelq.PhaseQueued && st.Phase != reelq.PhaseHeld {
			return nil // running (its worker cancels it) or finished
		}
		provider := req.Provider
		if st != nil {
			provider = st.Provider
		}
		queued, seq := w.queuedJob(ctx, id, provider)
		if st == nil && queued == nil {
			return nil // unknown here: a worker that later pulls it checks the request
		}
		res, next := cancelledBeforeStart(id, st, queued)
		if res.Batch != "" {
			// No worker pulled it, so no worker indexed it: list it in
			// its batch before it leaves JOBS.
			ids, _ := json.Marshal([]string{id})
			if _, err := w.js.Publish(ctx, wire.BatchIndexSubject(res.Batch), ids); err != nil {
				return err
			}
		}
		next.Worker = w.cfg.WorkerID
		if st == nil {
			_, err = w.states.Create(ctx, &next)
			if errors.Is(err, jobstate.ErrExists) {
				continue
			}
		} else {
			_, err = w.states.Update(ctx, st, &next, rev)
			if errors.Is(err, jobstate.ErrConflict) {
				continue
			}
		}
		if err != nil {
			return err
		}
		if already, err := queue.PublishResult(ctx, w.js, res); err != nil {
			return err // the job's state says finished: whoever sees it next republishes
		} else if !already {
			w.beat.finished(res)
		}
		if seq != 0 {
			w.removeCancelled(ctx, id, seq)
		}
		w.log.Info("queued job cancelled", "job_id", id, "provider", res.Provider, "by", req.By)
		w.event(reelq.Event{Kind: reelq.EventCancelled, Provider: res.Provider, JobID: id, Batch: res.Batch, Reason: "cancelled before it started"})
		return nil
	}
	return fmt.Errorf("cancel %s: %w", id, jobstate.ErrConflict)
}

// cancelledBeforeStart returns the result of job id, cancelled before it
// started, and its finished state: from its state st, or from its queued
// message's job when it has none yet.
func cancelledBeforeStart(id string, st *jobstate.State, queued *reelq.Job) (*reelq.Result, jobstate.State) {
	res := &reelq.Result{ID: id, Status: reelq.StatusCancelled, Run: 1, CompletedAt: time.Now().UTC(), PayOnce: reelq.PayOnceGuaranteed,
		Error: &reelq.ErrorInfo{Code: reelq.CodeCancelled, Message: "cancelled before it started"}}
	var next jobstate.State
	if st != nil {
		next = *st
		res.Provider, res.Batch, res.Run, res.Attempts, res.Metadata = st.Provider, st.Batch, st.Run, st.Attempts, st.Metadata
		res.EnqueuedAt, res.Priority, res.FairnessKey, res.Traceparent = st.EnqueuedAt, st.Priority, st.FairnessKey, st.Traceparent
	} else {
		j := queued
		res.Provider, res.Batch, res.Metadata, res.EnqueuedAt = j.Provider, j.Batch, j.Metadata, j.EnqueuedAt
		res.Priority, res.FairnessKey = j.Priority, j.FairnessKey
		next = jobstate.State{ID: id, Provider: j.Provider, Batch: j.Batch, Priority: j.Priority, FairnessKey: j.FairnessKey,
			Digest: j.Digest(), Run: 1, Input: j.Input, Metadata: j.Metadata, EnqueuedAt: j.EnqueuedAt}
	}
	if queued != nil && res.Provider == "" {
		res.Provider = queued.Provider
	}
	data, _ := json.Marshal(res)
	next.Phase, next.Result, next.LastError = reelq.PhaseFinished, data, "cancelled"
	return res, next
}

// removeCancelled removes the message (stream sequence seq) of job id,
// cancelled before it started: that one message, not its subject, since a
// retry published after the job's state was finished is a later message
// of the subject. An engine that pulled this one ahead holds a job the
// cancel watch has flagged: it finds the state finished, republishes the
// stored result (deduplicated) and settles the delivery, whose message is
// gone (TestCancelOfAJobAnEngineHoldsIsSettledOnce).
func (w *Worker) removeCancelled(ctx context.Context, id string, seq uint64) {
	s, err := w.js.Stream(ctx, queue.StreamJobs)
	if err != nil {
		return
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		w.log.Warn("could not remove a cancelled job's message; the worker that pulls it republishes its result", "job_id", id, "stream_seq", seq, "err", err)
	}
}

// queuedJob finds job id's message still waiting in JOBS, under any of its
// subject forms, and its stream sequence; provider may be empty (then
// every provider is tried).
func (w *Worker) queuedJob(ctx context.Context, id, provider string) (*reelq.Job, uint64) {
	s, err := w.js.Stream(ctx, queue.StreamJobs)
	if err != nil {
		return nil, 0
	}
	provs := reelq.Providers
	if provider != "" {
		provs = []string{provider}
	}
	for _, p := range provs {
		for _, prio := range []reelq.Priority{reelq.Normal, reelq.High, reelq.Low, ""} {
			subj := wire.JobSubject(p, prio, id)
			if prio == "" {
				subj = "jobs." + p + ".normal." + id
			}
			m, err := s.GetLastMsgForSubject(ctx, subj)
			if err != nil {
				continue
			}
			j, err := reelq.DecodeJob(m.Data)
			if err != nil {
				continue
			}
			if j.Provider == "" {
				j.Provider = p
			}
			if j.EnqueuedAt == nil {
				t := m.Time.UTC()
				j.EnqueuedAt = &t
			}
			return &j, m.Sequence
		}
	}
	return nil, 0
}
