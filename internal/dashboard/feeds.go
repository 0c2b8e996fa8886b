package dashboard

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// watchJob yields job id's state now (if it has one) and then every time a
// worker writes it, until ctx ends (yielding ctx's error) or the caller
// stops ranging (states written in quick succession may be skipped: the
// last one is yielded). It reads only that key of the job state bucket
// (by direct get, woken by a subscription to the key) and keeps no state
// on the server. A job still waiting in the queue has no state yet: the
// first state comes when a worker picks it up.
func (r *reads) watchJob(ctx context.Context, id string) iter.Seq2[*reelq.JobState, error] {
	return func(yield func(*reelq.JobState, error) bool) {
		if !reelq.ValidID(id) {
			yield(nil, fmt.Errorf("reelq: watch job: %w: id %q", reelq.ErrInvalidJob, id))
			return
		}
		err := r.s.WatchLast(ctx, "KV_"+wire.BucketJobs, "$KV."+wire.BucketJobs+"."+id, func(m store.Msg) bool {
			if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" || len(m.Data) == 0 {
				return true
			}
			st, ok := decodeJobState(stored{Data: m.Data})
			return !ok || yield(st, nil)
		})
		switch {
		case err == nil:
		case ctx.Err() != nil:
			yield(nil, context.Cause(ctx))
		default:
			yield(nil, fmt.Errorf("reelq: watch job %s: %w", id, err))
		}
	}
}

// counterUpdate is a new value of one of the counters Stats reads: a
// batch's (Batch set) or a provider's (Provider set) field, such as
// "enqueued" or "done_succeeded".
type counterUpdate struct {
	Batch, Provider string
	Field           string
	Value           uint64
	Time            time.Time
}

// followCounters yields the batch and provider counts as they move
// (jobs published in COUNTERS, runs finished in the tallies the workers
// fold from RESULTS), from now on, until ctx ends (yielding ctx's error)
// or the caller stops ranging. A program that shows Stats reads them
// again when one moves, instead of polling. It keeps no state on the
// server.
func (r *reads) followCounters(ctx context.Context) iter.Seq2[counterUpdate, error] {
	return func(yield func(counterUpdate, error) bool) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		g, gctx := errgroup.WithContext(cctx)
		updates := make(chan counterUpdate)
		for _, src := range countSources {
			g.Go(func() error {
				for u, err := range store.Seq(gctx, r.s, src.stream, []string{src.prefix + ">"}, 0, "follow counters", func(m store.Msg) (*counterUpdate, bool) {
					u, ok := parseCounter(strings.TrimPrefix(m.Subject, src.prefix))
					if !ok {
						return nil, false
					}
					u.Value, u.Time = store.CounterValue(m.Data), m.Time
					return &u, true
				}) {
					if err != nil {
						return err
					}
					select {
					case updates <- *u:
					case <-gctx.Done():
						return context.Cause(gctx)
					}
				}
				return nil
			})
		}
		done := make(chan error, 1)
		go func() { done <- g.Wait() }()
		for {
			select {
			case u := <-updates:
				if !yield(u, nil) {
					cancel()
					<-done // the followers stopped
					return
				}
			case err := <-done:
				yield(counterUpdate{}, err)
				return
			}
		}
	}
}

// countSources are the streams (and subject prefixes) of the counts
// Stats reads: COUNTERS' counters.<scope>.<name>.<field> and the
// tallies' $KV.reelq_tallies.<scope>.<name>.<field>.
var countSources = []struct{ stream, prefix string }{
	{wire.StreamCounters, "counters."},
	{"KV_" + wire.BucketTallies, "$KV." + wire.BucketTallies + "."},
}

// parseCounter reads <scope>.<name>.<field> (scope batch or provider).
func parseCounter(rest string) (counterUpdate, bool) {
	scope, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return counterUpdate{}, false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return counterUpdate{}, false
	}
	name, field := rest[:i], rest[i+1:]
	switch scope {
	case "batch":
		return counterUpdate{Batch: name, Field: field}, true
	case "provider":
		return counterUpdate{Provider: name, Field: field}, true
	}
	return counterUpdate{}, false
}

// followSlots yields the name of a provider each time the slots held for
// it change (a job starts or ends at the provider, a worker renews or
// drops its lease), from now on, until ctx ends (yielding ctx's error) or
// the caller stops ranging. A program that shows Stats' running counts
// reads them again when told. It keeps no state on the server.
func (r *reads) followSlots(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		prefix := "$KV." + wire.BucketSlots + "."
		for p, err := range store.Seq(ctx, r.s, "KV_"+wire.BucketSlots, []string{prefix + ">"}, 0, "follow slots", func(m store.Msg) (*string, bool) {
			p := strings.TrimPrefix(m.Subject, prefix)
			return &p, true
		}) {
			if err != nil {
				yield("", err)
				return
			}
			if !yield(*p, nil) {
				return
			}
		}
	}
}
