package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/worker"
)

// A job waiting for a poll at least a second away sheds its message and
// its state (shed.go), and nothing a user sees changes: its heartbeats
// and its ack, sent by the message's reply subject, keep it delivered once
// past several AckWaits; the resubmission an output check asks for, made
// after the job read its state back, sends the job's original input; the
// result carries the job's metadata.
func TestShedJobKeepsItsDeliveryInputAndMetadata(t *testing.T) {
	t.Parallel()
	// AckWait 1 s: heartbeats every 250 ms; each poll is 2 s away.
	env := startOutputRetry(t, worker.Config{AckWait: time.Second}, reelqtest.Settings{PollInterval: 2 * time.Second, MaxPollInterval: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	j := reelqtest.SamsarJob("shed")
	j.Metadata = json.RawMessage(`{"order":"shed-1","note":"echoed in the result"}`)
	env.Enqueue(j)
	rs := env.Results(1, time.Minute)[j.ID]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || rs[0].OutputRetries != 1 {
		t.Fatalf("%s: %+v, want one success after one output retry", j.ID, rs)
	}
	if string(rs[0].Metadata) != string(j.Metadata) {
		t.Errorf("result metadata %s, want the job's %s", rs[0].Metadata, j.Metadata)
	}
	tasks := env.Sim.Tasks("samsar")
	if len(tasks) != 2 {
		t.Fatalf("the simulator lists %d tasks, want 2", len(tasks))
	}
	for i, task := range tasks {
		if task.Key != reelqtest.SamsarPrompt(j.ID) {
			t.Errorf("submission %d sent prompt %q, want the job's %q", i+1, task.Key, reelqtest.SamsarPrompt(j.ID))
		}
	}
	st, _, err := env.States.Get(ctx, j.ID)
	if err != nil || string(st.Input) != string(j.Input) || string(st.Metadata) != string(j.Metadata) {
		t.Errorf("stored state %+v (%v): want the job's input and metadata kept", st, err)
	}
	waitfor.Until(t, 10*time.Second, "the message acked", func() error {
		if info := env.ConsumerInfo("samsar"); info.NumAckPending != 0 || info.NumRedelivered != 0 || info.Delivered.Consumer != 1 {
			return fmt.Errorf("ack pending %d, redelivered %d, delivered %d; want 0, 0, 1", info.NumAckPending, info.NumRedelivered, info.Delivered.Consumer)
		}
		return nil
	})
}
