package worker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/media"
	"github.com/reelq/reelq/internal/providers"
)

// Output validation: each output is inspected as media while it is
// archived (internal/archive tees the bytes into an internal/media
// Inspector), and checked against what the provider's Spec expects of it
// with the job's own expect on top. A failed check marks the output with
// a validation_error; the run then ends as the provider's output policy
// says (settleOutputs).

// check records what output i is as media and, unless validation is off,
// checks it; a failed check sets o.ValidationError, counts, logs and
// publishes an invalid_output event.
func (e *engine) check(j *job, i int, o *reelq.Output, rep *media.Report) {
	if rep == nil {
		return
	}
	o.Media = mediaInfo(rep)
	x, ok := e.expect(j, *o)
	if e.w.cfg.Archive.NoValidate || !ok {
		return
	}
	err := rep.Check(x)
	var ve *media.ValidationError
	if !errors.As(err, &ve) {
		e.w.m.OutputChecked(e.name, "ok")
		return
	}
	o.ValidationError = &reelq.ValidationError{Code: string(ve.Code), Message: ve.Message}
	e.w.m.OutputChecked(e.name, string(ve.Code))
	e.logJob(j).Warn("output failed its media check", "output", i, "code", ve.Code, "reason", ve.Message, "policy", e.rt.OutputPolicy)
	e.jobEvent(j, reelq.EventInvalidOutput, func(ev *reelq.Event) {
		ev.Code, ev.Reason = string(ve.Code), fmt.Sprintf("output %d: %s", i, ve.Message)
	})
}

// expect is what output o of j must be: the provider's expectation for
// it, with the fields the job's expect sets replacing the provider's; ok
// is false when there is nothing to check (an output the provider
// declared as no media, and a job that expects nothing of it).
func (e *engine) expect(j *job, o reelq.Output) (x media.Expect, ok bool) {
	x, ok = e.rt.Spec.ExpectFor(j.env.Input, providers.Output{URL: o.URL, ContentType: o.ContentType, Name: o.Name})
	je := j.env.Expect
	if je == nil && j.st != nil {
		je = j.st.Expect // a run started from the state (a retry, a resolve)
	}
	if je == nil {
		return x, ok
	}
	if len(je.Types) > 0 {
		x.Types = je.Types
	}
	if je.Duration != nil {
		x.Duration = seconds(*je.Duration)
	}
	if je.Tolerance != nil {
		x.Tolerance = seconds(*je.Tolerance)
	}
	if je.Audio != nil {
		x.Audio = *je.Audio
	}
	if je.MinBytes > 0 {
		x.MinBytes = je.MinBytes
	}
	return x, true
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// mediaInfo is the result's summary of a report.
func mediaInfo(r *media.Report) *reelq.MediaInfo {
	m := &reelq.MediaInfo{Type: r.Type, Duration: r.Duration.Seconds(), Width: r.Width, Height: r.Height, Bytes: r.Bytes, Complete: r.Complete}
	for _, t := range r.Video {
		m.Video = append(m.Video, t.Codec)
	}
	for _, t := range r.Audio {
		m.Audio = append(m.Audio, t.Codec)
	}
	return m
}

// fetchable reports whether an output is a link to download (a provider's
// text output is a data: URL).
func fetchable(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https")
}

// settleOutputs ends a run whose outputs were archived, as the output
// policy says when one failed its check: accept succeeds with the
// validation errors recorded; retry submits the job again, paid again,
// if its retries and budgets allow; otherwise the run fails with code
// invalid_output, its outputs (and their archived copies) kept.
func (e *engine) settleOutputs(ctx context.Context, j *job, outs []reelq.Output) outcome {
	var bad []string
	for i, o := range outs {
		if v := o.ValidationError; v != nil {
			bad = append(bad, fmt.Sprintf("output %d: %s", i, v))
		}
	}
	if len(bad) == 0 || e.rt.OutputPolicy == OutputAccept {
		return e.finish(ctx, j, reelq.StatusSucceeded, outs, nil)
	}
	why := strings.Join(bad, "; ")
	if e.rt.OutputPolicy == OutputRetry {
		room := e.retryRoom(j)
		if room == "" {
			return e.retryOutput(ctx, j, why)
		}
		why += "; not submitted again: " + room
	}
	return e.finish(ctx, j, reelq.StatusFailed, outs, &reelq.ErrorInfo{Code: reelq.CodeInvalidOutput, Message: why})
}

// retryRoom says why j may not be paid for again after an invalid
// output ("" if it may): its retries are used up, or a budget it counts
// against has no room for one more submission. A retry never waits for a
// budget to be raised.
func (e *engine) retryRoom(j *job) string {
	if n := j.st.OutputRetries; n >= e.rt.OutputRetries {
		return fmt.Sprintf("%d of %d retries used (%sOUTPUT_RETRIES)", n, e.rt.OutputRetries, e.rt.Spec.Kind.Prefix())
	}
	if sc, _ := e.w.budgets.scopes(e.name, j.env.Batch, j.est); len(sc) > 0 {
		if ok, over := e.w.budgets.fits(sc, j.est); !ok {
			if over != nil {
				return fmt.Sprintf("the %s %s budget of %s has no room for another submission", over.limit.Scope, over.limit.Name,
					reelq.FormatCost(reelq.Cost{Amount: over.limit.Amount, Unit: over.limit.Unit}))
			}
			return "a budget has no room for another submission"
		}
	}
	return ""
}

// retryOutput returns j to "queued" within its run, to be submitted (and
// paid) again: the failed check is recorded in the state, the
// submissions already paid stay counted.
func (e *engine) retryOutput(ctx context.Context, j *job, why string) outcome {
	next := *j.st
	next.Phase, next.Task, next.Outputs, next.Reserved = reelq.PhaseQueued, nil, nil, nil
	next.SubmitToken, next.SubmitStartedAt, next.SubmittedAt = "", nil, nil
	next.OutputRetries++
	next.OutputChecks = append(append([]string(nil), j.st.OutputChecks...), why)
	next.LastError = why
	rev, err := e.w.states.Update(ctx, j.st, &next, j.rev)
	if errors.Is(err, jobstate.ErrConflict) {
		return e.claimExisting(ctx, j)
	}
	if err != nil {
		return e.stateUnavailable(j, err)
	}
	j.st, j.rev = &next, rev
	e.logJob(j).Warn("an output failed its media check; submitting the job again (paid again)", "output_retries", next.OutputRetries, "reason", why)
	e.jobEvent(j, reelq.EventRetry, func(ev *reelq.Event) {
		ev.Code, ev.Reason = reelq.CodeInvalidOutput, fmt.Sprintf("submitting again (%d of %d): %s", next.OutputRetries, e.rt.OutputRetries, why)
	})
	return waitUntil(time.Now())
}
