package main

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/samsar"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/worker"
)

// instant is a zero-latency provider: every task is done at its first
// poll. It validates and prices like Samsar, so the jobs are real Samsar
// jobs (internal/bench's provider of the same name).
type instant struct{ *samsar.Client }

func (instant) Submit(_ context.Context, req providers.Request) (providers.Task, error) {
	return providers.Task{ID: "t-" + req.JobID}, nil
}

func (instant) Poll(_ context.Context, t providers.Task) (providers.Status, error) {
	return providers.Status{State: providers.Succeeded, Outputs: []providers.Output{{URL: "https://example.invalid/" + t.ID + ".mp4"}}}, nil
}

// runReelq is reelq's real job path with every guarantee on, set up as
// internal/bench's BenchmarkPipeline sets it up: the client's EnqueueBatch
// (the pay-once known-id checks are its dedupe), then the worker
// (internal/worker; this module may import reelq's internal packages
// because its path is under github.com/reelq/reelq) with the cluster-wide
// rate limiter on KV, the job state written before and after the paid
// call, the result stored, published and acknowledged before the job's
// ack, slots, counters and the batch index. Done is the n-th result in
// the results stream.
func runReelq(o opts) result {
	dir, _ := os.MkdirTemp("", "peers-reelq-")
	defer os.RemoveAll(dir)
	srv := startNATS(o.natsBin, dir, o.natsSync)
	defer srv.stop()
	ctx := context.Background()
	nc, err := nats.Connect("nats://" + srv.addr)
	if err != nil {
		fatalf("%v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := queue.Setup(ctx, js, queue.Layout{}); err != nil {
		fatalf("%v", err)
	}
	jobs := make([]reelq.Job, o.jobs)
	for i := range jobs {
		jobs[i] = reelq.Job{ID: jobID(i), Provider: "samsar", Batch: "bench", Input: json.RawMessage(jobInput(i))}
	}
	client, err := reelq.NewClient(ctx, nc, reelq.Options{ProviderEnv: map[string]string{}})
	if err != nil {
		fatalf("%v", err)
	}
	m0 := markNow(srv)
	outs, err := client.EnqueueBatch(ctx, jobs, reelq.BatchOptions{})
	if err != nil {
		fatalf("enqueue: %v", err)
	}
	for _, out := range outs {
		if out.Status != reelq.Published {
			fatalf("job %s: %s %v", out.ID, out.Status, out.Err)
		}
	}

	wnc, err := nats.Connect("nats://" + srv.addr)
	if err != nil {
		fatalf("%v", err)
	}
	defer wnc.Close()
	wjs, _ := jetstream.New(wnc)
	rlKV, err := wjs.KeyValue(ctx, queue.BucketRateLimit)
	if err != nil {
		fatalf("%v", err)
	}
	lim := ratelimit.New(ratelimit.NewKVStore(rlKV), "samsar", ratelimit.Config{Rate: 1e6, Burst: 1000, Linger: ratelimit.DefaultLinger})
	rt := &worker.Runtime{
		Provider:     instant{samsar.New(providers.Config{}, samsar.Options{})},
		Limiter:      lim,
		MaxInflight:  o.conc,
		PollInterval: time.Millisecond,
	}
	w, err := worker.New(ctx, wnc, wjs, worker.Config{WorkerID: "bench", AckWait: time.Minute, Lookahead: 2000}, map[string]*worker.Runtime{"samsar": rt})
	if err != nil {
		fatalf("%v", err)
	}
	results, err := js.Stream(ctx, queue.StreamResults)
	if err != nil {
		fatalf("%v", err)
	}
	wctx, stop := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	st0 := wnc.Stats()
	m1 := markNow(srv)
	go func() { wdone <- w.Run(wctx) }()
	for {
		info, err := results.Info(ctx)
		if err != nil {
			fatalf("%v", err)
		}
		if info.State.Msgs >= uint64(o.jobs) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling the results stream's count, as BenchmarkPipeline does
	}
	m2 := markNow(srv)
	st := wnc.Stats()
	stop()
	<-wdone
	// The dedupe, checked untimed: a finished job's id is known.
	if again, err := client.EnqueueBatch(ctx, jobs[:1], reelq.BatchOptions{}); err != nil || again[0].Status != reelq.Known {
		fatalf("dedupe: enqueueing %s again: %+v %v", jobs[0].ID, again, err)
	}
	r := phases(m0, m1, m2)
	r.MsgsPerJob = float64(st.InMsgs-st0.InMsgs+st.OutMsgs-st0.OutMsgs) / float64(o.jobs)
	return r
}
