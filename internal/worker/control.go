package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/wire"
)

// ResolveRequest is an operator's verdict on a held job, published on
// wire.ControlSubject("resolve", id): either the provider task the
// operator found (the job then resumes polling it), or Resubmit (the job
// is submitted again, knowing the provider may bill twice).
type ResolveRequest struct {
	TaskID   string `json:"task_id,omitempty"`
	Resubmit bool   `json:"resubmit,omitempty"`
	By       string `json:"by,omitempty"`
}

// runControl carries out operator requests from the CONTROL stream (only
// operators may publish there): resolving a held job, setting a provider
// budget. One replica handles each.
func (w *Worker) runControl(ctx context.Context) {
	cons, err := w.js.CreateOrUpdateConsumer(ctx, queue.StreamControl, jetstream.ConsumerConfig{
		Durable: "reelq-control", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: 16,
		Description: "reelq: operator requests",
	})
	if err != nil {
		if ctx.Err() == nil {
			w.log.Error("operator requests not served", "err", err)
		}
		return
	}
	w.consumeLoop(ctx, cons, "control", func(ctx context.Context, m jetstream.Msg) error {
		kind, id, _ := strings.Cut(strings.TrimPrefix(m.Subject(), "control."), ".")
		md, _ := m.Metadata()
		switch kind {
		case "resolve":
			var req ResolveRequest
			if err := json.Unmarshal(m.Data(), &req); err != nil || (req.TaskID == "") == !req.Resubmit {
				w.log.Warn("bad resolve request; dropping it", "job_id", id, "err", err)
				return nil
			}
			var seq uint64
			if md != nil {
				seq = md.Sequence.Stream
			}
			return w.resolve(ctx, id, req, seq)
		case "budget":
			at := time.Now()
			if md != nil {
				at = md.Timestamp
			}
			return w.applyBudget(ctx, id, m.Data(), at)
		}
		w.log.Warn("unknown operator request; dropping it", "subject", m.Subject())
		return nil
	})
}

// resolve applies an operator's verdict to a held job and republishes its
// message (from the stored payload) so a worker carries on with it.
func (w *Worker) resolve(ctx context.Context, id string, req ResolveRequest, ctlSeq uint64) error {
	st, rev, err := w.states.Get(ctx, id)
	if errors.Is(err, jobstate.ErrNotFound) {
		w.log.Warn("resolve: unknown job", "job_id", id)
		return nil
	}
	if err != nil {
		return err
	}
	if st.Phase != reelq.PhaseHeld {
		w.log.Info("resolve: job is not held; nothing to do", "job_id", id, "phase", st.Phase)
		w.event(reelq.Event{Kind: reelq.EventResolved, Provider: st.Provider, JobID: id, Reason: "not held (" + string(st.Phase) + "); nothing done"})
		return nil
	}
	if req.TaskID != "" {
		why, err := w.checkResolveTask(ctx, st, req.TaskID)
		if err != nil {
			return err // try again (the provider or the index did not answer)
		}
		if why != "" {
			return w.refuseResolve(ctx, st, rev, req, why)
		}
	}
	next := *st
	next.Seq, next.HeldReason, next.HeldSince, next.ResolveRefused = 0, "", nil, ""
	how := ""
	if req.TaskID != "" {
		now := time.Now().UTC()
		next.Phase, next.Task, next.SubmitUnknown = reelq.PhaseSubmitted, &reelq.Task{ID: req.TaskID}, false
		next.Submissions++
		if next.SubmitStartedAt != nil {
			next.SubmittedAt = next.SubmitStartedAt
		} else {
			next.SubmittedAt = &now
		}
		how = "task " + req.TaskID + " given by " + req.By
	} else {
		next.Phase, next.SubmitUnknown = reelq.PhaseQueued, false
		next.Submissions++ // the unknown submission may have been billed
		how = "resubmit requested by " + req.By
	}
	if _, err := w.states.Update(ctx, st, &next, rev); err != nil {
		return err
	}
	j := reelq.Job{ID: id, Provider: st.Provider, Batch: st.Batch, Priority: st.Priority, FairnessKey: st.FairnessKey,
		Input: st.Input, Metadata: st.Metadata, EnqueuedAt: st.EnqueuedAt}
	data, _ := json.Marshal(j)
	msg := &nats.Msg{Subject: wire.JobSubject(st.Provider, st.Priority, id), Data: data, Header: nats.Header{}}
	msg.Header.Set(wire.HeaderRun, strconv.Itoa(st.Run))
	if st.Traceparent != "" {
		msg.Header.Set(wire.HeaderTraceparent, st.Traceparent)
	}
	if _, err := w.js.PublishMsg(ctx, msg, jetstream.WithMsgID(fmt.Sprintf("%s:resolve:%d", id, ctlSeq))); err != nil {
		return err
	}
	w.log.Info("held job resolved", "job_id", id, "how", how)
	w.event(reelq.Event{Kind: reelq.EventResolved, Provider: st.Provider, JobID: id, Batch: st.Batch, Reason: how})
	return nil
}

