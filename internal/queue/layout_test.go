package queue_test

import (
	"context"
	"testing"
	"time"

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

	settings := queue.ConsumerSettings{MaxInflight: 3, AckWait: time.Minute}
	if _, err := queue.EnsureConsumer(ctx, js, "samsar", settings); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if _, err := js.PauseConsumer(ctx, queue.StreamJobs, "samsar", until); err != nil {
		t.Fatal(err)
	}

	// Same settings: nothing to update.
	if _, err := queue.EnsureConsumer(ctx, js, "samsar", settings); err != nil {
		t.Fatal(err)
	}
	settings.MaxInflight = 5
	c, err := queue.EnsureConsumer(ctx, js, "samsar", settings)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAckPending != 5 {
		t.Errorf("MaxAckPending = %d, want 5", info.Config.MaxAckPending)
	}
	if !info.Paused || info.Config.PauseUntil == nil || !info.Config.PauseUntil.Equal(until) {
		t.Errorf("after the update: paused=%v pause_until=%v, want paused until %v", info.Paused, info.Config.PauseUntil, until)
	}
}
