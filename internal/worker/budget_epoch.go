package worker

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/wire"
)

// epochCheckInterval is how often a replica checks that the budgets
// bucket still holds its witness (see queue.EpochKey).
const epochCheckInterval = 10 * time.Second

// codeBudgetsLost is the pause of every provider after the budgets bucket
// lost its history: only an operator ends it.
const codeBudgetsLost = "budgets_lost"

// epochState is what a budgeter knows of the bucket's witness.
type epochState struct {
	mu     sync.Mutex
	id     string        // from the stream's metadata; "" checks nothing
	mark   string        // the witness's mark last seen
	keyTTL time.Duration // how long spend is kept
}

// ttl is how long spend is kept (0: no expiry).
func (e *epochState) ttl() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.keyTTL
}

// startEpoch reads the bucket's settings and checks its witness before
// the view is loaded: a replica starting on a bucket that lost its
// history must not trust the empty view.
func (b *budgeter) startEpoch(ctx context.Context) error {
	id, ttl, err := queue.BudgetsMeta(ctx, b.kv)
	if err != nil {
		return err
	}
	b.epoch.mu.Lock()
	b.epoch.id, b.epoch.keyTTL = id, ttl
	b.epoch.mu.Unlock()
	if err := b.checkEpoch(ctx); err != nil && !errors.Is(err, queue.ErrBudgetsLost) {
		return err
	}
	return nil
}

// checkEpoch reads the witness. When it is gone (the bucket was purged, or
// lost its messages), the limits and spend nobody can see any more are
// dropped from the view, every provider is paused until an operator has
// set the budgets again and resumes it, and the witness is written again
// with a new mark (so each replica notices, and a restart does not pause
// again: the pauses are kept in reelq_providers). It returns
// queue.ErrBudgetsLost in that case, and when it finds that another
// replica did so (then it only forgets).
func (b *budgeter) checkEpoch(ctx context.Context) error {
	b.epoch.mu.Lock()
	defer b.epoch.mu.Unlock()
	if b.epoch.id == "" {
		return nil
	}
	ep, err := queue.ReadEpoch(ctx, b.kv)
	switch {
	case errors.Is(err, queue.ErrBudgetsLost):
		b.log.Error("the budgets bucket lost its history: every provider is paused until an operator sets the budgets again and resumes it",
			"bucket", wire.BucketBudgets, "err", err)
		b.forget()
		if b.onLost != nil {
			b.onLost(ctx)
		}
		ep, rerr := queue.Rearm(ctx, b.kv, b.epoch.id)
		if rerr != nil {
			b.log.Error("writing the budgets witness again failed", "err", rerr)
			return err
		}
		b.epoch.mark = ep.Mark
		return err
	case err != nil:
		return err
	case ep.Mark != b.epoch.mark && b.epoch.mark != "":
		// Another replica found the loss and paused everything.
		b.forget()
		b.epoch.mark = ep.Mark
		return queue.ErrBudgetsLost
	}
	b.epoch.mark = ep.Mark
	return nil
}

// observeEpoch handles a change of the witness key seen by the watch.
func (b *budgeter) observeEpoch(e jetstream.KeyValueEntry) {
	var ep queue.Epoch
	if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &ep) != nil {
		return // deleted: the next check (or reservation) finds it gone
	}
	b.epoch.mu.Lock()
	defer b.epoch.mu.Unlock()
	if b.epoch.mark != "" && ep.Mark != b.epoch.mark {
		b.forget()
	}
	b.epoch.mark = ep.Mark
}

// forget drops the view of limits and spend.
func (b *budgeter) forget() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.limits)
	clear(b.spends)
	b.ver.Bump()
}

// budgetsLost pauses every provider (any replica may run any of them)
// until an operator resumes it.
func (w *Worker) budgetsLost(ctx context.Context) {
	for _, p := range reelq.Providers {
		w.pauseWith(ctx, p, codeBudgetsLost, "the reelq_budgets bucket lost its history (limits and spend): set the budgets again "+
			"('enqueue budget set'), then 'enqueue resume "+p+"'", 0)
	}
}
