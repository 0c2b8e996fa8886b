package inspect

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// Stats is a snapshot of the queue. Reading it costs a few requests per
// provider and one for the batch counters, however many job states are
// kept.
type Stats struct {
	At        time.Time       `json:"at"`
	Providers []ProviderStats `json:"providers"`
	Batches   []BatchStats    `json:"batches,omitempty"`
	// Folded says how far the done and spend counts have counted the
	// results.
	Folded Folded `json:"folded"`
}

// Folded is how far the done and spend counts (ProviderStats' Done and
// Spent, BatchStats' Succeeded, Failed, Cancelled and Spent) have counted
// the result events. A worker folds the results into them in the
// background, every second (REELQ_FOLD_INTERVAL): the counts lag the
// results by about that much.
type Folded struct {
	// Through is the RESULTS sequence the counts include every result up
	// to; Results the stream's last sequence when Stats was read (read
	// before the counts).
	Through uint64 `json:"through"`
	Results uint64 `json:"results"`
}

// Behind is how many RESULTS sequences (results, or results deleted) the
// counts had still to fold when Stats was read: 0 means they include every
// result stored before the read began.
func (f Folded) Behind() uint64 {
	if f.Through >= f.Results {
		return 0
	}
	return f.Results - f.Through
}

// The tallies bucket's stream and subject prefix: the done and spend
// counts (wire.TallyKey).
const (
	talliesStream = "KV_" + wire.BucketTallies
	tallyPrefix   = "$KV." + wire.BucketTallies + "."
)

// folded reads how far the tallies are folded; RESULTS' last sequence
// first, so a count read after it includes every result stored before.
func (c *Inspector) folded(ctx context.Context) (Folded, error) {
	var f Folded
	if _, err := c.js.Stream(ctx, talliesStream); err != nil {
		return f, notReady(fmt.Errorf("bucket %s (workers of this version create it): %w", wire.BucketTallies, err))
	}
	s, err := c.js.Stream(ctx, wire.StreamResults)
	if err != nil {
		return f, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return f, err
	}
	f.Results = info.State.LastSeq
	msgs, err := c.s.LastMsgs(ctx, talliesStream, []string{tallyPrefix + wire.TallyThroughKey})
	if err != nil {
		return f, err
	}
	if m, ok := msgs[tallyPrefix+wire.TallyThroughKey]; ok {
		var v struct {
			Through uint64 `json:"through"`
		}
		if err := json.Unmarshal(m.Data, &v); err != nil {
			return f, fmt.Errorf("tallies' checkpoint: %w", err)
		}
		f.Through = v.Through
	}
	return f, nil
}

// ProviderStats is one provider's queue.
type ProviderStats struct {
	Provider string `json:"provider"`
	// NoWorker is set when no worker has ever run this provider (its
	// consumers do not exist): its jobs wait in the queue.
	NoWorker bool `json:"no_worker,omitempty"`
	// Queued counts jobs not yet delivered to a worker, by priority.
	Queued map[reelq.Priority]uint64 `json:"queued"`
	// Waiting counts jobs delivered but not running: pulled ahead for
	// scheduling, or waiting for a retry.
	Waiting uint64 `json:"waiting"`
	// Running counts the slots in use cluster-wide (jobs in flight at the
	// provider), Cap the provider's cap (P_MAX_INFLIGHT).
	Running int `json:"running"`
	Cap     int `json:"cap,omitempty"`
	// Rate and Burst are the provider's rate limit (P_RATE requests per
	// second, P_BURST), as the workers last started with them.
	Rate  float64 `json:"rate,omitempty"`
	Burst int     `json:"burst,omitempty"`
	// Holders is the slots held per worker.
	Holders map[string]int `json:"holders,omitempty"`
	// Held counts jobs held for an operator (an ambiguous submission under
	// P_AMBIGUOUS=hold): they run again only after `enqueue resolve`.
	Held int `json:"held"`
	// Redelivered counts messages delivered more than once.
	Redelivered uint64 `json:"redelivered"`
	// Pulling counts the pull requests waiting on the provider's
	// consumers: a worker that runs the provider keeps one open whenever it
	// has room for more jobs. None while jobs are queued and none running
	// means no worker is taking them.
	Pulling int `json:"pulling"`
	// NextCall is when the rate limit allows the next call, when that is
	// in the future and the provider has work.
	NextCall *time.Time `json:"next_call,omitempty"`
	// Pause is the provider's pause, when paused.
	Pause *Pause `json:"pause,omitempty"`
	// Limiter is set while the provider's rate limiter cannot write its
	// shared state: no call to the provider goes out until it can.
	Limiter *LimiterAlarm `json:"limiter,omitempty"`
	// Done counts results by status since the counters began.
	Done map[string]uint64 `json:"done,omitempty"`
	// Spent is the estimated cost of the provider's finished runs by
	// unit since the counters began (a run paid twice counts twice).
	Spent map[string]float64 `json:"spent,omitempty"`
}

