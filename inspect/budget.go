package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/wire"
)

// SetBudget sets (or raises, or lowers) a spending limit. For a batch the
// limit binds from the next submission on; jobs waiting because the batch
// reached its old limit start again if the new one leaves room. A
// provider limit set here overrides the worker's configuration (P_BUDGET)
// and is kept until changed. Only workers write provider limits: this
// sends the request to the CONTROL stream (an operator identity is
// needed) and waits until a worker has written it, or ctx ends.
func (c *Inspector) SetBudget(ctx context.Context, l reelq.BudgetLimit) error {
	switch l.Scope {
	case reelq.ScopeBatch:
		if !reelq.ValidID(l.Name) {
			return fmt.Errorf("%w: batch %q", reelq.ErrInvalidJob, l.Name)
		}
	case reelq.ScopeProvider:
		if !reelq.KnownProvider(l.Name) {
			return fmt.Errorf("reelq: unknown provider %q (one of %s)", l.Name, strings.Join(reelq.Providers, ", "))
		}
		if l.Period <= 0 {
			l.Period = 24 * time.Hour
		}
	default:
		return fmt.Errorf("reelq: budget scope %q (want batch or provider)", l.Scope)
	}
	if l.Unit != "usd" && l.Unit != "credits" {
		return fmt.Errorf("reelq: budget unit %q (want usd or credits)", l.Unit)
	}
	if l.Amount < 0 || math.IsNaN(l.Amount) || math.IsInf(l.Amount, 0) {
		return fmt.Errorf("reelq: budget amount %v (want a finite amount, 0 or more)", l.Amount)
	}
	l.By, l.At = c.opts.By, time.Now().UTC()
	if l.Scope == reelq.ScopeProvider {
		return c.requestProviderBudget(ctx, l)
	}
	kv, err := c.budgets(ctx)
	if err != nil {
		return err
	}
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	ttl, err := budgetKeyTTL(cctx, kv)
	if err != nil {
		return fmt.Errorf("reelq: set budget: %w", err)
	}
	b, _ := json.Marshal(l)
	msg := &nats.Msg{Subject: "$KV." + wire.BucketBudgets + "." + wire.BudgetLimitKey(l.Scope, l.Name), Data: b}
	if _, err := c.js.PublishMsg(cctx, msg, jetstream.WithMsgTTL(ttl)); err != nil {
		return fmt.Errorf("reelq: set budget: %w", err)
	}
	return nil
}

// budgetKeyTTL is how long batch limits and spend are kept, from the
// budgets stream's metadata (0, none, for a bucket set up by an older
// reelq).
func budgetKeyTTL(ctx context.Context, kv jetstream.KeyValue) (time.Duration, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, nil
	}
	v := bs.StreamInfo().Config.Metadata[wire.BudgetsKeyTTLMetadata]
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("bucket %s: metadata %s=%q: %w", wire.BucketBudgets, wire.BudgetsKeyTTLMetadata, v, err)
	}
	return d, nil
}

// requestProviderBudget asks the workers, through CONTROL, to set a
// provider limit, and waits until one has written it.
func (c *Inspector) requestProviderBudget(ctx context.Context, l reelq.BudgetLimit) error {
	l.Request = nuid.Next()
	body, _ := json.Marshal(l)
	cctx, cancel := c.s.ReqCtx(ctx)
	_, err := c.js.Publish(cctx, wire.ControlSubject("budget", l.Name), body)
	cancel()
	if err != nil {
		return fmt.Errorf("reelq: set budget: %w", err)
	}
	kv, err := c.budgets(ctx)
	if err != nil {
		return err
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(50*time.Millisecond),
		backoff.WithMaxInterval(time.Second), backoff.WithMaxElapsedTime(0)), ctx)
	err = backoff.Retry(func() error {
		gctx, cancel := c.s.ReqCtx(ctx)
		defer cancel()
		e, err := kv.Get(gctx, wire.BudgetLimitKey(l.Scope, l.Name))
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		var have reelq.BudgetLimit
		if err == nil {
			_ = json.Unmarshal(e.Value(), &have)
		}
		if have.Request != l.Request {
			return errors.New("not applied yet")
		}
		return nil
	}, b)
	if err != nil {
		return fmt.Errorf("reelq: set budget: the request is sent, but no worker has applied it: %w", err)
	}
	return nil
}

// BudgetStatus is a limit with what was spent against it.
type BudgetStatus struct {
	reelq.BudgetLimit
	// Spent and Reserved are in the limit's unit, for the current period
	// of a provider limit.
	Spent, Reserved float64
	Submissions     int
}

// Remaining is what the budget still allows.
func (b BudgetStatus) Remaining() float64 { return money.Sum(b.Amount, -b.Spent, -b.Reserved) }

// Budgets lists every limit set in the bucket with its spend (a provider's
// limit from the worker configuration is not listed: see Stats).
func (c *Inspector) Budgets(ctx context.Context) ([]BudgetStatus, error) {
	kv, err := c.budgets(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	msgs, err := c.s.LastMsgs(cctx, "KV_"+wire.BucketBudgets, []string{"$KV." + wire.BucketBudgets + ".>"})
	if err != nil {
		return nil, err
	}
	_ = kv
	limits := map[string]reelq.BudgetLimit{}
	spends := map[string]reelq.Spend{}
	for subj, m := range msgs {
		key := strings.TrimPrefix(subj, "$KV."+wire.BucketBudgets+".")
		if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			continue
		}
		switch {
		case strings.HasPrefix(key, "limit."):
			var l reelq.BudgetLimit
			if json.Unmarshal(m.Data, &l) == nil {
				limits[key] = l
			}
		case strings.HasPrefix(key, "spend."):
			var s reelq.Spend
			if json.Unmarshal(m.Data, &s) == nil {
				spends[key] = s
			}
		}
	}
	now := time.Now()
	var out []BudgetStatus
	for _, l := range limits {
		st := BudgetStatus{BudgetLimit: l}
		sp := spends[wire.BudgetSpendKey(l.Scope, l.Name, wire.PeriodStart(now, l.Period))]
		st.Spent, st.Reserved, st.Submissions = sp.Spent[l.Unit], sp.Reserved[l.Unit], sp.Submissions
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Scope != out[j].Scope {
			return out[i].Scope < out[j].Scope
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// BatchSpend returns what was spent on batch, by unit.
func (c *Inspector) BatchSpend(ctx context.Context, batch string) (reelq.Spend, error) {
	kv, err := c.budgets(ctx)
	if err != nil {
		return reelq.Spend{}, err
	}
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	e, err := kv.Get(cctx, wire.BudgetSpendKey(reelq.ScopeBatch, batch, 0))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return reelq.Spend{}, nil
	}
	if err != nil {
		return reelq.Spend{}, err
	}
	var s reelq.Spend
	err = json.Unmarshal(e.Value(), &s)
	return s, err
}

func (c *Inspector) budgets(ctx context.Context) (jetstream.KeyValue, error) {
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	kv, err := c.js.KeyValue(cctx, wire.BucketBudgets)
	if err != nil {
		return nil, notReady(err)
	}
	return kv, nil
}
