package inspect_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/wire"
)

// Stats lists the batches updated last, and Budgets every limit, however
// many there are: a wildcard read of more than 1,024 subjects is refused by
// the server (status 413), which broke both past 205 batches.
func TestStatsAndBudgetsWithManyBatches(t *testing.T) {
	s := natstest.Server(t)
	nc, js := natstest.Connect(t, s)
	natstest.Setup(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tallies, err := js.KeyValue(ctx, wire.BucketTallies)
	if err != nil {
		t.Fatal(err)
	}
	const batches = 300
	for i := range batches {
		b := fmt.Sprintf("b%03d", i)
		m := nats.NewMsg(wire.BatchCounterSubject(b, "enqueued"))
		m.Header.Set("Nats-Incr", "+2")
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"done_succeeded", "done_failed", "done_cancelled", wire.SpendCounterField("usd")} {
			if _, err := tallies.Put(ctx, wire.TallyKey("batch", b, f), []byte(`{"val":"2","through":1}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	kv, err := js.KeyValue(ctx, wire.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1100 {
		l := reelq.BudgetLimit{Scope: reelq.ScopeBatch, Name: fmt.Sprintf("b%04d", i), Amount: 10, Unit: "usd"}
		data, _ := json.Marshal(l)
		if _, err := kv.Put(ctx, wire.BudgetLimitKey(l.Scope, l.Name), data); err != nil {
			t.Fatal(err)
		}
	}
	c, err := inspect.New(ctx, nc, reelq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Stats(ctx, inspect.StatsOptions{})
	if err != nil {
		t.Fatalf("Stats with %d batches: %v", batches, err)
	}
	if len(st.Batches) != 20 {
		t.Fatalf("%d batches listed, want the 20 updated last", len(st.Batches))
	}
	for _, b := range st.Batches {
		var i int
		fmt.Sscanf(b.Batch, "b%d", &i)
		if i < batches-20 || b.Enqueued != 2 || b.Spent["usd"] != 2e-6 {
			t.Errorf("listed %+v, want one of the last 20 batches with its counters", b)
		}
	}
	one, err := c.Stats(ctx, inspect.StatsOptions{Batch: "b007"})
	if err != nil || len(one.Batches) != 1 || one.Batches[0].Succeeded != 2 {
		t.Fatalf("Stats for b007: %+v, %v", one.Batches, err)
	}
	bs, err := c.Budgets(ctx)
	if err != nil || len(bs) != 1100 {
		t.Fatalf("Budgets: %d limits, %v; want 1100", len(bs), err)
	}
}
