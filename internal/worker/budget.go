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
	"github.com/reelq/reelq/internal/changes"
	"github.com/reelq/reelq/internal/kvwatch"
	"github.com/reelq/reelq/internal/metrics"
	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/wire"
)

// ProviderBudget is a provider's spending limit per period, from the
// worker's configuration (P_BUDGET, P_BUDGET_PERIOD). A limit an operator
// sets in the reelq_budgets bucket overrides it.
type ProviderBudget struct {
	Limit  reelq.Cost
	Period time.Duration
}

// budgeter enforces spending limits cluster-wide. Before every paid
// submission the job's estimate is reserved with one compare-and-set per
// limit that applies (the batch's, the provider's for the current
// period) on the scope's spend key in reelq_budgets; when the outcome is
// known the reservation is settled (spent, or released if nothing
// started). Replicas racing at the edge of a budget therefore cannot
// overspend by even one job. A local view of the bucket, kept by a watch,
// lets jobs that cannot fit wait without any request.
type budgeter struct {
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	log      *slog.Logger
	m        *metrics.Metrics
	now      func() time.Time
	provider map[string]ProviderBudget // from configuration

	mu     sync.RWMutex
	limits map[string]reelq.BudgetLimit // by limit key
	spends map[string]spendEntry        // by spend key
	ver    changes.Version              // of limits and spends, bumped under mu
	// usage is each batch budget's usage band and bands how many are in
	// each: the metrics count batches by band, never label one (batch
	// names are unbounded).
	usage map[string]string
	bands map[string]int

	epoch  epochState                // the bucket's witness of its history (budget_epoch.go)
	onLost func(ctx context.Context) // called when the history is found lost
}

type spendEntry struct {
	s   reelq.Spend
	rev uint64
}

// budgetScope is a limit that applies to one submission.
type budgetScope struct {
	limit reelq.BudgetLimit
	key   string // spend key
}

func newBudgeter(js jetstream.JetStream, kv jetstream.KeyValue, log *slog.Logger, m *metrics.Metrics, provider map[string]ProviderBudget) *budgeter {
	b := &budgeter{js: js, kv: kv, log: log, m: m, now: time.Now, provider: provider,
		limits: map[string]reelq.BudgetLimit{}, spends: map[string]spendEntry{}, usage: map[string]string{}, bands: map[string]int{}}
	for name := range provider {
		b.export(reelq.ScopeProvider, name)
	}
	m.SetBatchBudgets(b.bands) // every band at 0 until a batch budget is seen
	return b
}

// export sets the budget gauges of a scope from the view: the limit in
// force (the bucket's, else the configuration's) and what was spent
// against it (in the current period for a provider); a batch's only
// moves the count of batch budgets in its usage band. b.mu is held, or b
// is not shared yet.
func (b *budgeter) export(scope, name string) {
	l, ok := b.limits[wire.BudgetLimitKey(scope, name)]
	if scope == reelq.ScopeBatch {
		b.exportBatch(name, l, ok)
		return
	}
	if !ok && scope == reelq.ScopeProvider {
		if pb, has := b.provider[name]; has && pb.Limit.Amount > 0 {
			l, ok = reelq.BudgetLimit{Scope: scope, Name: name, Amount: pb.Limit.Amount, Unit: pb.Limit.Unit, Period: pb.Period}, true
		}
	}
	if !ok {
		return
	}
	var start int64
	if scope == reelq.ScopeProvider {
		if l.Period <= 0 {
			l.Period = 24 * time.Hour
		}
		start = wire.PeriodStart(b.now(), l.Period)
	}
	sp := b.spends[wire.BudgetSpendKey(scope, name, start)].s
	b.m.SetBudget(scope, name, l.Unit, l.Amount, sp.Spent[l.Unit])
}

// exportBatch moves batch name's budget to its usage band (out of every
// band when it has no limit any more) in reelq_batch_budgets.
func (b *budgeter) exportBatch(name string, l reelq.BudgetLimit, ok bool) {
	if old, had := b.usage[name]; had {
		b.bands[old]--
		delete(b.usage, name)
	}
	if ok && l.Amount > 0 {
		sp := b.spends[wire.BudgetSpendKey(reelq.ScopeBatch, name, 0)].s
		u := metrics.BudgetUsage(sp.Spent[l.Unit] / l.Amount)
		b.usage[name] = u
		b.bands[u]++
	}
	b.m.SetBatchBudgets(b.bands)
}

