package worker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/wire"
)

// A provider budget per period rolls over at the period boundary: with an
// injected clock, the third job of a two-job hourly budget is refused at
// 10:59:59 and allowed at 11:00:00, against the real KV bucket.
func TestProviderBudgetRollsOver(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Connect(t, natstest.Server(t))
	natstest.Setup(t, js)
	kv, err := js.KeyValue(ctx, wire.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 10, 59, 30, 0, time.UTC)
	b := newBudgeter(js, kv, slog.New(slog.DiscardHandler), nil, map[string]ProviderBudget{
		"segmind": {Limit: reelq.Cost{Amount: 5, Unit: "usd"}, Period: time.Hour}})
	b.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	est := &reelq.Cost{Amount: 2.4066, Unit: "usd"}

	for i := range 2 {
		sc, _ := b.scopes("segmind", "", est)
		if len(sc) != 1 {
			t.Fatalf("scopes = %+v, want the provider's", sc)
		}
		if over, err := b.reserve(ctx, sc, est, reservation{token: "t1"}); err != nil {
			t.Fatalf("job %d: reserve: %v (over %+v)", i, err, over)
		}
		b.settle(ctx, sc, est, true, "t1")
	}
	set(time.Date(2026, 12, 1, 10, 59, 59, 0, time.UTC))
	if _, err := b.reserve(ctx, scopesOf(b.scopes("segmind", "", est)), est, reservation{token: "t2"}); !errors.Is(err, errOverBudget) {
		t.Fatalf("third job in the same hour: %v, want over budget", err)
	}
	set(time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC))
	sc := scopesOf(b.scopes("segmind", "", est))
	if _, err := b.reserve(ctx, sc, est, reservation{token: "t3"}); err != nil {
		t.Fatalf("first job of the next hour: %v", err)
	}
	if sc[0].key != wire.BudgetSpendKey(reelq.ScopeProvider, "segmind", time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC).Unix()) {
		t.Errorf("spend key %s, want the 11:00 period's", sc[0].key)
	}
	// Released reservations give the room back; paid ones keep it.
	b.settle(ctx, sc, est, false, "t3")
	if _, err := b.reserve(ctx, scopesOf(b.scopes("segmind", "", est)), est, reservation{token: "t4"}); err != nil {
		t.Fatalf("after a released reservation: %v", err)
	}
}

// Replicas racing at the edge of a budget never overspend: many
// goroutines with their own budgeters (as replicas) reserve against one
// limit; exactly the limit's worth is granted.
func TestBudgetReservationIsAtomic(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, js := natstest.Connect(t, natstest.Server(t))
	natstest.Setup(t, js)
	kv, err := js.KeyValue(ctx, wire.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	const replicas, tries, fit = 4, 10, 7
	est := &reelq.Cost{Amount: 1.5, Unit: "usd"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range replicas {
		b := newBudgeter(js, kv, slog.New(slog.DiscardHandler), nil, map[string]ProviderBudget{
			"samsar": {Limit: reelq.Cost{Amount: fit * 1.5, Unit: "usd"}, Period: 24 * time.Hour}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tries {
				_, err := b.reserve(ctx, scopesOf(b.scopes("samsar", "", est)), est, reservation{token: newToken()})
				if err == nil {
					mu.Lock()
					granted++
					mu.Unlock()
				} else if !errors.Is(err, errOverBudget) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if granted != fit {
		t.Fatalf("%d reservations granted, want exactly %d", granted, fit)
	}
}

// scopesOf is the scopes of a budgeter's scopes call, without the view's
// version.
func scopesOf(sc []budgetScope, _ uint64) []budgetScope { return sc }

// After the budgets bucket lost its history (here an admin's purge; the
// reviewer's was a producer's rollup), no replica trusts the empty view:
// a replica reserving against spend it saw finds the loss at once and is
// refused, and pauses every provider (onLost); another replica forgets the
// limits nobody can see any more; a replica starting afterwards finds the
// witness written again and pauses nothing more (the pauses are kept),
// and one starting on a purged bucket before any replica noticed finds
// the loss itself.
func TestBudgetsLostIsNoticed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Connect(t, natstest.Server(t))
	natstest.Setup(t, js)
	kv, err := js.KeyValue(ctx, wire.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	setLimit := func() {
		t.Helper()
		l, _ := json.Marshal(reelq.BudgetLimit{Scope: reelq.ScopeProvider, Name: "samsar", Amount: 10, Unit: "usd", Period: 24 * time.Hour})
		if _, err := kv.Put(ctx, wire.BudgetLimitKey(reelq.ScopeProvider, "samsar"), l); err != nil {
			t.Fatal(err)
		}
	}
	setLimit()
	var mu sync.Mutex
	lost := map[string]int{}
	wctx, stop := context.WithCancel(ctx)
	var stopped []<-chan struct{}
	defer func() {
		stop()
		for _, s := range stopped {
			<-s
		}
	}()
	est := &reelq.Cost{Amount: 4, Unit: "usd"}
	replica := func(name string) *budgeter {
		b := newBudgeter(js, kv, slog.New(slog.DiscardHandler), nil, nil)
		b.onLost = func(context.Context) { mu.Lock(); lost[name]++; mu.Unlock() }
		s, err := b.watch(wctx)
		if err != nil {
			t.Fatal(err)
		}
		stopped = append(stopped, s)
		return b
	}
	lostCount := func(name string) int { mu.Lock(); defer mu.Unlock(); return lost[name] }
	a, b := replica("a"), replica("b")
	for _, r := range []*budgeter{a, b} {
		if len(scopesOf(r.scopes("samsar", "", est))) != 1 {
			t.Fatal("the provider limit is not in a replica's view")
		}
	}
	if _, err := a.reserve(ctx, scopesOf(a.scopes("samsar", "", est)), est, reservation{token: "lost-1"}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "KV_"+wire.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	// a's next reservation starts from the spend it saw: refused.
	if _, err := a.reserve(ctx, scopesOf(a.scopes("samsar", "", est)), est, reservation{token: "lost-2"}); !errors.Is(err, queue.ErrBudgetsLost) {
		t.Fatalf("reserving after the loss: %v, want %v", err, queue.ErrBudgetsLost)
	}
	if n := lostCount("a"); n != 1 {
		t.Errorf("replica a paused the providers %d times, want once", n)
	}
	if sc := scopesOf(a.scopes("samsar", "", est)); len(sc) != 0 {
		t.Errorf("replica a still enforces %+v", sc)
	}
	// b sees the witness written again and forgets.
	for {
		sc, seen := b.scopes("samsar", "", est)
		if len(sc) == 0 {
			break
		}
		select {
		case <-b.changed(seen):
		case <-ctx.Done():
			t.Fatal("replica b still enforces the limit nobody can see")
		}
	}
	c := replica("c")
	if n := lostCount("b") + lostCount("c"); n != 0 {
		t.Errorf("replicas b and c paused the providers again (%d)", n)
	}
	if len(scopesOf(c.scopes("samsar", "", est))) != 0 {
		t.Error("replica c has a limit in its view")
	}
	// A replica that starts on a purged bucket nobody noticed yet.
	before, err := queue.ReadEpoch(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	setLimit()
	if err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	replica("d")
	if n := lostCount("d"); n != 1 {
		t.Errorf("a replica starting on the purged bucket paused the providers %d times, want once", n)
	}
	if ep, err := queue.ReadEpoch(ctx, kv); err != nil || ep.Mark == before.Mark || ep.ID != before.ID {
		t.Errorf("the witness after the second loss: %+v %v, want a new mark of bucket %s", ep, err, before.ID)
	}
}