// LimiterAlarm says a provider's rate limiter has found its shared state
// unwritable for longer than its bound (10 s), as a worker reported it.
type LimiterAlarm struct {
	// Bucket is the KV bucket of the shared state (reelq_ratelimit).
	Bucket string `json:"bucket"`
	// Error is the server's error as the worker saw it.
	Error string    `json:"error"`
	Since time.Time `json:"since"`
	// By is the worker that raised the alarm.
	By string `json:"by"`
}

// Pause describes a paused provider.
type Pause struct {
	// Code is credits_exhausted, auth, manual, ambiguous_submits,
	// unknown_submission or budget.
	Code   string     `json:"code"`
	Reason string     `json:"reason"`
	Since  *time.Time `json:"since,omitempty"`
	By     string     `json:"by,omitempty"`
	// NextProbeAt is when a worker next checks whether the cause is gone
	// (automatic pauses only); nil means an operator must resume.
	NextProbeAt *time.Time `json:"next_probe_at,omitempty"`
}

// BatchStats is one batch's progress, from counters kept as jobs move.
type BatchStats struct {
	Batch     string `json:"batch"`
	Enqueued  uint64 `json:"enqueued"`
	Succeeded uint64 `json:"succeeded"`
	Failed    uint64 `json:"failed"`
	Cancelled uint64 `json:"cancelled"`
	// Held counts the batch's jobs held for an operator.
	Held int `json:"held,omitempty"`
	// Spent is the estimated cost of the batch's finished runs by unit
	// ("usd", "credits"), budget or not; a run paid twice counts twice.
	Spent   map[string]float64 `json:"spent,omitempty"`
	Updated time.Time          `json:"updated"`
}

// Done is the batch's finished jobs (runs).
func (b BatchStats) Done() uint64 { return b.Succeeded + b.Failed + b.Cancelled }

// StatsOptions select what Stats reads.
type StatsOptions struct {
	// Batch, if set, reports only that batch.
	Batch string
	// Recent is how many batches to report, most recently active first;
	// zero means 20, negative none.
	Recent int
}