// watch keeps the view current until ctx ends (see Worker.startWatcher).
func (b *budgeter) watch(ctx context.Context) (<-chan struct{}, error) {
	if err := b.startEpoch(ctx); err != nil {
		return nil, fmt.Errorf("watch budgets: %w", err)
	}
	watching, err := kvwatch.Follow(ctx, b.kv, "budgets", func(e jetstream.KeyValueEntry, _ bool) { b.observe(e) })
	if err != nil {
		return nil, err
	}
	// The witness check runs beside the watch and stops with it.
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		check := time.NewTicker(epochCheckInterval)
		defer check.Stop()
		for {
			select {
			case <-watching:
				return
			case <-check.C:
				_ = b.checkEpoch(ctx)
			}
		}
	}()
	return stopped, nil
}

func (b *budgeter) observe(e jetstream.KeyValueEntry) {
	if e.Key() == queue.EpochKey {
		b.observeEpoch(e)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	key := e.Key()
	del := e.Operation() != jetstream.KeyValuePut
	switch {
	case strings.HasPrefix(key, "limit."):
		var l reelq.BudgetLimit
		if del || json.Unmarshal(e.Value(), &l) != nil {
			delete(b.limits, key)
		} else {
			b.limits[key] = l
		}
	case strings.HasPrefix(key, "spend."):
		var s reelq.Spend
		if del || json.Unmarshal(e.Value(), &s) != nil {
			delete(b.spends, key)
		} else if old, ok := b.spends[key]; !ok || old.rev < e.Revision() {
			b.spends[key] = spendEntry{s: s, rev: e.Revision()}
		}
	}
	// Keys are limit.<scope>.<name> and spend.<scope>.<name>[.<period>];
	// names (batch ids, providers) have no dots.
	if parts := strings.Split(key, "."); len(parts) >= 3 {
		b.export(parts[1], parts[2])
	}
	b.ver.Bump()
}

// changed is closed once any limit or spend changed after the view seen
// (a version scopes returned): at once if one has already.
func (b *budgeter) changed(seen uint64) <-chan struct{} { return b.ver.Changed(seen) }

// scopes returns the limits that bind a submission of est for provider and
// batch now, and the version of the view it read them from: a job that
// waits for a budget because of them waits on changed(seen).
func (b *budgeter) scopes(provider, batch string, est *reelq.Cost) ([]budgetScope, uint64) {
	now := b.now()
	b.mu.RLock()
	defer b.mu.RUnlock()
	seen := b.ver.Load()
	if est == nil || est.Amount <= 0 {
		return nil, seen
	}
	var out []budgetScope
	if batch != "" {
		if l, ok := b.limits[wire.BudgetLimitKey(reelq.ScopeBatch, batch)]; ok && l.Unit == est.Unit {
			out = append(out, budgetScope{limit: l, key: wire.BudgetSpendKey(reelq.ScopeBatch, batch, 0)})
		}
	}
	l, ok := b.limits[wire.BudgetLimitKey(reelq.ScopeProvider, provider)]
	if !ok {
		if pb, has := b.provider[provider]; has && pb.Limit.Amount > 0 {
			l, ok = reelq.BudgetLimit{Scope: reelq.ScopeProvider, Name: provider, Amount: pb.Limit.Amount, Unit: pb.Limit.Unit, Period: pb.Period}, true
		}
	}
	if ok && l.Unit == est.Unit {
		if l.Period <= 0 {
			l.Period = 24 * time.Hour
		}
		out = append(out, budgetScope{limit: l, key: wire.BudgetSpendKey(reelq.ScopeProvider, provider, wire.PeriodStart(now, l.Period))})
	}
	return out, seen
}

// fits reports, from the local view, whether est fits in every scope, and
// the first scope it does not fit.
func (b *budgeter) fits(scopes []budgetScope, est *reelq.Cost) (bool, *budgetScope) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for i := range scopes {
		sc := &scopes[i]
		if over(b.spends[sc.key].s, est, sc.limit) {
			return false, sc
		}
	}
	return true, nil
}

