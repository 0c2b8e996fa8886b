package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/archive"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/slots"
)

// ArchiveConfig turns on archiving: after a job succeeds, the worker
// streams each output into Store and puts the archived copy in the result.
type ArchiveConfig struct {
	Store   archive.Store
	Fetcher *archive.Fetcher
	// Concurrency bounds downloads cluster-wide (slot leases under the key
	// "archive" in reelq_slots); zero means 4.
	Concurrency int
	// Bandwidth bounds the bytes per second of all replicas' downloads
	// together (a rate limiter under the key "archive-bandwidth"); zero
	// means no limit.
	Bandwidth int64
	// Retry is the retry policy for transient download and upload errors.
	Retry archive.Retry
	// NoValidate turns off the outputs' media checks (REELQ_VALIDATE=false):
	// what the bytes are is still recorded, never held against them.
	NoValidate bool
}

// clusterSlots is archive.Slots on a slots.Pool: a download holds one of
// the cluster's archive slots.
type clusterSlots struct{ pool *slots.Pool }

func (s clusterSlots) Acquire(ctx context.Context) (func(), error) {
	for {
		seen := s.pool.Version()
		n, err := s.pool.TryAcquire(ctx, 1, slots.PriorityNormal)
		if err == nil && n > 0 {
			var once bool
			return func() {
				if !once {
					once = true
					_ = s.pool.Release(context.WithoutCancel(ctx), 1)
				}
			}, nil
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-s.pool.Changed(seen):
		case <-time.After(time.Second):
		}
	}
}

// clusterBandwidth is archive.Bandwidth on the cluster-wide rate limiter:
// one token per 64 KiB.
type clusterBandwidth struct{ lim *ratelimit.Limiter }

func (b clusterBandwidth) WaitN(ctx context.Context, n int) error {
	for ; n > 0; n -= archive.BandwidthChunk {
		if _, err := b.lim.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// archive copies a succeeded run's outputs into durable storage, then
// finishes the run with the archived copies in its result. The outputs are
// stored in the job state first, so a crash during archiving re-archives
// from them on redelivery instead of polling a task that may be gone, and
// never resubmits. The job's provider slot is given back meanwhile: a
// download is not provider work.
func (e *engine) archive(ctx context.Context, j *job, outs []reelq.Output) outcome {
	if e.w.archiver == nil || len(outs) == 0 {
		return e.finish(ctx, j, reelq.StatusSucceeded, outs, nil)
	}
	if j.st.Phase != reelq.PhaseArchiving {
		next := *j.st
		next.Phase, next.Outputs = reelq.PhaseArchiving, outs
		rev, err := e.w.states.Update(ctx, j.st, &next, j.rev)
		if errors.Is(err, jobstate.ErrConflict) {
			return reread()
		}
		if errors.Is(err, jobstate.ErrTooLarge) {
			return e.finish(ctx, j, reelq.StatusSucceeded, outs, nil) // finish fails it with result_too_large
		}
		if err != nil {
			return e.stateUnavailable(j, err)
		}
		j.st, j.rev = &next, rev
	}
	return outcome{kind: outArchive}
}

// stepArchive downloads the stored outputs, checks each as media on the
// way (see validate.go) and settles the run. A link that is gone or an
// output over the size limit ends with the result published anyway, the
// provider URL kept and archive_error set: the result is never lost
// because archiving failed. With archiving off (the store keeps nothing)
// the outputs are downloaded and dropped, only to be checked.
//
// Shutdown stops archiving at once (SIGTERM, not the end of the shutdown
// grace): the job returns to the queue, and its next delivery archives
// again from the outputs stored in its state. A source that trickles
// below the fetcher's minimum rate is cut off and not retried, and the
// job's later outputs are not tried, so one job holds an archive slot for
// at most one rate window of trickling.
func (e *engine) stepArchive(ctx context.Context, j *job) outcome {
	// The span covers the copies; finishing (the result's publish) is the
	// delivery's, as for a job without archiving.
	a := e.w.archiver
	keep := a.Store().Name() != archive.KindOff
	actx, span := e.stepSpan(ctx, "reelq.archive", trace.SpanKindInternal)
	actx, stop := context.WithCancel(actx)
	defer stop()
	defer context.AfterFunc(e.intake, stop)()
	outs := append([]reelq.Output(nil), j.st.Outputs...)
	slow := -1 // an output cut off for trickling
	for i := range outs {
		o := &outs[i]
		if o.Archive != nil || !keep && !fetchable(o.URL) {
			continue
		}
		if slow >= 0 {
			o.ArchiveError = fmt.Sprintf("not archived: output %d of this job was too slow", slow)
			continue
		}
		key := archive.Key(j.id, j.st.Run, i)
		if n := j.st.OutputRetries; n > 0 {
			key += fmt.Sprintf(".retry%d", n) // the failed submission's copies stay for inspection
		}
		start := time.Now()
		cp, err := a.Archive(actx, key, o.URL)
		if err != nil {
			if actx.Err() != nil {
				span.End()
				return nak(0) // shutdown: the next delivery archives again
			}
			if errors.Is(err, archive.ErrTooSlow) {
				slow = i
			}
			if !keep {
				e.logJob(j).Warn("output not downloaded; it is not checked", "output", i, "url", archive.RedactURL(o.URL), "err", err)
				continue
			}
			o.ArchiveError = e.w.redact(err.Error())
			e.w.m.Archived(e.name, "failed", 0, time.Since(start))
			e.logJob(j).Warn("output not archived; the result keeps the provider's link", "output", i, "url", archive.RedactURL(o.URL), "err", err)
			e.jobEvent(j, reelq.EventArchiveFailed, func(ev *reelq.Event) { ev.Reason = fmt.Sprintf("output %d: %s", i, o.ArchiveError) })
			continue
		}
		e.check(j, i, o, cp.Media)
		if !keep {
			continue
		}
		o.Archive = &reelq.ArchivedCopy{Store: cp.Store, Bucket: cp.Bucket, Key: cp.Key, Size: cp.Size, ContentType: cp.ContentType, SHA256: cp.SHA256}
		if o.ContentType == "" {
			o.ContentType = cp.ContentType
		}
		e.w.m.Archived(e.name, "archived", cp.Size, time.Since(start))
		e.jobEvent(j, reelq.EventArchived, func(ev *reelq.Event) {
			ev.Reason = fmt.Sprintf("output %d: %s/%s (%d bytes)", i, cp.Bucket, cp.Key, cp.Size)
		})
	}
	span.End()
	return e.settleOutputs(ctx, j, outs)
}
