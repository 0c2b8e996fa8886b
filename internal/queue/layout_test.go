package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/queue"
)

// Changing P_MAX_INFLIGHT updates the consumer's MaxAckPending and keeps a
// pause in place: a replica starting with new settings must not resume a
// provider another replica paused. (nats-server 2.15 itself ignores
// PauseUntil in a consumer update and keeps the current pause;
// EnsureConsumer also copies it across, which this test does not
// distinguish.)
func TestEnsureConsumerKeepsPause(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Connect(t, natstest.Server(t))
	natstest.Setup(t, js)

	settings := queue.ConsumerSettings{Window: 300, AckWait: time.Minute}
	if _, err := queue.EnsureConsumers(ctx, js, "samsar", settings); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if _, err := js.PauseConsumer(ctx, queue.StreamJobs, "samsar", until); err != nil {
		t.Fatal(err)
	}

	// Same settings: nothing to update.
	if _, err := queue.EnsureConsumers(ctx, js, "samsar", settings); err != nil {
		t.Fatal(err)
	}
	settings.Window = 500
	cs, err := queue.EnsureConsumers(ctx, js, "samsar", settings)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cs[reelq.Normal].Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAckPending != 500 {
		t.Errorf("MaxAckPending = %d, want 500", info.Config.MaxAckPending)
	}
	if !info.Paused || info.Config.PauseUntil == nil || !info.Config.PauseUntil.Equal(until) {
		t.Errorf("after the update: paused=%v pause_until=%v, want paused until %v", info.Paused, info.Config.PauseUntil, until)
	}
}

// JOBS accepts only known providers' subjects (a job for jobs.foo.x is
// refused at publish time instead of being stored forever) and messages
// up to its size limit, so every accepted message fits in the DLQ with its
// headers.
func TestJobsRefusesUnknownProvidersAndLargeMessages(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Connect(t, natstest.Server(t))
	natstest.Setup(t, js)
	if _, err := js.Publish(ctx, "jobs.foo.x", []byte(`{}`)); err == nil {
		t.Error("a job for an unknown provider was stored")
	}
	for _, subj := range []string{"jobs.samsar", "jobs.samsar.a", "jobs.samsar.high.a", "jobs.samsar.low.a", "jobs.samsar.normal.a"} {
		if _, err := js.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Errorf("%s refused: %v", subj, err)
		}
	}
	if _, err := js.Publish(ctx, "jobs.samsar.high.a.b", []byte(`{}`)); err == nil {
		t.Error("a five-token job subject was stored")
	}
	big := make([]byte, reelq.MaxJobBytes+1)
	if _, err := js.Publish(ctx, "jobs.samsar.big", big); err == nil {
		t.Errorf("a %d-byte job was stored; the limit is %d", len(big), reelq.MaxJobBytes)
	}
}

// A cluster set up by an older reelq (JOBS on jobs.>, one consumer per
// provider reading jobs.<p>.>) is brought to the current layout by Setup
// and EnsureConsumers, keeping the queued jobs.
func TestSetupUpgradesOldLayout(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Connect(t, natstest.Server(t))
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: queue.StreamJobs, Subjects: []string{"jobs.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: time.Hour, Discard: jetstream.DiscardNew}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, queue.StreamJobs, jetstream.ConsumerConfig{Durable: "samsar",
		FilterSubjects: []string{"jobs.samsar", "jobs.samsar.>"}, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "jobs.samsar.old-1", []byte(`{"provider":"samsar","input":{}}`)); err != nil {
		t.Fatal(err)
	}
	if err := queue.Setup(ctx, js, queue.Layout{}); err != nil {
		t.Fatal(err)
	}
	cs, err := queue.EnsureConsumers(ctx, js, "samsar", queue.ConsumerSettings{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cs[reelq.Normal].Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 1 {
		t.Errorf("the queued job: pending %d, want 1", info.NumPending)
	}
	if len(cs) != 3 {
		t.Errorf("%d consumers, want one per priority", len(cs))
	}
}

// The rate limits' bucket of an older reelq (file storage, rollups
// allowed) is brought to the current settings by Setup, keeping its
// storage: a stream's storage cannot change, and an update that tried
// failed Setup (and so every worker's start). SetupBucket recreates it,
// once it is gone, in memory and with those settings.
func TestSetupKeepsOldRateLimitBucketStorage(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Connect(t, natstest.Server(t))
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: queue.BucketRateLimit, Description: "reelq cluster-wide rate limits",
		History: 1, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if err := queue.Setup(ctx, js, queue.Layout{}); err != nil {
		t.Fatalf("Setup over an old rate limit bucket: %v", err)
	}
	check := func(storage jetstream.StorageType) {
		t.Helper()
		st, err := js.Stream(ctx, "KV_"+queue.BucketRateLimit)
		if err != nil {
			t.Fatal(err)
		}
		if c := st.CachedInfo().Config; c.Storage != storage || c.AllowRollup {
			t.Errorf("rate limit bucket: storage %v, rollups %v; want %v, none", c.Storage, c.AllowRollup, storage)
		}
	}
	check(jetstream.FileStorage)
	if err := js.DeleteKeyValue(ctx, queue.BucketRateLimit); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.SetupBucket(ctx, js, queue.Layout{}, queue.BucketRateLimit); err != nil {
		t.Fatal(err)
	}
	check(jetstream.MemoryStorage)
}