// reservation is one delivery's reservation: its token (the submit token
// its state write records), its hold (job and state revision; reserve
// fills in the rest), and how to tell that another hold of the same job
// is dead (nil: none is).
type reservation struct {
	token string
	hold  reelq.Hold
	dead  func(token string, h reelq.Hold) bool
}

// errOverBudget is returned by reserve when est does not fit.
var errOverBudget = errors.New("over budget")

// reserve takes est from every scope with compare-and-set, or none of
// them, as the hold of token: it returns the scope that has no room
// (wrapped errOverBudget). Holds of the same job that r.dead reports can
// never be named by a job state (their delivery died before its state
// write) are released in the same write.
func (b *budgeter) reserve(ctx context.Context, scopes []budgetScope, est *reelq.Cost, r reservation) (*budgetScope, error) {
	token, hold := r.token, r.hold
	hold.Unit, hold.Amount, hold.At = est.Unit, est.Amount, b.now().UTC()
	gone := map[string]bool{} // tokens r.dead says are dead (asked once each)
	for i := range scopes {
		sc := &scopes[i]
		err := b.update(ctx, sc.key, func(s *reelq.Spend) error {
			for tok, h := range s.Holds {
				if h.Job != hold.Job || tok == token {
					continue
				}
				if _, asked := gone[tok]; !asked {
					gone[tok] = r.dead != nil && r.dead(tok, h)
				}
				if gone[tok] {
					add(&s.Reserved, h.Unit, -h.Amount)
					delete(s.Holds, tok)
					b.log.Warn("released a budget reservation whose delivery died before recording it", "key", sc.key, "job_id", h.Job, "amount", h.Amount, "unit", h.Unit)
				}
			}
			if over(*s, est, sc.limit) {
				return errOverBudget
			}
			add(&s.Reserved, est.Unit, est.Amount)
			if s.Holds == nil {
				s.Holds = map[string]reelq.Hold{}
			}
			s.Holds[token] = hold
			return nil
		})
		if err != nil {
			for k := range i {
				b.settle(ctx, scopes[k:k+1], est, false, token)
			}
			if errors.Is(err, errOverBudget) {
				return sc, err
			}
			return nil, err
		}
	}
	return nil, nil
}

// settle ends the reservation of token: it is released, and when paid
// est counts as spent (one more submission). A hold already released
// (by the delivery that found its state, or twice) releases nothing; a
// reservation taken before holds were recorded is released by amount.
func (b *budgeter) settle(ctx context.Context, scopes []budgetScope, est *reelq.Cost, paid bool, token string) {
	for _, sc := range scopes {
		err := b.update(context.WithoutCancel(ctx), sc.key, func(s *reelq.Spend) error {
			if h, ok := s.Holds[token]; ok {
				add(&s.Reserved, h.Unit, -h.Amount)
				delete(s.Holds, token)
			} else if untracked(s, est.Unit) >= money.FromFloat(est.Amount) {
				add(&s.Reserved, est.Unit, -est.Amount)
			}
			if paid {
				add(&s.Spent, est.Unit, est.Amount)
				s.Submissions++
			}
			return nil
		})
		if err != nil {
			b.log.Warn("settling a budget reservation failed; the budget stays reduced by it", "key", sc.key, "err", err)
		}
	}
}

