package metrics_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/metrics"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// reelq_results_lag is what the consumer has not settled: delivered and
// unacknowledged events count until acknowledged.
func TestResultsLag(t *testing.T) {
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)
	natstest.Setup(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, wire.StreamResults, jetstream.ConsumerConfig{Durable: "forwarder", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if _, err := js.Publish(ctx, "results.segmind."+id, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	lag := metrics.NewResultsLagCollector(js, "forwarder")
	is := func(want float64) func() error {
		return func() error {
			if got := testutil.ToFloat64(lag); got != want {
				return fmt.Errorf("lag %g, want %g", got, want)
			}
			return nil
		}
	}
	// The server updates a consumer's counts just after the publish.
	waitfor.Until(t, 10*time.Second, "a lag of 3 with 3 events unread", is(3))
	msgs, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range msgs.Messages() {
		if n == 0 {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d delivered, want 2", n)
	}
	waitfor.Until(t, 10*time.Second, "a lag of 2 with 2 delivered and 1 acknowledged", is(2))
}

// reelq_queue_depth counts each priority's consumer: a high and two low
// priority jobs show on their own series. (Before, only the normal
// consumer was read: jobs queued at high or low priority were invisible.)
func TestQueueDepthPerPriority(t *testing.T) {
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)
	natstest.Setup(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := queue.EnsureConsumers(ctx, js, "segmind", queue.ConsumerSettings{AckWait: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for id, p := range map[string]reelq.Priority{"h1": reelq.High, "l1": reelq.Low, "l2": reelq.Low} {
		if _, err := js.Publish(ctx, wire.JobSubject("segmind", p, id), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	c := metrics.NewQueueCollector(js, []string{"segmind"})
	want := `
# HELP reelq_queue_depth Jobs waiting in the queue (consumer num_pending), cluster-wide.
# TYPE reelq_queue_depth gauge
reelq_queue_depth{priority="high",provider="segmind"} 1
reelq_queue_depth{priority="low",provider="segmind"} 2
reelq_queue_depth{priority="normal",provider="segmind"} 0
`
	waitfor.Until(t, 10*time.Second, "the depth of each priority", func() error {
		return testutil.CollectAndCompare(c, strings.NewReader(want), "reelq_queue_depth")
	})
}
