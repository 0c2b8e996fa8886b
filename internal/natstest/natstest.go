// Package natstest starts real, embedded JetStream servers for tests:
// no mocks of NATS anywhere in reelq's tests.
package natstest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/embedded"
	"github.com/reelq/reelq/internal/queue"
)

// Server starts an embedded JetStream server on a random loopback port
// with its store in a temporary directory, stopped when the test ends.
func Server(t testing.TB) *server.Server {
	t.Helper()
	return ServerAt(t, t.TempDir())
}

// ServerAt is Server with a given store directory (to restart a server on
// the same data).
func ServerAt(t testing.TB, dir string) *server.Server {
	t.Helper()
	s, err := embedded.Start(embedded.Options{Name: "test", Listen: "127.0.0.1:-1", StoreDir: dir})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(func() { embedded.Stop(s) })
	return s
}

// Connect opens a client connection to s, closed when the test ends.
func Connect(t testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Setup creates reelq's streams and buckets.
func Setup(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := queue.Setup(ctx, js, queue.Layout{Outputs: true}); err != nil {
		t.Fatalf("setup: %v", err)
	}
}

// Results collects result events from RESULTS (from the start of the
// stream) until want distinct jobs have one or ctx ends. It returns every
// event seen, keyed by job id.
func Results(ctx context.Context, t testing.TB, js jetstream.JetStream, want int) map[string][]reelq.Result {
	t.Helper()
	cons, err := js.OrderedConsumer(ctx, queue.StreamResults, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("results consumer: %v", err)
	}
	out := map[string][]reelq.Result{}
	for len(out) < want {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("waiting for results: got %d of %d: %v", len(out), want, err)
		}
		var r reelq.Result
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			t.Fatalf("bad result %s: %v", msg.Data(), err)
		}
		out[r.ID] = append(out[r.ID], r)
	}
	return out
}

// StreamMsgs returns how many messages stream holds.
func StreamMsgs(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	return info.State.Msgs
}
