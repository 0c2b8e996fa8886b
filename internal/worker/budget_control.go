package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/wire"
)

// applyBudget carries out an operator's request to set provider's limit
// (control.budget.<provider>, see Client.SetBudget): only workers write
// provider limits, so no other identity can touch the bucket that holds
// them and the spend. at is when the request was stored: a request older
// than the limit in place (two replicas carrying out two requests) is
// dropped.
func (w *Worker) applyBudget(ctx context.Context, provider string, data []byte, at time.Time) error {
	var l reelq.BudgetLimit
	err := json.Unmarshal(data, &l)
	switch {
	case err != nil:
	case l.Scope != reelq.ScopeProvider || l.Name != provider || !reelq.KnownProvider(provider):
		err = fmt.Errorf("scope %q name %q: want a provider limit for %q", l.Scope, l.Name, provider)
	case l.Unit != "usd" && l.Unit != "credits":
		err = fmt.Errorf("unit %q", l.Unit)
	case l.Amount < 0 || math.IsNaN(l.Amount) || math.IsInf(l.Amount, 0) || l.Period <= 0:
		err = fmt.Errorf("amount %v per %s", l.Amount, l.Period)
	}
	if err != nil {
		w.log.Warn("bad budget request; dropping it", "provider", provider, "err", err)
		return nil
	}
	l.At = at.UTC()
	key := wire.BudgetLimitKey(l.Scope, l.Name)
	kv := w.budgets.kv
	for range 10 {
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			var have reelq.BudgetLimit
			if json.Unmarshal(e.Value(), &have) == nil && have.At.After(l.At) {
				return nil // a later request was carried out first
			}
			rev = e.Revision()
		}
		b, _ := json.Marshal(l)
		if rev == 0 {
			_, err = kv.Create(ctx, key, b)
		} else {
			_, err = kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			w.log.Info("provider budget set", "provider", provider, "limit", reelq.FormatCost(reelq.Cost{Amount: l.Amount, Unit: l.Unit}),
				"period", l.Period.String(), "by", l.By)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
	}
	return fmt.Errorf("budget %s: too many concurrent writers", key)
}
