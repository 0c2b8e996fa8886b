package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/embedded"
)

// startNATS runs an embedded JetStream server on a random loopback port; it
// is shut down when the test ends.
func startNATS(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := embedded.Start(embedded.Options{Name: "ratelimit-test", Listen: "127.0.0.1:-1", StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("nats server: %v", err)
	}
	tb.Cleanup(func() { embedded.Stop(s) })
	return s
}

// connectJS opens a separate client connection to s, as a replica would.
func connectJS(tb testing.TB, s *server.Server) jetstream.JetStream {
	tb.Helper()
	return dialJS(tb, s.ClientURL())
}

func dialJS(tb testing.TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatalf("nats connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return js
}

// createBucket creates the limiter bucket (History 1) and returns a handle on it.
func createBucket(tb testing.TB, js jetstream.JetStream, name string) jetstream.KeyValue {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, History: 1})
	if err != nil {
		tb.Fatalf("create bucket %s: %v", name, err)
	}
	return kv
}

// openBucket binds to an existing bucket through another connection.
func openBucket(tb testing.TB, js jetstream.JetStream, name string) jetstream.KeyValue {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		tb.Fatalf("open bucket %s: %v", name, err)
	}
	return kv
}