// Stats reads the queue's state: per provider its queue per priority,
// jobs in flight against the cap, pause, next call; per batch its
// progress.
func (c *Inspector) Stats(ctx context.Context, o StatsOptions) (*Stats, error) {
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	out := &Stats{At: time.Now().UTC()}
	ps, err := c.providerStore(cctx)
	if err != nil {
		return nil, err
	}
	slotsKV, err := c.js.KeyValue(cctx, "reelq_slots")
	if err != nil {
		return nil, notReady(err)
	}
	// The rate limits' bucket only tells the next call: stats go on
	// without it (a bucket lost is what the limiter alarm reports).
	rlKV, err := c.js.KeyValue(cctx, wire.BucketRateLimit)
	if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, notReady(err)
	}
	if out.Folded, err = c.folded(cctx); err != nil {
		return nil, err
	}
	counters, err := c.s.LastMsgs(cctx, wire.StreamCounters, []string{"counters.held.>"})
	if err != nil {
		return nil, err
	}
	tallies, err := c.s.LastMsgs(cctx, talliesStream, []string{tallyPrefix + "provider.>"})
	if err != nil {
		return nil, err
	}
	held, err := c.heldJobs(cctx, counters)
	if err != nil {
		return nil, err
	}
	for _, p := range reelq.Providers {
		s := ProviderStats{Provider: p, Queued: map[reelq.Priority]uint64{}, Done: map[string]uint64{}}
		var ackPending uint64
		found := 0
		for _, prio := range reelq.Priorities {
			cons, err := c.js.Consumer(cctx, wire.StreamJobs, wire.ConsumerName(p, prio))
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			found++
			info := cons.CachedInfo()
			s.Queued[prio] = info.NumPending
			ackPending += uint64(info.NumAckPending)
			s.Redelivered += uint64(info.NumRedelivered)
			s.Pulling += info.NumWaiting
			if n, err := strconv.Atoi(info.Config.Metadata["reelq_max_inflight"]); err == nil && n > 0 {
				s.Cap = n
			}
			if r, err := strconv.ParseFloat(info.Config.Metadata["reelq_rate"], 64); err == nil && r > 0 {
				s.Rate = r
				s.Burst, _ = strconv.Atoi(info.Config.Metadata["reelq_burst"])
			}
		}
		if found == 0 {
			s.NoWorker = true
			if err := c.countQueued(cctx, p, s.Queued); err != nil {
				return nil, err
			}
		}
		if e, err := slotsKV.Get(cctx, p); err == nil {
			var v struct {
				Holders map[string]struct {
					N     int       `json:"n"`
					Want  int       `json:"want"`
					Until time.Time `json:"until"`
				} `json:"holders"`
			}
			if json.Unmarshal(e.Value(), &v) == nil {
				for w, h := range v.Holders {
					// A worker keeps a slot a moment after its job ends,
					// for the next one: only the slots its demand (running
					// and waiting jobs) uses are jobs in flight.
					if n := min(h.N, h.Want); n > 0 && h.Until.After(out.At) {
						if s.Holders == nil {
							s.Holders = map[string]int{}
						}
						s.Holders[workerOf(w)] += n // a worker's incarnations together
						s.Running += n
					}
				}
			}
		}
		if ackPending > uint64(s.Running) {
			s.Waiting = ackPending - uint64(s.Running)
		}
		if st, _, err := ps.Get(cctx, p); err == nil {
			if st.Paused {
				s.Pause = &Pause{Code: st.Code, Reason: st.Reason, Since: st.Since, By: st.By, NextProbeAt: st.NextProbeAt}
			}
			if a := st.Limiter; a != nil {
				s.Limiter = &LimiterAlarm{Bucket: a.Bucket, Error: a.Error, Since: a.Since, By: a.By}
			}
		}
		busy := s.Running > 0 || s.Waiting > 0 || s.Queued[reelq.High]+s.Queued[reelq.Normal]+s.Queued[reelq.Low] > 0
		if busy && !s.NoWorker && s.Pause == nil && rlKV != nil {
			lim := ratelimit.New(ratelimit.NewKVStore(rlKV), p, ratelimit.Config{Rate: 1})
			if t, err := lim.BlockedUntil(cctx); err == nil && t.After(out.At) {
				s.NextCall = &t
			}
		}
		for _, st := range held {
			if st.Provider == p {
				s.Held++
			}
		}
		prefix := tallyPrefix + wire.TallyKey("provider", p, "done_")
		spent := tallyPrefix + wire.TallyKey("provider", p, wire.SpendCounterField(""))
		for subj, m := range tallies {
			if f, ok := strings.CutPrefix(subj, prefix); ok {
				s.Done[f] = store.CounterValue(m.Data)
			}
			if unit, ok := strings.CutPrefix(subj, spent); ok {
				if s.Spent == nil {
					s.Spent = map[string]float64{}
				}
				s.Spent[unit] = float64(store.CounterValue(m.Data)) / 1e6
			}
		}
		out.Providers = append(out.Providers, s)
	}
	if o.Recent >= 0 {
		b, err := c.batchStats(cctx, o)
		if err != nil {
			return nil, err
		}
		for i := range b {
			for _, st := range held {
				if st.Batch == b[i].Batch {
					b[i].Held++
				}
			}
		}
		out.Batches = b
	}
	return out, nil
}

// workerOf is the worker id of a slot holder, "<worker id>/<incarnation>"
// (see package slots).
func workerOf(holder string) string {
	if i := strings.LastIndexByte(holder, '/'); i >= 0 {
		return holder[:i]
	}
	return holder
}

