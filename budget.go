package reelq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/wire"
)

const (
	ScopeBatch    = "batch"
	ScopeProvider = "provider"
)

// BudgetLimit is a spending limit: for one batch over its life, or for one
// provider per period (a day, say). Units are "usd" and "credits"; a limit
// binds only jobs whose estimate is in its unit.
type BudgetLimit struct {
	Scope  string  `json:"scope"`
	Name   string  `json:"name"`
	Amount float64 `json:"amount"`
	Unit   string  `json:"unit"`
	// Period is the accounting period of a provider limit (fixed windows
	// aligned to the Unix epoch in UTC, e.g. 24h from midnight UTC).
	Period time.Duration `json:"period,omitempty"`
	By     string        `json:"by,omitempty"`
	At     time.Time     `json:"at"`
	// Request is the id of the operator request that set a provider
	// limit (SetBudget waits for it).
	Request string `json:"request,omitempty"`
}

// Spend is what workers have spent and reserved against a budget scope.
// A reservation of the job's estimate is taken with one compare-and-set
// before every paid submission and settled when its outcome is known, so
// replicas racing at the edge of a budget cannot overspend by even one job.
type Spend struct {
	// Spent is the estimate of what was submitted, by unit (a job paid
	// twice through an ambiguous submission counts twice).
	Spent map[string]float64 `json:"spent,omitempty"`
	// Reserved is held for submissions in progress, by unit: the sum of
	// Holds (and of reservations taken before holds were recorded).
	Reserved map[string]float64 `json:"reserved,omitempty"`
	// Holds are the reservations in progress, by the submit token of the
	// delivery that took each: a reservation whose delivery died before
	// any job state named it is found and released by the job's next
	// delivery.
	Holds map[string]Hold `json:"holds,omitempty"`
	// Submissions counts paid submissions.
	Submissions int       `json:"submissions"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Hold is one reservation: the job, the amount, and the revision of the
// job's state the reserving delivery read (0: none existed), after which
// only that delivery's compare-and-set write could name it.
type Hold struct {
	Job    string    `json:"job"`
	Unit   string    `json:"unit"`
	Amount float64   `json:"amount"`
	Rev    uint64    `json:"state_rev,omitempty"`
	At     time.Time `json:"at"`
}

// ParseCost reads "500usd", "$500", "$1,443.96", "20000credits" or
// "20000 credits". The amount is a decimal, exact to a millionth (no
// exponent, sign or misplaced thousands separator: "1e3usd" and
// "1,0,0,0usd" are refused saying why).
func ParseCost(s string) (Cost, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	unit := ""
	switch {
	case strings.HasPrefix(t, "$"):
		t, unit = t[1:], "usd"
	case strings.HasSuffix(t, "usd"):
		t, unit = strings.TrimSuffix(t, "usd"), "usd"
	case strings.HasSuffix(t, "credits"):
		t, unit = strings.TrimSuffix(t, "credits"), "credits"
	case strings.HasSuffix(t, "credit"):
		t, unit = strings.TrimSuffix(t, "credit"), "credits"
	}
	if unit == "" {
		return Cost{}, fmt.Errorf("cost %q: want an amount and a unit, e.g. 500usd, $500 or 20000credits", s)
	}
	t = strings.TrimSpace(t)
	m, err := money.Parse(t)
	if err != nil {
		return Cost{}, fmt.Errorf("cost %q: amount %q: %v; write it in digits, e.g. 500usd, $1,443.96 or 20000credits", s, t, err)
	}
	return Cost{Amount: m.Float(), Unit: unit}, nil
}

// FormatCost renders an amount: "$1,443.96" or "36,000 credits".
func FormatCost(c Cost) string {
	if c.Unit == "usd" {
		return "$" + thousands(strconv.FormatFloat(c.Amount, 'f', 2, 64))
	}
	s := strconv.FormatFloat(c.Amount, 'f', -1, 64)
	return thousands(s) + " " + c.Unit
}

func thousands(s string) string {
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

// SetBudget sets (or raises, or lowers) a spending limit. For a batch the
// limit binds from the next submission on; jobs waiting because the batch
// reached its old limit start again if the new one leaves room. A
// provider limit set here overrides the worker's configuration (P_BUDGET)
// and is kept until changed. Only workers write provider limits: this
// sends the request to the CONTROL stream (an operator identity is
// needed) and waits until a worker has written it, or ctx ends.
func (c *Client) SetBudget(ctx context.Context, l BudgetLimit) error {
	switch l.Scope {
	case ScopeBatch:
		if !ValidID(l.Name) {
			return fmt.Errorf("%w: batch %q", ErrInvalidJob, l.Name)
		}
	case ScopeProvider:
		if !KnownProvider(l.Name) {
			return fmt.Errorf("reelq: unknown provider %q (one of %s)", l.Name, strings.Join(Providers, ", "))
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
	if l.Scope == ScopeProvider {
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
func (c *Client) requestProviderBudget(ctx context.Context, l BudgetLimit) error {
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
		var have BudgetLimit
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
	BudgetLimit
	// Spent and Reserved are in the limit's unit, for the current period
	// of a provider limit.
	Spent, Reserved float64
	Submissions     int
}

// Remaining is what the budget still allows.
func (b BudgetStatus) Remaining() float64 { return money.Sum(b.Amount, -b.Spent, -b.Reserved) }

// Budgets lists every limit set in the bucket with its spend (a provider's
// limit from the worker configuration is not listed: see Stats).
func (c *Client) Budgets(ctx context.Context) ([]BudgetStatus, error) {
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
	limits := map[string]BudgetLimit{}
	spends := map[string]Spend{}
	for subj, m := range msgs {
		key := strings.TrimPrefix(subj, "$KV."+wire.BucketBudgets+".")
		if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			continue
		}
		switch {
		case strings.HasPrefix(key, "limit."):
			var l BudgetLimit
			if json.Unmarshal(m.Data, &l) == nil {
				limits[key] = l
			}
		case strings.HasPrefix(key, "spend."):
			var s Spend
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
func (c *Client) BatchSpend(ctx context.Context, batch string) (Spend, error) {
	kv, err := c.budgets(ctx)
	if err != nil {
		return Spend{}, err
	}
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	e, err := kv.Get(cctx, wire.BudgetSpendKey(ScopeBatch, batch, 0))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Spend{}, nil
	}
	if err != nil {
		return Spend{}, err
	}
	var s Spend
	err = json.Unmarshal(e.Value(), &s)
	return s, err
}

func (c *Client) budgets(ctx context.Context) (jetstream.KeyValue, error) {
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	kv, err := c.js.KeyValue(cctx, wire.BucketBudgets)
	if err != nil {
		return nil, notReady(err)
	}
	return kv, nil
}

// EstimateAll sums the estimated cost of jobs by provider and unit, and
// counts the jobs without a price (an invalid input, or a provider that
// publishes no price for it).
func (c *Client) EstimateAll(jobs []Job) (totals map[string]map[string]float64, basis map[string]string, unpriced int) {
	totals, basis = map[string]map[string]float64{}, map[string]string{}
	for i := range jobs {
		e, ok := c.Estimate(&jobs[i])
		if !ok || e.Unit == "" {
			unpriced++
			continue
		}
		p := jobs[i].Provider
		if totals[p] == nil {
			totals[p] = map[string]float64{}
		}
		totals[p][e.Unit] = money.Add(totals[p][e.Unit], e.Amount)
		if basis[p] == "" {
			basis[p] = e.Basis
		}
	}
	return totals, basis, unpriced
}
