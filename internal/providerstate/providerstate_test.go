package providerstate

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/embedded"
)

// The test's own layout: this package is imported by the reelq package,
// so its tests cannot use the harnesses built on it (natstest, queue).
const (
	testStream = "JOBS"
	testBucket = "reelq_providers"
)

type testBundle struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { embedded.Stop(srv) })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: testStream, Subjects: []string{"jobs.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, testStream, jetstream.ConsumerConfig{Durable: "samsar", FilterSubject: "jobs.samsar.>", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 2}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: testBucket, History: 5})
	if err != nil {
		t.Fatal(err)
	}
	return &testBundle{js: js, kv: kv}
}

func (b *testBundle) store(t *testing.T) *Store {
	t.Helper()
	s := New(b.js, b.kv, testStream, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := s.Watch(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func (b *testBundle) serverPaused(t *testing.T) bool {
	t.Helper()
	c, err := b.js.Consumer(context.Background(), testStream, "samsar")
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo().Paused
}

// waitView waits (on the view's version) until s's view of samsar
// satisfies cond.
func waitView(t *testing.T, s *Store, what string, cond func(State) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		st, seen := s.View("samsar")
		if cond(st) {
			return
		}
		select {
		case <-s.Changed(seen):
		case <-deadline:
			t.Fatalf("view never became %s; last %+v", what, st)
		}
	}
}

// A replica whose clock runs ahead pauses; another resumes. The first
// replica's view must follow the resume: records are ordered by their KV
// revision, not by the writers' clocks.
func TestViewFollowsRevisionsNotClocks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ahead := b.store(t)
	ahead.now = func() time.Time { return time.Now().Add(time.Hour) }
	other := b.store(t)

	if _, _, err := ahead.Pause(ctx, "samsar", CodeCredits, "out of credits", "ahead", time.Minute); err != nil {
		t.Fatal(err)
	}
	waitView(t, other, "paused", func(s State) bool { return s.Paused })
	if changed, err := other.Resume(ctx, "samsar", "enqueue"); err != nil || !changed {
		t.Fatalf("resume: changed=%v err=%v", changed, err)
	}
	waitView(t, ahead, "resumed", func(s State) bool { return !s.Paused })
	if b.serverPaused(t) {
		t.Error("consumer still paused on the server")
	}
}

// A probe's verdict ends only an automatic pause; a manual pause that
// replaced it stays.
func TestEndAutoKeepsManualPause(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	worker, ops := b.store(t), b.store(t)
	if _, _, err := worker.Pause(ctx, "samsar", CodeCredits, "out of credits", "w1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if st, changed, err := ops.Pause(ctx, "samsar", CodeManual, "maintenance", "enqueue", 0); err != nil || !changed || st.Code != CodeManual {
		t.Fatalf("manual pause over an automatic one: %+v changed=%v err=%v", st, changed, err)
	}
	if changed, err := worker.EndAuto(ctx, "samsar", "w1"); err != nil || changed {
		t.Fatalf("EndAuto on a manual pause: changed=%v err=%v, want no change", changed, err)
	}
	if st, _, err := ops.Get(ctx, "samsar"); err != nil || !st.Paused || st.Code != CodeManual {
		t.Errorf("state after EndAuto: %+v %v, want still paused (manual)", st, err)
	}
}

// A pause holds paid calls in the replicas, never deliveries: its
// consumers stay unpaused on the server, so redeliveries of jobs whose
// task already runs keep coming. Enforce (a replica starting) lifts a
// server-side pause an older release set.
func TestPauseLeavesDeliveries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	s := b.store(t)
	for _, probe := range []time.Duration{time.Minute, 0} { // automatic, then manual
		if _, _, err := s.Pause(ctx, "samsar", CodeCredits, "paused", "w1", probe); err != nil {
			t.Fatal(err)
		}
		if b.serverPaused(t) {
			t.Errorf("pause (probe after %v) paused the consumer on the server", probe)
		}
	}
	if _, err := b.js.PauseConsumer(ctx, testStream, "samsar", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	st, err := s.Enforce(ctx, "samsar")
	if err != nil || !st.Paused {
		t.Fatalf("Enforce = %+v, %v; want the pause on record", st, err)
	}
	if b.serverPaused(t) {
		t.Error("Enforce left the consumer paused on the server")
	}
}

// An operator's resume also repairs a consumer paused on the server with
// no pause on record.
func TestResumeRepairsServer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, err := b.js.PauseConsumer(ctx, testStream, "samsar", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if changed, err := b.store(t).Resume(ctx, "samsar", "enqueue"); err != nil || changed {
		t.Fatalf("resume: changed=%v err=%v, want no record change", changed, err)
	}
	if b.serverPaused(t) {
		t.Error("consumer still paused on the server")
	}
}
