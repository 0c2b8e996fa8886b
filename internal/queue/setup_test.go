package queue

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/embedded"
)

// Setup must recognise what it created as unchanged, so replicas starting
// up do not update the streams (see sameStream) — and must update a
// stream whose settings did change.
func TestSetupLeavesUnchangedStreamsAlone(t *testing.T) {
	t.Parallel()
	s, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { embedded.Stop(s) })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := Layout{}
	if err := Setup(ctx, js, l); err != nil {
		t.Fatal(err)
	}
	for _, want := range l.StreamConfigs() {
		st, err := js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !sameStream(st.CachedInfo().Config, want) {
			t.Errorf("stream %s: created config %+v is not recognised as %+v", want.Name, st.CachedInfo().Config, want)
		}
	}
	for _, want := range l.KeyValueConfigs() {
		st, err := js.Stream(ctx, "KV_"+want.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		if !l.sameBucket(st.CachedInfo().Config, want) {
			t.Errorf("bucket %s: created config not recognised as unchanged", want.Bucket)
		}
	}
	l.ResultsMaxAge = 48 * time.Hour
	if err := Setup(ctx, js, l); err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, StreamResults)
	if got := st.CachedInfo().Config.MaxAge; got != 48*time.Hour {
		t.Errorf("RESULTS MaxAge %s after a changed Setup, want 48h", got)
	}
}
