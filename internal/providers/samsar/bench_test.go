package samsar_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providers/samsar"
	"github.com/reelq/reelq/internal/providersim"
)

// BenchmarkPoll is one poll of a running task through the adapter and the
// HTTP client a worker gives it (a timeout, the guard), against the
// simulator in this process: the provider side of a poll's CPU and
// allocations (the simulator's included).
//
//	go test -run '^$' -bench Poll -benchmem ./internal/providers/samsar/
func BenchmarkPoll(b *testing.B) {
	sim := all.Simulator(map[string]providersim.Knobs{"samsar": {APIKey: "k", CompleteAfter: providersim.Duration(24 * time.Hour)}}, 1)
	defer sim.Close()
	srv := httptest.NewServer(sim)
	defer srv.Close()
	c := samsar.New(providers.Config{BaseURL: srv.URL + sim.Base("samsar"), APIKey: "k", RequestTimeout: time.Minute, AllowInsecure: true}, samsar.Options{})
	ctx := context.Background()
	task, err := c.Submit(ctx, providers.Request{JobID: "bench", Input: json.RawMessage(`{"prompt":"p","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":10}`)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		if st, err := c.Poll(ctx, task); err != nil || st.State != providers.Pending {
			b.Fatalf("poll = %+v, %v", st, err)
		}
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu_ns/op")
}

// processCPU is the CPU time this process used so far (user and system):
// on a shared host a steadier figure than the wall time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
