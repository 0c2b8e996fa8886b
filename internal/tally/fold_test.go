package tally

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/leaktest"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

// TestMain checks that no test leaves a goroutine behind.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// env is a server with reelq's layout, and a way to publish results and
// read the tallies.
type env struct {
	t   *testing.T
	ctx context.Context
	js  jetstream.JetStream
	s   *store.Store
	kv  jetstream.KeyValue
	n   int            // results published so far
	exp map[string]int // the counts the published results make
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	nc, js := natstest.Connect(t, natstest.Server(t))
	natstest.Setup(t, js)
	kv, err := js.KeyValue(ctx, wire.BucketTallies)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, js: js, s: &store.Store{NC: nc, JS: js, Timeout: 10 * time.Second}, kv: kv, exp: map[string]int{}}
}

// publish publishes n results (runs of new jobs, in two batches, three
// statuses, half with a cost) through the worker's path, each twice: the
// second is refused as the run's duplicate.
func (e *env) publish(n int) {
	e.t.Helper()
	statuses := []string{reelq.StatusSucceeded, reelq.StatusFailed, reelq.StatusCancelled}
	for range n {
		i := e.n
		e.n++
		r := &reelq.Result{ID: "job" + strconv.Itoa(i), Provider: "samsar", Batch: "b" + strconv.Itoa(i%2), Run: 1, Status: statuses[i%3]}
		if i%2 == 0 {
			r.Cost = &reelq.Cost{Amount: 0.25, Unit: "usd"}
			e.exp["batch."+r.Batch+".spent_micro_usd"] += 250_000
			e.exp["provider.samsar.spent_micro_usd"] += 250_000
		}
		e.exp["batch."+r.Batch+".done_"+r.Status]++
		e.exp["provider.samsar.done_"+r.Status]++
		for range 2 {
			if _, err := queue.PublishResult(e.ctx, e.js, r); err != nil {
				e.t.Fatal(err)
			}
		}
	}
}

// last is RESULTS' last sequence.
func (e *env) last() uint64 {
	e.t.Helper()
	seq, err := e.s.LastSeq(e.ctx, wire.StreamResults)
	if err != nil {
		e.t.Fatal(err)
	}
	return seq
}

// through is the checkpoint.
func (e *env) through() uint64 {
	e.t.Helper()
	c, err := (&folder{s: e.s, kv: e.kv}).read(e.ctx, wire.TallyThroughKey)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.through
}

// check compares every tally with what the published results make.
func (e *env) check(when string) {
	e.t.Helper()
	for key, want := range e.exp {
		c, err := (&folder{s: e.s, kv: e.kv}).read(e.ctx, key)
		if err != nil {
			e.t.Fatal(err)
		}
		if c.n != uint64(want) {
			e.t.Errorf("%s: %s = %d, want %d", when, key, c.n, want)
		}
	}
}

// foldAll folds with f until nothing is left.
func (e *env) foldAll(f *folder) {
	e.t.Helper()
	for {
		_, more, err := f.foldChunk(e.ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		if !more {
			return
		}
	}
}

// Results stored before the folder started are counted, once each
// (their duplicates were refused by RESULTS), and so are those stored
// while it runs; the checkpoint reaches RESULTS' last sequence. A result
// whose batch cannot name a key is passed over, not a stop.
func TestFolderCountsResultsStoredBeforeItStarted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish(15)
	if _, err := e.js.Publish(e.ctx, wire.ResultSubject("samsar", "odd"), []byte(`{"id":"odd","provider":"samsar","batch":"a.b c","status":"succeeded","run":1}`)); err != nil {
		t.Fatal(err)
	}
	e.publish(15)
	ctx, stop := context.WithCancel(e.ctx)
	fl := &Folder{Store: e.s, KV: e.kv, Holder: "a", Interval: 10 * time.Millisecond}
	var wg sync.WaitGroup
	wg.Go(func() { fl.Run(ctx) })
	defer func() { stop(); wg.Wait() }()
	waitfor.Until(t, time.Minute, "the fold to reach the results", func() bool { return e.through() >= e.last() })
	e.check("results stored before")
	e.publish(7)
	waitfor.Until(t, time.Minute, "the fold to reach the new results", func() bool { return e.through() >= e.last() })
	e.check("results stored after")
}