// update applies fn to the spend at key with compare-and-set, starting
// from the watched value (a stale one costs a retry, not a mistake).
func (b *budgeter) update(ctx context.Context, key string, fn func(*reelq.Spend) error) error {
	for attempt := 0; attempt < 100; attempt++ {
		var cur reelq.Spend
		var rev uint64
		if attempt == 0 {
			b.mu.RLock()
			e, ok := b.spends[key]
			b.mu.RUnlock()
			if ok {
				cur, rev = cloneSpend(e.s), e.rev
			}
		} else {
			e, err := b.kv.Get(ctx, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				if err := b.checkEpoch(ctx); err != nil {
					return err // the history is gone: never start again from zero
				}
			case err != nil:
				return err
			default:
				if err := json.Unmarshal(e.Value(), &cur); err != nil {
					return err
				}
				rev = e.Revision()
			}
		}
		next := cloneSpend(cur)
		if err := fn(&next); err != nil {
			return err
		}
		next.UpdatedAt = b.now().UTC()
		data, _ := json.Marshal(next)
		nrev, err := b.write(ctx, key, data, rev)
		if err == nil {
			b.mu.Lock()
			// No Bump: the watch delivers this revision too, and bumps
			// then (a parked job re-checks once per change, not twice).
			if old, ok := b.spends[key]; !ok || old.rev < nrev {
				b.spends[key] = spendEntry{s: next, rev: nrev}
			}
			b.mu.Unlock()
			return nil
		}
		if !errors.Is(err, errSpendConflict) {
			return err
		}
	}
	return fmt.Errorf("budget %s: too many concurrent writers", key)
}

// untracked is the reservation of unit that no hold accounts for (taken
// before holds were recorded).
func untracked(s *reelq.Spend, unit string) money.Micros {
	r := money.FromFloat(s.Reserved[unit])
	for _, h := range s.Holds {
		if h.Unit == unit {
			r -= money.FromFloat(h.Amount)
		}
	}
	return r
}

// errSpendConflict: another writer changed the key since rev.
var errSpendConflict = errors.New("spend changed meanwhile")

// write stores a spend with compare-and-set on rev (0: the key must have
// no value) and the bucket's TTL for spend, which kv.Update cannot set.
func (b *budgeter) write(ctx context.Context, key string, data []byte, rev uint64) (uint64, error) {
	ack, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: "$KV." + wire.BucketBudgets + "." + key, Data: data},
		jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(b.epoch.ttl()))
	if queue.IsWrongLastSequence(err) {
		return 0, errSpendConflict
	}
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// over reports whether est does not fit in limit beside what s has spent
// and reserved, summed in micros.
func over(s reelq.Spend, est *reelq.Cost, limit reelq.BudgetLimit) bool {
	u := est.Unit
	return money.FromFloat(s.Spent[u])+money.FromFloat(s.Reserved[u])+money.FromFloat(est.Amount) > money.FromFloat(limit.Amount)
}

func cloneSpend(s reelq.Spend) reelq.Spend {
	c := s
	if s.Holds != nil {
		c.Holds = make(map[string]reelq.Hold, len(s.Holds))
		for k, v := range s.Holds {
			c.Holds[k] = v
		}
	}
	c.Spent, c.Reserved = map[string]float64{}, map[string]float64{}
	for k, v := range s.Spent {
		c.Spent[k] = v
	}
	for k, v := range s.Reserved {
		c.Reserved[k] = v
	}
	return c
}

func add(m *map[string]float64, unit string, v float64) {
	if *m == nil {
		*m = map[string]float64{}
	}
	(*m)[unit] = money.Add((*m)[unit], v)
}

// reserveFor reserves j's estimate against every limit that applies
// before its paid call. When a limit has no room the job is parked
// (returned as the outcome) without using an attempt.
// reserveFor reserves j's estimate as the hold of token, the submit
// token the state write that follows records; rev is the revision of the
// job's state that write compares against (0: it creates the state). It
// returns nil when no limit applies.
func (e *engine) reserveFor(ctx context.Context, j *job, token string, rev uint64) (*budgetHold, *outcome) {
	sc, seen := e.w.budgets.scopes(e.name, j.env.Batch, j.est)
	if len(sc) == 0 {
		return nil, nil
	}
	over, err := e.w.budgets.reserve(ctx, sc, j.est, reservation{token: token, hold: reelq.Hold{Job: j.id, Rev: rev},
		dead: func(tok string, h reelq.Hold) bool { return e.deadHold(ctx, tok, h) }})
	switch {
	case errors.Is(err, errOverBudget):
		e.overBudget(j, over)
		out := outcome{kind: outPark, seen: seen}
		return nil, &out
	case err != nil:
		out := e.stateUnavailable(j, fmt.Errorf("budget reservation: %w", err))
		return nil, &out
	}
	if f := e.w.afterReserve.Load(); f != nil {
		(*f)(j.id)
	}
	return &budgetHold{scopes: sc, token: token}, nil
}

