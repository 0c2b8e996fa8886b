package worker

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/ratelimit"
)

// Outages returns a channel for Config.LimiterOutages and the function
// each provider's limiter reports on (its ratelimit.Config.OnOutage). The
// function never blocks: a report that finds the channel full is dropped.
func Outages() (<-chan ratelimit.Outage, func(ratelimit.Outage)) {
	ch := make(chan ratelimit.Outage, 64)
	return ch, func(o ratelimit.Outage) {
		select {
		case ch <- o:
		default:
		}
	}
}

// watchLimiters raises and clears each provider's limiter alarm as its
// limiter reports (Config.LimiterOutages), until ctx ends.
func (w *Worker) watchLimiters(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-w.cfg.LimiterOutages:
			w.limiterOutage(ctx, o)
		}
	}
}

// limiterOutage makes a limiter's outage (or its end) an alarm everywhere
// an operator looks: the log (the limiter's own), a metric, an event, and
// the provider's record, which stats and the dashboard show (readiness
// asks the limiters directly, see Healthy).
func (w *Worker) limiterOutage(ctx context.Context, o ratelimit.Outage) {
	if _, ok := w.rts[o.Key]; !ok {
		return
	}
	w.m.SetLimiterDown(o.Key, o.Err != nil)
	ev := reelq.Event{Provider: o.Key, Kind: reelq.EventLimiterRecovered,
		Reason: fmt.Sprintf("the rate limiter writes its shared state (bucket %s) again, after %s", queue.BucketRateLimit, time.Since(o.Since).Round(time.Second))}
	var alarm *providerstate.LimiterAlarm
	if o.Err != nil {
		msg := w.redact(o.Err.Error())
		alarm = &providerstate.LimiterAlarm{Bucket: queue.BucketRateLimit, Error: msg, Since: o.Since.UTC(), By: w.cfg.WorkerID}
		ev.Kind = reelq.EventLimiterUnavailable
		ev.Reason = fmt.Sprintf("the rate limiter cannot write its shared state (bucket %s) since %s; no call to %s goes out until it can: %s",
			queue.BucketRateLimit, o.Since.UTC().Format(time.RFC3339), o.Key, msg)
	}
	w.event(ev)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := w.pstate.SetLimiterAlarm(cctx, o.Key, alarm); err != nil {
		w.log.Warn("recording the rate limiter's alarm failed", "provider", o.Key, "err", err)
	}
}

// limiterHealth reports the first provider (by name) whose limiter's
// shared state is unavailable, for readiness.
func (w *Worker) limiterHealth() error {
	names := make([]string, 0, len(w.rts))
	for name := range w.rts {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		l, ok := w.rts[name].Limiter.(interface {
			Outage() (ratelimit.Outage, bool)
		})
		if !ok {
			continue
		}
		if o, out := l.Outage(); out {
			return fmt.Errorf("rate limiter %s: shared state (bucket %s) unavailable since %s: %w",
				name, queue.BucketRateLimit, o.Since.UTC().Format(time.RFC3339), o.Err)
		}
	}
	return nil
}