// heldJobs reads the state of every job marked held in counters (held
// jobs are few: each waits for an operator) and returns those still held.
func (c *Inspector) heldJobs(ctx context.Context, counters map[string]store.Msg) ([]*reelq.JobState, error) {
	var ids []string
	for subj := range counters {
		rest, ok := strings.CutPrefix(subj, "counters.held.")
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, '.'); i >= 0 {
			ids = append(ids, rest[i+1:])
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	states, err := c.states(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []*reelq.JobState
	for _, st := range states {
		if st.Phase == reelq.PhaseHeld {
			out = append(out, st)
		}
	}
	return out, nil
}

// countQueued counts provider's messages in JOBS by priority (for a
// provider no worker has run: it has no consumers to ask).
func (c *Inspector) countQueued(ctx context.Context, provider string, into map[reelq.Priority]uint64) error {
	s, err := c.js.Stream(ctx, wire.StreamJobs)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("jobs."+provider+".>"))
	if err != nil {
		return err
	}
	for subj, n := range info.State.Subjects {
		ps, ok := wire.ParseJobSubject(subj)
		if !ok {
			continue
		}
		into[reelq.Priority(ps.Priority).Or()] += n
	}
	return nil
}

// batchStats reads the batch counters (enqueued in COUNTERS, done and
// spend in the tallies): one batch's, or those of the most recently
// updated batches (StatsOptions.Recent, default 20), found from the tails
// of both streams (each keeps one message per count, so its last messages
// are the counts updated last): the cost does not grow with the number of
// batches kept.
func (c *Inspector) batchStats(ctx context.Context, o StatsOptions) ([]BatchStats, error) {
	n := o.Recent
	if n == 0 {
		n = 20
	}
	names := []string{o.Batch}
	if o.Batch == "" {
		var err error
		if names, err = c.recentBatches(ctx, n); err != nil {
			return nil, err
		}
		if len(names) == 0 {
			return nil, nil
		}
	}
	by := map[string]*BatchStats{}
	for _, src := range batchSources {
		filters := make([]string, len(names))
		for i, b := range names {
			filters[i] = src.prefix + b + "." + src.fields
		}
		msgs, err := c.s.LastMsgs(ctx, src.stream, filters)
		if err != nil {
			return nil, err
		}
		for subj, m := range msgs {
			name, field, ok := strings.Cut(strings.TrimPrefix(subj, src.prefix), ".")
			if !ok {
				continue
			}
			b := by[name]
			if b == nil {
				b = &BatchStats{Batch: name}
				by[name] = b
			}
			if m.Time.After(b.Updated) {
				b.Updated = m.Time
			}
			b.set(field, store.CounterValue(m.Data))
		}
	}
	out := make([]BatchStats, 0, len(by))
	for _, b := range by {
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b BatchStats) int { return b.Updated.Compare(a.Updated) })
	if o.Batch == "" && len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// set records the value v of the batch's count field.
func (b *BatchStats) set(field string, v uint64) {
	switch field {
	case "enqueued":
		b.Enqueued = v
	case "done_" + reelq.StatusSucceeded:
		b.Succeeded = v
	case "done_" + reelq.StatusFailed:
		b.Failed = v
	case "done_" + reelq.StatusCancelled:
		b.Cancelled = v
	default:
		if unit, ok := strings.CutPrefix(field, "spent_micro_"); ok {
			if b.Spent == nil {
				b.Spent = map[string]float64{}
			}
			b.Spent[unit] = float64(v) / 1e6
		}
	}
}

// batchSources are where the batch counts are: the enqueued counters in
// COUNTERS (counters.batch.<batch>.enqueued; the done and spend counters
// a reelq before the tallies kept there are not read), the done and spend
// tallies in the tallies bucket (batch.<batch>.<field>).
var batchSources = []struct{ stream, prefix, fields string }{
	{wire.StreamCounters, "counters.batch.", "enqueued"},
	{talliesStream, tallyPrefix + "batch.", ">"},
}

// recentBatches returns up to n batch names whose counts changed last,
// reading each source's stream backwards in growing windows.
func (c *Inspector) recentBatches(ctx context.Context, n int) ([]string, error) {
	latest := map[string]time.Time{} // batch -> when its counts last moved
	for _, src := range batchSources {
		if err := c.recentIn(ctx, src.stream, src.prefix, src.fields, n, latest); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(latest))
	for b := range latest {
		names = append(names, b)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(latest[b].Compare(latest[a]), cmp.Compare(a, b)) })
	if len(names) > n {
		names = names[:n]
	}
	return names, nil
}

// recentIn adds to latest up to n batches whose counts in stream (on
// prefix<batch>.fields) moved last, with when they did.
func (c *Inspector) recentIn(ctx context.Context, stream, prefix, fields string, n int, latest map[string]time.Time) error {
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if last == 0 {
		return nil
	}
	found := map[string]bool{}
	for window := uint64(8 * n); ; window *= 4 {
		start := first
		if last >= window && last-window+1 > first {
			start = last - window + 1
		}
		err := c.s.DirectBatch(ctx, stream, map[string]any{"seq": start, "next_by_subj": prefix + "*." + fields, "batch": int(last - start + 1)}, func(m store.Msg) bool {
			rest := strings.TrimPrefix(m.Subject, prefix)
			if i := strings.LastIndexByte(rest, '.'); i > 0 {
				b := rest[:i]
				found[b] = true
				if m.Time.After(latest[b]) {
					latest[b] = m.Time
				}
			}
			return m.Seq < last
		})
		if err != nil {
			return err
		}
		if len(found) >= n || start <= first {
			return nil
		}
	}
}
