package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
)

// A provider whose failure message is a 3 MB log (over the server's
// max_payload, and under the 4 MiB of an answer the adapters read) gives one failed result with the message clipped and its
// escape sequences gone. (Before, the worker retried its state write
// "maximum payload exceeded" for as long as it ran, and never published
// a result.)
func TestOversizedProviderMessageIsClipped(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {FailRate: 1, FailMessageBytes: 3_000_000,
		CompleteAfter: providersim.Duration(10 * time.Millisecond)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {PollInterval: 20 * time.Millisecond}}})
	env.Enqueue(reelqtest.SamsarJob("loud"))
	rs := env.Results(1, 30*time.Second)["loud"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusFailed || rs[0].Error == nil || rs[0].Error.Code != reelq.CodeProviderFailed {
		t.Fatalf("loud: %+v, want one failed result with code provider_failed", rs)
	}
	msg := rs[0].Error.Message
	if len(msg) > providers.MaxStatusText+200 || !strings.Contains(msg, "Video generation failed") || strings.ContainsAny(msg, "\x1b\r\n") {
		t.Errorf("message is %d bytes (%.120q...), want the provider's text clipped to about %d bytes without control characters", len(msg), msg, providers.MaxStatusText)
	}
}

// A result that cannot fit in the job state (here: a bucket limited to 4
// KiB and a 7 KB output link) fails the run with result_too_large
// instead of retrying a write that can never succeed.
func TestResultTooLargeFailsTheRun(t *testing.T) {
	t.Parallel()
	long := "http://127.0.0.1:9/video.mp4?sig=" + strings.Repeat("a", 7000)
	const limit = 4 << 10
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {OutputURL: long, CompleteAfter: providersim.Duration(10 * time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := env.JS.Stream(ctx, "KV_"+queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = limit
	if _, err := env.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {PollInterval: 20 * time.Millisecond}}})
	env.Enqueue(reelqtest.SamsarJob("big"))
	rs := env.Results(1, 30*time.Second)["big"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusFailed || rs[0].Error == nil || rs[0].Error.Code != reelq.CodeResultTooLarge || len(rs[0].Outputs) != 0 {
		t.Fatalf("big: %d results, first %s with %d outputs and error %+v; want one failed result with code result_too_large and no outputs",
			len(rs), rs[0].Status, len(rs[0].Outputs), rs[0].Error)
	}
	st, _, err := env.States.Get(ctx, "big")
	if err != nil || st.Phase != reelq.PhaseFinished || st.Task == nil {
		t.Errorf("big's state: %+v, %v; want finished with its task", st, err)
	}
}