// budgetHold is a job's budget reservation for its paid call in progress:
// the limits it holds against and its token (the submit token). A pointer
// in the job, nil for most jobs in flight (none applies, or the call
// ended).
type budgetHold struct {
	scopes []budgetScope
	token  string
}

// overBudget reports j, which does not fit over: the budget pause (see
// budgetPaused), and for a provider what the gate must find room for to
// end it (budgetRoom).
func (e *engine) overBudget(j *job, over *budgetScope) {
	if over != nil && over.limit.Scope == reelq.ScopeProvider {
		e.needMu.Lock()
		e.need = *j.est
		e.needMu.Unlock()
	}
	e.w.budgetPaused(e.name, j, over)
}

// settleBudget ends j's reservation h (nil: none).
func (e *engine) settleBudget(ctx context.Context, j *job, h *budgetHold, paid bool) {
	if h != nil {
		e.w.budgets.settle(ctx, h.scopes, j.est, paid, h.token)
	}
}

// deadHold reports whether the hold of token can never be named by a job
// state, and so never lead to a paid call: the job's state was written
// after the hold's delivery read it (its compare-and-set write must fail)
// and does not carry its token. A state that cannot be read keeps it.
func (e *engine) deadHold(ctx context.Context, token string, h reelq.Hold) bool {
	st, rev, err := e.w.states.Get(ctx, h.Job)
	return err == nil && rev > h.Rev && st.SubmitToken != token
}

// settleStaleReservation settles a reservation a crashed delivery left in
// the job state: the paid call may have happened, so it counts as spent.
func (e *engine) settleStaleReservation(ctx context.Context, j *job) {
	st := j.st
	if st == nil || st.Reserved == nil {
		return
	}
	est := st.Reserved
	if sc, _ := e.w.budgets.scopes(e.name, st.Batch, est); len(sc) > 0 {
		e.w.budgets.settle(ctx, sc, est, true, st.SubmitToken)
	}
	next := *st
	next.Reserved = nil
	if rev, err := e.w.states.Update(ctx, st, &next, j.rev); err == nil {
		j.st, j.rev = &next, rev
	}
}

// budgetPaused reports a job that does not fit its budget: for a batch,
// the batch's jobs wait (an event says so); for a provider, the provider
// is paused with code budget for every replica until the period rolls over
// or the limit is raised.
func (w *Worker) budgetPaused(provider string, j *job, over *budgetScope) {
	if over == nil {
		return
	}
	l := over.limit
	lim := &reelq.Cost{Amount: l.Amount, Unit: l.Unit}
	switch l.Scope {
	case reelq.ScopeBatch:
		w.mu.Lock()
		first := !w.overBatch[l.Name]
		w.overBatch[l.Name] = true
		w.mu.Unlock()
		if first {
			w.log.Warn("batch reached its budget; its jobs wait until it is raised", "batch", l.Name, "limit", reelq.FormatCost(*lim))
			w.event(reelq.Event{Kind: reelq.EventBudgetPaused, Provider: provider, Batch: l.Name, Code: "budget", Cost: lim,
				Reason: "batch " + l.Name + " reached its budget of " + reelq.FormatCost(*lim) + "; raise it with 'enqueue budget set --batch " + l.Name + "'"})
		}
	case reelq.ScopeProvider:
		next := time.Unix(wire.PeriodStart(time.Now(), l.Period), 0).Add(l.Period)
		w.pauseWith(context.Background(), provider, "budget", "the provider reached its budget of "+reelq.FormatCost(*lim)+" per "+l.Period.String()+
			"; it resumes at "+next.UTC().Format(time.RFC3339)+" or when 'enqueue budget set --provider "+provider+"' raises it", time.Until(next))
		w.event(reelq.Event{Kind: reelq.EventBudgetPaused, Provider: provider, Code: "budget", Cost: lim, Until: &next})
	}
}