// Two folders folding the same results at once (a lease handed over
// while the old holder is still in a chunk) count every result once: the
// first reads a chunk and a count, the second folds everything meanwhile
// (and more results), then the first writes the count: its
// compare-and-set fails (without it, the second's counts would be lost),
// and reading again it adds nothing the second already added (without the
// through check, it would add its chunk twice).
func TestTwoFoldersCountEveryResultOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := &folder{s: e.s, kv: e.kv}
	e.publish(40)
	e.foldAll(other) // the counts exist: the first folder updates them
	e.publish(40)
	var a *folder
	a = &folder{s: e.s, kv: e.kv, beforeWrite: func(string) {
		a.beforeWrite = nil
		e.foldAll(other)
		e.publish(5) // and more results past a's chunk
		e.foldAll(other)
	}}
	if _, _, err := a.foldChunk(e.ctx); err != nil {
		t.Fatal(err)
	}
	if a.beforeWrite != nil {
		t.Fatal("the first folder wrote no count")
	}
	e.check("after the first folder wrote its chunk over the second's")
	if got, want := e.through(), e.last(); got != want {
		t.Errorf("checkpoint %d after the first folder's chunk, want %d (where the second had moved it)", got, want)
	}
	e.foldAll(a)
	e.check("after both folded")
	if got, want := e.through(), e.last(); got != want {
		t.Errorf("checkpoint %d, want RESULTS' last sequence %d", got, want)
	}

	// And concurrently, in small steps, while results arrive.
	var wg sync.WaitGroup
	for range 2 {
		f := &folder{s: e.s, kv: e.kv}
		wg.Go(func() {
			for range 20 {
				if _, _, err := f.foldChunk(e.ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	e.publish(30)
	wg.Wait()
	e.foldAll(&folder{s: e.s, kv: e.kv})
	e.check("after concurrent folds")
}

// A folder stopped in the middle of a chunk (some counts written, the
// checkpoint not) and a new one started count every result exactly once.
func TestFolderKilledMidChunkCountsExactly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish(20)
	e.foldAll(&folder{s: e.s, kv: e.kv})
	before := e.through()
	e.publish(20)
	ctx, kill := context.WithCancel(e.ctx)
	written := 0
	dying := &folder{s: e.s, kv: e.kv, afterKey: func(string) {
		if written++; written == 2 {
			kill()
		}
	}}
	if _, _, err := dying.foldChunk(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("folding with the folder killed: %v, want it cut short", err)
	}
	if got := e.through(); got != before {
		t.Fatalf("checkpoint moved to %d by a chunk cut short (was %d)", got, before)
	}
	e.foldAll(&folder{s: e.s, kv: e.kv})
	e.check("after a restart")
}

// One candidate folds at a time; when its lease lapses (its holder was
// killed without giving it up) another takes over and counts what is new.
func TestLeaseHandsTheFoldOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stale, _ := json.Marshal(lease{Holder: "killed", Until: time.Now().Add(time.Second)})
	if _, err := e.kv.Create(e.ctx, wire.TallyLeaseKey, stale); err != nil {
		t.Fatal(err)
	}
	e.publish(10)
	ctx, stop := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	for _, h := range []string{"a", "b"} {
		fl := &Folder{Store: e.s, KV: e.kv, Holder: h, Interval: 10 * time.Millisecond, Lease: time.Second}
		wg.Go(func() { fl.Run(ctx) })
	}
	defer func() { stop(); wg.Wait() }()
	waitfor.Until(t, time.Minute, "a candidate to take the lapsed lease and fold", func() error {
		if got, want := e.through(), e.last(); got < want {
			return fmt.Errorf("folded through %d of %d", got, want)
		}
		return nil
	})
	e.check("after the handover")
	en, err := e.kv.Get(e.ctx, wire.TallyLeaseKey)
	if err != nil {
		t.Fatal(err)
	}
	var l lease
	if err := json.Unmarshal(en.Value(), &l); err != nil || (l.Holder != "a" && l.Holder != "b") {
		t.Errorf("lease %s, want held by a or b", en.Value())
	}
}

// Results deleted from RESULTS before the fold read them are passed over,
// those at the tail too: the checkpoint still reaches RESULTS' last
// sequence (what Stats compares it with), and what was folded stays.
func TestFoldPassesDeletedResults(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish(6)
	e.foldAll(&folder{s: e.s, kv: e.kv})
	e.publish(3)
	st, err := e.js.Stream(e.ctx, wire.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	last := e.last()
	for seq := last - 2; seq <= last; seq++ {
		if err := st.DeleteMsg(e.ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	e.exp = map[string]int{}
	e.n = 0
	e.publish(6) // what the first six made: job0..job5 again are refused as duplicates
	e.foldAll(&folder{s: e.s, kv: e.kv})
	if got := e.through(); got != last {
		t.Errorf("checkpoint %d, want %d (the deleted tail passed over)", got, last)
	}
	e.check("after deleted results")
}
