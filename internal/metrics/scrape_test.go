package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/metrics"
	"github.com/reelq/reelq/internal/natstest"
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
	cons, err := js.CreateOrUpdateConsumer(ctx, reelq.StreamResults, jetstream.ConsumerConfig{Durable: "forwarder", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if _, err := js.Publish(ctx, "results.segmind."+id, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	lag := metrics.NewResultsLagCollector(js, "forwarder")
	if got := testutil.ToFloat64(lag); got != 3 {
		t.Errorf("lag %g with 3 events unread, want 3", got)
	}
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
	if got := testutil.ToFloat64(lag); n != 2 || got != 2 {
		t.Errorf("lag %g with %d delivered and 1 acknowledged, want 2", got, n)
	}
}