// checkResolveTask decides whether a held job may adopt the task an
// operator named: the task must be recorded by no other job (the task
// index, then every job state: TaskHolder), the provider must know it (one poll), and where the provider's
// task names its job (a reference the adapter sent), it must name this one. It
// claims the task for the job when all hold. why is the refusal ("" to
// adopt); err is a failure worth retrying.
func (w *Worker) checkResolveTask(ctx context.Context, st *jobstate.State, task string) (why string, err error) {
	rt := w.rts[st.Provider]
	if rt == nil {
		return "", fmt.Errorf("this replica does not run %s; another one will", st.Provider)
	}
	owner, err := w.states.TaskHolder(ctx, st.Provider, task, st.ID)
	if err != nil {
		return "", err
	}
	if owner != "" {
		return fmt.Sprintf("task %s is job %s's", task, owner), nil
	}
	cctx, cancel := context.WithTimeout(ctx, rt.RequestTimeout)
	defer cancel()
	if _, err := rt.Limiter.Wait(cctx); err != nil {
		return "", err
	}
	start := time.Now()
	status, err := rt.Provider.Poll(prepaid(cctx, start), providers.Task{ID: task})
	w.observeCall(st.Provider, "poll", err, time.Since(start))
	status = providers.Bound(status)
	switch {
	case err != nil && providers.Retryable(err):
		return "", err
	case err != nil:
		return fmt.Sprintf("%s does not know task %s: %s", st.Provider, task, w.redact(err.Error())), nil
	case status.NamesJob && status.JobRef != st.ID:
		named := "no reelq job"
		if status.JobRef != "" {
			named = "job " + status.JobRef
		}
		return fmt.Sprintf("task %s names %s, not %s", task, named, st.ID), nil
	}
	if err := w.states.ClaimTask(ctx, st.Provider, task, st.ID); errors.Is(err, jobstate.ErrTaskOwned) {
		return err.Error(), nil
	} else if err != nil {
		return "", err
	}
	return "", nil
}

// refuseResolve leaves the job held and says why in its state, where the
// operator's Resolve reads the answer.
func (w *Worker) refuseResolve(ctx context.Context, st *jobstate.State, rev uint64, req ResolveRequest, why string) error {
	next := *st
	next.ResolveRefused = "task " + req.TaskID + " not adopted: " + why
	if _, err := w.states.Update(ctx, st, &next, rev); err != nil {
		return err // a conflict too: the request is looked at again with the new state
	}
	w.log.Warn("resolve refused; the job stays held", "job_id", st.ID, "task_id", req.TaskID, "by", req.By, "reason", why)
	w.event(reelq.Event{Kind: reelq.EventResolved, Provider: st.Provider, JobID: st.ID, Batch: st.Batch, Reason: "refused: " + next.ResolveRefused})
	return nil
}
