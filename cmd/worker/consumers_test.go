package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
)

// flood sends n consumer creations on stream as id, 128 at a time, each
// waiting at most 300ms for an answer (a denied request gets none), and
// returns how many the server answered without an error.
func flood(id *ident, stream string, n int) int {
	var mu sync.Mutex
	created := 0
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("flood_%s_%d", id.user, i)
			body, _ := json.Marshal(map[string]any{"stream_name": stream, "config": map[string]any{
				"name": name, "ack_policy": "none", "inactive_threshold": int64(time.Hour), "mem_storage": true}})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			m, err := id.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.CREATE."+stream+"."+name, body)
			if err == nil && !strings.Contains(string(m.Data), `"error"`) {
				mu.Lock()
				created++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return created
}

// consumerCount is how many consumers stream has.
func consumerCount(t *testing.T, admin *ident, stream string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := mustStream(ctx, t, admin.js, stream).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Consumers
}

// One identity cannot take another's ability to follow results. The
// reviewer's read-only results identity created 1,000 durables on
// RESULTS (the server's limit per stream) and every producer's Wait and
// Follow failed; the dashboard identity did the same to the workers' slot
// watches. Here every client identity floods RESULTS (and the dashboard
// the slots, EVENTS and the job state) with 1,000 consumer creations:
// none is created. Then a worker starts (its slot, budget, cancel and pause
// watches), and the producer's Wait, Follow and WaitAll, the results
// identity's Follow and an archived output's download all work, leaving
// no consumer behind on any stream (they read by direct get): the only
// consumers a client role can hold are its declared durable, by exact
// name.
func TestConsumerExhaustion(t *testing.T) {
	t.Parallel()
	s, slog := startShippedServer(t)
	admin := connectAs(t, s, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := queue.Setup(ctx, admin.js, queue.Layout{Outputs: true}); err != nil {
		t.Fatal(err)
	}
	floods := map[string][]string{
		"results":   {queue.StreamResults},
		"producer":  {queue.StreamResults},
		"operator":  {queue.StreamResults},
		"forwarder": {queue.StreamResults},
		"dashboard": {queue.StreamResults, "KV_" + queue.BucketSlots, queue.StreamEvents, "KV_" + queue.BucketJobs},
	}
	var fw sync.WaitGroup
	for u, streams := range floods {
		id := connectAs(t, s, u)
		for _, stream := range streams {
			fw.Add(1)
			go func() {
				defer fw.Done()
				if n := flood(id, stream, 1000); n != 0 {
					t.Errorf("%s created %d consumers on %s", u, n, stream)
				}
			}()
		}
	}
	fw.Wait()
	for _, stream := range []string{queue.StreamResults, "KV_" + queue.BucketSlots, queue.StreamEvents, "KV_" + queue.BucketJobs} {
		if n := consumerCount(t, admin, stream); n != 0 {
			t.Errorf("%s has %d consumers after the floods", stream, n)
		}
	}

	_, simURL := simServer(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond)}}, nil)
	w := startOpsWorker(t, workerEnviron(s.ClientURL(), simURL, "exhaust-worker",
		"NATS_USER=worker", "NATS_PASSWORD="+shippedPasswords["worker"], "SAMSAR_API_KEY="+reelqtest.APIKey("samsar")))
	defer func() { _ = w.Stop() }()
	if code, body, _ := w.get("/readyz"); code != 200 {
		t.Fatalf("worker not ready: %d %s", code, body)
	}
	prod := connectAs(t, s, "producer").client(t)
	res := connectAs(t, s, "results").client(t)
	after, err := prod.ResultsSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Follows run while the jobs run; the streams are counted meanwhile.
	var wg sync.WaitGroup
	followed := make(chan string, 8)
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	for _, c := range []clients{prod, res} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d, err := range c.Results(fctx, reelq.ResultsOptions{After: after, Follow: true, FromNow: after == 0, Provider: "samsar"}) {
				if err != nil {
					return
				}
				followed <- d.Result.ID
			}
		}()
	}
	ids := []string{"exhaust-1", "exhaust-2"}
	if _, err := prod.EnqueueBatch(ctx, []reelq.Job{samsarJob(ids[0], "exhaust"), samsarJob(ids[1], "exhaust")}, reelq.BatchOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := reelqtest.WaitAll(ctx, prod.Client, ids, reelq.WaitOptions{From: after + 1})
	if err != nil || len(got) != 2 {
		t.Fatalf("producer: wait all: %v %v", got, err)
	}
	for _, id := range ids {
		if r, err := prod.Wait(ctx, id); err != nil || r.Status != reelq.StatusSucceeded {
			t.Errorf("producer: wait %s: %+v %v", id, r, err)
		}
	}
	seen := map[string]int{}
	for len(seen) < 2 || seen[ids[0]]+seen[ids[1]] < 4 {
		select {
		case id := <-followed:
			seen[id]++
		case <-ctx.Done():
			t.Fatalf("follows saw %v, want both jobs twice (producer and results)", seen)
		}
	}
	var cp *reelq.ArchivedCopy
	for _, o := range got[ids[0]].Outputs {
		cp = o.Archive
	}
	if cp == nil {
		t.Fatalf("no archived output: %+v", got[ids[0]])
	}
	if _, err := res.DownloadOutput(ctx, *cp, filepath.Join(t.TempDir(), "out.mp4"), nil); err != nil {
		t.Errorf("results: download an archived output: %v", err)
	}
	for _, stream := range []string{queue.StreamResults, queue.StreamEvents, "KV_" + queue.BucketJobs, "OBJ_reelq_outputs"} {
		if n := consumerCount(t, admin, stream); n != 0 {
			t.Errorf("%s has %d consumers while clients follow it, want none", stream, n)
		}
	}
	fcancel()
	wg.Wait()
	for _, line := range violations(slog, "reelq-test/producer") {
		if !strings.Contains(line, "CONSUMER.CREATE") {
			t.Errorf("the producer's Wait, WaitAll or Follow hit a permission violation: %s", line)
		}
	}
	for _, line := range violations(slog, "reelq-test/results") {
		if !strings.Contains(line, "CONSUMER.CREATE") {
			t.Errorf("the results identity's Follow hit a permission violation: %s", line)
		}
	}
}
