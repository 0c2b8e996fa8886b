package worker

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providerstate"
)

// gateLoop follows the provider's pause state and tells the loop whether
// jobs may start: open, closed (paused), or one probe job (an automatic
// pause whose probe this replica holds). It runs the credit probes of
// providers with a balance endpoint itself.
func (e *engine) gateLoop(ctx context.Context) {
	var last gateState
	lastPaused := false
	first := true
	for ctx.Err() == nil {
		st, seen := e.w.pstate.View(e.name)
		if st.Paused != lastPaused || first {
			lastPaused, first = st.Paused, false
			e.w.m.SetPaused(e.name, st.Code, st.Paused)
		}
		g := gateState{mode: gateOpen}
		var wake <-chan time.Time
		var budgetChanged <-chan struct{}
		if st.Paused && st.Code == "budget" && st.Auto() {
			// A budget pause ends when its period rolls over or its limit
			// is raised: no probe is needed, the reservation decides.
			room, budgetSeen := e.budgetRoom()
			if !st.NextProbeAt.After(time.Now()) || room {
				e.w.resume(ctx, e.name, "the provider's budget allows submissions again")
				continue
			}
			budgetChanged = e.w.budgets.changed(budgetSeen)
			wake = time.After(max(time.Until(*st.NextProbeAt), 50*time.Millisecond))
			st.NextProbeAt = nil // handled here; no probe below
			st.Paused = true
		}
		if st.Paused {
			g.mode = gateClosed
			now := time.Now()
			if st.Auto() {
				switch {
				case st.ProbeOwner == e.w.cfg.WorkerID && st.ProbeUntil != nil && st.ProbeUntil.After(now):
					g = gateState{mode: gateProbe, claim: *st.ProbeUntil}
					wake = time.After(time.Until(*st.ProbeUntil))
				case !st.NextProbeAt.After(now) && (st.ProbeOwner == "" || st.ProbeUntil == nil || !st.ProbeUntil.After(now)):
					if _, balance := e.rt.Provider.(providers.CreditChecker); !balance && e.waitingN.Load() == 0 {
						// A probe job must come from the jobs this replica
						// holds: leave the probe to a replica that holds some
						// (a pause holds no deliveries, so a replica with
						// room pulls the queued jobs).
						wake = time.After(250 * time.Millisecond)
						break
					}
					if again, d := e.probe(ctx); again {
						continue
					} else if d > 0 {
						wake = time.After(d)
					}
				}
				if wake == nil {
					next := *st.NextProbeAt
					if st.ProbeUntil != nil && st.ProbeUntil.After(next) {
						next = *st.ProbeUntil
					}
					wake = time.After(max(time.Until(next), 50*time.Millisecond))
				}
			}
		}
		if g != last {
			last = g
			select {
			case e.events <- evGate{g: g}:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-e.w.pstate.Changed(seen):
		case <-wake:
		case <-budgetChanged:
		}
	}
}

// budgetRoom reports whether the provider's budget for the current period
// has room again (an operator raised it, say), from the local view, and
// the version of the view it read.
func (e *engine) budgetRoom() (bool, uint64) {
	e.needMu.Lock()
	need := e.need
	e.needMu.Unlock()
	if need.Unit == "" {
		_, seen := e.w.budgets.scopes(e.name, "", nil)
		return false, seen
	}
	sc, seen := e.w.budgets.scopes(e.name, "", &need)
	for _, s := range sc {
		if s.limit.Scope != reelq.ScopeProvider {
			continue
		}
		if ok, _ := e.w.budgets.fits([]budgetScope{s}, &need); !ok {
			return false, seen
		}
	}
	return true, seen
}

// probe checks whether an automatically paused provider can work again.
// With a credit endpoint it asks it; otherwise, or when that endpoint
// itself fails, the claim lets the next job started (alone) be the test:
// its submission either goes through (the pause ends) or is refused (the
// pause backs off). It reports whether the caller should re-read the
// state at once, or else how long to wait.
func (e *engine) probe(ctx context.Context) (bool, time.Duration) {
	w := e.w
	ok, err := w.pstate.ClaimProbe(ctx, e.name, w.cfg.WorkerID, w.cfg.AckWait)
	if err != nil {
		e.log.Warn("claim probe failed", "err", err)
		return false, time.Second
	}
	if !ok {
		return false, 0
	}
	cc, hasCheck := e.rt.Provider.(providers.CreditChecker)
	if !hasCheck {
		e.log.Info("probing paused provider with one job")
		return true, 0 // the claim is ours: the gate lets one job through
	}
	if _, err := e.rt.Limiter.Wait(ctx); err != nil {
		_ = w.pstate.ReleaseProbe(context.WithoutCancel(ctx), e.name, w.cfg.WorkerID)
		return false, limiterRetry
	}
	cctx, cancel := context.WithTimeout(ctx, e.rt.RequestTimeout)
	start := time.Now()
	err = cc.CheckCredits(prepaid(cctx, start))
	cancel()
	w.observeCall(e.name, "credits", err, time.Since(start))
	switch {
	case err == nil:
		e.log.Info("credit probe succeeded; resuming provider")
		w.resume(ctx, e.name, "credit probe succeeded")
	case errors.Is(err, providers.ErrCreditsExhausted), errors.Is(err, providers.ErrAuth):
		e.log.Info("credit probe: still paused", "err", err)
		w.pause(ctx, e.name, err)
	default:
		// The balance endpoint itself failed (503, 404, ...): it cannot
		// tell, so one job is the probe instead, as for a provider without
		// one (the claim stays ours). With no job here to probe with, back
		// off as for an empty balance, so a broken endpoint is not hammered
		// at the full rate limit by every replica.
		if errors.Is(err, providers.ErrRateLimited) {
			wait := providers.RetryAfter(err)
			if wait <= 0 {
				wait = 2 * time.Second
			}
			if berr := e.rt.Limiter.Block(ctx, time.Now().Add(wait)); berr != nil && ctx.Err() == nil {
				e.log.Warn("could not share the rate-limit back-off", "err", berr)
			}
		}
		if e.waitingN.Load() > 0 {
			e.log.Warn("credit probe: the balance endpoint failed; probing with one job instead", "err", err)
			return true, 0
		}
		e.log.Warn("credit probe failed and no job here to probe with; backing off", "err", err)
		w.probeFailed(ctx, e.name, err)
	}
	return true, 0
}

// pausedForUs reports whether the provider is paused and j is not the
// probe let through.
func (e *engine) pausedForUs(j *job) bool {
	v, _ := e.w.pstate.View(e.name)
	return v.Paused && !j.probe
}

// releaseProbeIfOurs gives up the probe claim when the probe job turns out
// to need no paid call (it was submitted before): it cannot tell whether
// credits are back.
func (e *engine) releaseProbeIfOurs(j *job) {
	if !j.probe {
		return
	}
	j.probe = false
	_ = e.w.pstate.ReleaseProbe(context.WithoutCancel(e.intake), e.name, e.w.cfg.WorkerID)
}

// resumeIfProven ends a credit pause when a paid call that started after
// the pause began went through (the account works again). Manual and
// auth pauses only end by an operator; a call that started before the
// pause proves nothing, and neither does a submit where credits show up
// only on the poll.
func (e *engine) resumeIfProven(ctx context.Context, j *job) {
	if e.rt.Spec.CreditsOnPoll {
		return
	}
	v, _ := e.w.pstate.View(e.name)
	if v.Auto() && v.Since != nil && j.st != nil && j.st.SubmitStartedAt != nil && j.st.SubmitStartedAt.After(*v.Since) {
		e.w.resume(ctx, e.name, "a submission made during the pause went through")
	}
}

// pause records err (credits or auth) as the reason provider is paused.
func (w *Worker) pause(ctx context.Context, name string, err error) {
	code, probe := providerstate.CodeCredits, w.cfg.ProbeInterval
	if errors.Is(err, providers.ErrAuth) {
		code, probe = providerstate.CodeAuth, 0
	}
	w.pauseWith(ctx, name, code, err.Error(), probe)
}

// pauseFor pauses provider until an operator resumes it, with code.
func (w *Worker) pauseFor(ctx context.Context, name, code string, err error) {
	w.pauseWith(ctx, name, code, err.Error(), 0)
}

// probeFailed backs a failed credit probe off like an empty balance.
func (w *Worker) probeFailed(ctx context.Context, name string, err error) {
	w.pauseWith(ctx, name, providerstate.CodeCredits, "credit probe failed: "+err.Error(), w.cfg.ProbeInterval)
}

func (w *Worker) pauseWith(ctx context.Context, name, code, reason string, probe time.Duration) {
	st, changed, perr := w.pstate.Pause(context.WithoutCancel(ctx), name, code, w.redact(reason), w.cfg.WorkerID, probe)
	if perr != nil {
		w.log.Error("pause provider failed", "provider", name, "err", perr)
		return
	}
	w.m.SetPaused(name, st.Code, true)
	if changed {
		w.log.Warn("provider paused for every replica", "provider", name, "code", st.Code, "reason", st.Reason, "next_probe_at", st.NextProbeAt)
		w.event(reelq.Event{Kind: reelq.EventProviderPaused, Provider: name, Code: st.Code, Reason: st.Reason, Until: st.NextProbeAt})
	}
}

// resume ends an automatic pause after a successful probe. A manual or
// auth pause (which may have replaced it since we looked) stays.
func (w *Worker) resume(ctx context.Context, name, why string) {
	changed, err := w.pstate.EndAuto(context.WithoutCancel(ctx), name, w.cfg.WorkerID)
	if err != nil {
		w.log.Error("resume provider failed", "provider", name, "err", err)
		return
	}
	if !changed {
		return
	}
	w.m.SetPaused(name, "", false)
	w.log.Info("provider resumed", "provider", name, "reason", why)
	w.event(reelq.Event{Kind: reelq.EventProviderResumed, Provider: name, Reason: why})
}

// noteAmbiguous counts an ambiguous submission cluster-wide and pauses
// the provider for an operator once AmbiguousPauseAfter happened within
// AmbiguousWindow: a provider that creates tasks but does not answer must
// not be paid again and again.
func (w *Worker) noteAmbiguous(ctx context.Context, name string, rt *Runtime, cause error) {
	if rt.AmbiguousPauseAfter < 0 {
		return
	}
	n, err := w.pstate.NoteAmbiguous(context.WithoutCancel(ctx), name, rt.AmbiguousWindow)
	if err != nil {
		w.log.Warn("counting an ambiguous submission failed", "provider", name, "err", err)
		return
	}
	if n >= rt.AmbiguousPauseAfter {
		w.pauseWith(ctx, name, providerstate.CodeAmbiguous,
			"submissions without an answer: "+strconv.Itoa(n)+" within "+rt.AmbiguousWindow.String()+"; last: "+cause.Error()+
				"; check the provider's dashboard for unseen tasks, then 'enqueue resume "+name+"'", 0)
	}
}
