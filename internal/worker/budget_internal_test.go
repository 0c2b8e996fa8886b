package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
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
	kv, err := js.KeyValue(ctx, reelq.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 10, 59, 30, 0, time.UTC)
	b := newBudgeter(kv, slog.New(slog.DiscardHandler), nil, map[string]ProviderBudget{
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
	if sc[0].key != reelq.BudgetSpendKey(reelq.ScopeProvider, "segmind", time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC).Unix()) {
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
	kv, err := js.KeyValue(ctx, reelq.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	const replicas, tries, fit = 4, 10, 7
	est := &reelq.Cost{Amount: 1.5, Unit: "usd"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range replicas {
		b := newBudgeter(kv, slog.New(slog.DiscardHandler), nil, map[string]ProviderBudget{
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
