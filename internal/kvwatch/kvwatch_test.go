package kvwatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/kvwatch"
	"github.com/reelq/reelq/internal/leaktest"
	"github.com/reelq/reelq/internal/natstest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// Follow applies the bucket's entries before it returns (not live), then
// each change as it comes (live), and its goroutine stops with ctx.
func TestFollowLoadsThenFollows(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Connect(t, natstest.Server(t))
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "follow"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "old", []byte("1")); err != nil {
		t.Fatal(err)
	}
	type seen struct {
		key  string
		live bool
	}
	got := make(chan seen, 4)
	wctx, stop := context.WithCancel(ctx)
	stopped, err := kvwatch.Follow(wctx, kv, "test values", func(e jetstream.KeyValueEntry, live bool) {
		got <- seen{e.Key(), live}
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != (seen{"old", false}) {
			t.Fatalf("first entry %+v, want old, not live", s)
		}
	default:
		t.Fatal("Follow returned before applying the initial value")
	}
	if _, err := kv.Put(ctx, "new", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != (seen{"new", true}) {
		t.Fatalf("change %+v, want new, live", s)
	}
	stop()
	<-stopped
}
