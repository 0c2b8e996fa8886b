package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/samsar"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/tally"
	"github.com/reelq/reelq/internal/wire"
	"github.com/reelq/reelq/internal/worker"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// instant is a zero-latency provider: every task is done at its first
// poll. It validates and prices like Samsar, so the jobs are real Samsar
// jobs.
type instant struct{ *samsar.Client }

func (instant) Submit(_ context.Context, req providers.Request) (providers.Task, error) {
	return providers.Task{ID: "t-" + req.JobID}, nil
}

func (instant) Poll(_ context.Context, t providers.Task) (providers.Status, error) {
	return providers.Status{State: providers.Succeeded, Outputs: []providers.Output{{URL: "https://example.invalid/" + t.ID + ".mp4"}}}, nil
}

func job(i int) reelq.Job {
	return reelq.Job{ID: fmt.Sprintf("bench-%07d", i), Provider: "samsar", Batch: "bench",
		Input: json.RawMessage(fmt.Sprintf(`{"prompt":"benchmark shot %d of a long series of shots","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":10}`, i))}
}

// BenchmarkPipeline measures, on one server, in the same run: raw
// JetStream async publish against the client's EnqueueBatch (with its
// known-id checks), and raw consume + publish + ack against reelq's whole
// job path with a zero-latency provider and every guarantee on: the
// cluster-wide rate limiter on KV, the job state written before and after
// the paid call, the result stored, published and acknowledged before the
// job is acked, slots, counters and the batch index. It reports rates,
// ratios to raw, NATS messages per job on each side (the worker's
// connection over the job path, the client's over the enqueue; in and
// out, from nc.Stats()) and CPU per job.
// Run it with -benchtime 1x; see doc.go for the knobs.
func BenchmarkPipeline(b *testing.B) {
	nPub := envInt("REELQ_BENCH_JOBS", 100000)
	nE2E := envInt("REELQ_BENCH_E2E_JOBS", 20000)
	for range b.N {
		srv := startServer(b)
		nc, err := nats.Connect(srv.url)
		if err != nil {
			b.Fatal(err)
		}
		js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
		ctx := context.Background()
		if err := queue.Setup(ctx, js, queue.Layout{}); err != nil {
			b.Fatal(err)
		}
		for _, name := range []string{"RAW", "RAWRES"} {
			subj, ret := "raw.>", jetstream.WorkQueuePolicy
			if name == "RAWRES" {
				subj, ret = "rawres.>", jetstream.LimitsPolicy
			}
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Retention: ret, Storage: jetstream.FileStorage, Duplicates: time.Hour}); err != nil {
				b.Fatal(err)
			}
		}
		jobs := make([]reelq.Job, nPub)
		payloads := make([][]byte, nPub)
		for i := range jobs {
			jobs[i] = job(i)
			payloads[i], _ = json.Marshal(jobs[i])
		}

		// 1. Raw JetStream async publish with message ids.
		b.ResetTimer()
		start := time.Now()
		for i, p := range payloads {
			for {
				_, err := js.PublishAsync("raw.samsar."+jobs[i].ID, p, jetstream.WithMsgID(jobs[i].ID))
				if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
					<-js.PublishAsyncComplete()
					continue
				}
				if err != nil {
					b.Fatal(err)
				}
				break
			}
		}
		<-js.PublishAsyncComplete()
		rawPub := float64(nPub) / time.Since(start).Seconds()

		// 2. The client's enqueue: known-id checks (job state and queue,
		// batched) and the job publish, windowed.
		client, err := reelq.NewClient(ctx, nc, reelq.Options{ProviderEnv: map[string]string{}})
		if err != nil {
			b.Fatal(err)
		}
		if f := os.Getenv("REELQ_BENCH_ENQUEUE_CPUPROFILE"); f != "" {
			pf, err := os.Create(f)
			if err != nil {
				b.Fatal(err)
			}
			_ = pprof.StartCPUProfile(pf)
			defer pf.Close()
		}
		cst0 := nc.Stats()
		start = time.Now()
		outs, err := client.EnqueueBatch(ctx, jobs, reelq.BatchOptions{})
		cst := nc.Stats()
		if os.Getenv("REELQ_BENCH_ENQUEUE_CPUPROFILE") != "" {
			pprof.StopCPUProfile()
		}
		if err != nil {
			b.Fatal(err)
		}
		enqPub := float64(nPub) / time.Since(start).Seconds()
		for _, o := range outs {
			if o.Status != reelq.Published {
				b.Fatalf("job %s: %s %v", o.ID, o.Status, o.Err)
			}
		}

		// 3. Raw consume + publish result + ack, on nE2E messages.
		cons, err := js.CreateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4000})
		if err != nil {
			b.Fatal(err)
		}
		var done atomic.Int64
		finished := make(chan struct{})
		rst0 := nc.Stats()
		cpu0, rawSrv0 := cpuTime(), srv.cpu()
		start = time.Now()
		cc, err := cons.Consume(func(m jetstream.Msg) {
			md, _ := m.Metadata()
			for {
				_, err := js.PublishAsync("rawres.samsar."+strconv.FormatUint(md.Sequence.Stream, 10), m.Data(), jetstream.WithMsgID("r"+strconv.FormatUint(md.Sequence.Stream, 10)))
				if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
					<-js.PublishAsyncComplete()
					continue
				}
				if err != nil {
					b.Error(err)
				}
				break
			}
			_ = m.Ack()
			if done.Add(1) == int64(nE2E) {
				close(finished)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		<-finished
		<-js.PublishAsyncComplete()
		rawSecs := time.Since(start).Seconds()
		rawE2E := float64(nE2E) / rawSecs
		rawCPU := cpuTime() - cpu0
		rawSrvCPU := srv.cpu() - rawSrv0
		rst := nc.Stats()
		rawMsgs := float64((rst.InMsgs-rst0.InMsgs)+(rst.OutMsgs-rst0.OutMsgs)) / float64(nE2E)
		cc.Stop()

		// 4. reelq: the whole job path, timed to the nE2E-th result.
		wnc, err := nats.Connect(srv.url)
		if err != nil {
			b.Fatal(err)
		}
		wjs, _ := jetstream.New(wnc)
		rlKV, _ := wjs.KeyValue(ctx, queue.BucketRateLimit)
		lim := ratelimit.New(ratelimit.NewKVStore(rlKV), "samsar", ratelimit.Config{Rate: 1e6, Burst: 1000, Linger: ratelimit.DefaultLinger})
		rt := &worker.Runtime{
			Provider:     instant{samsar.New(providers.Config{}, samsar.Options{})},
			Limiter:      lim,
			MaxInflight:  256,
			PollInterval: time.Millisecond,
		}
		w, err := worker.New(ctx, wnc, wjs, worker.Config{WorkerID: "bench", AckWait: time.Minute, Lookahead: 2000}, map[string]*worker.Runtime{"samsar": rt})
		if err != nil {
			b.Fatal(err)
		}
		results, _ := js.Stream(ctx, queue.StreamResults)
		wctx, stop := context.WithCancel(ctx)
		wdone := make(chan error, 1)
		if f := os.Getenv("REELQ_BENCH_CPUPROFILE"); f != "" {
			// Profile the reelq phase alone.
			pf, err := os.Create(f)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.StartCPUProfile(pf); err != nil {
				b.Fatal(err)
			}
			defer pf.Close()
		}
		st0 := wnc.Stats()
		cpu0, srv0 := cpuTime(), srv.cpu()
		start = time.Now()
		go func() { wdone <- w.Run(wctx) }()
		for {
			info, err := results.Info(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if info.State.Msgs >= uint64(nE2E) {
				break
			}
			time.Sleep(20 * time.Millisecond) // polling an external counter, not waiting for an event
		}
		secs := time.Since(start).Seconds()
		reelqE2E := float64(nE2E) / secs
		cpu, srvCPU := cpuTime()-cpu0, srv.cpu()-srv0
		st := wnc.Stats()
		// The done and spend counts: how long after the nE2E-th result
		// the worker's fold (off the job path) has counted it.
		foldLag := foldCatchUp(b, ctx, js, results, start, secs)
		pprof.StopCPUProfile()
		stop()
		<-wdone
		b.StopTimer()
		// Messages per job on each side: the worker's connection over the
		// job path (in: deliveries, acknowledgements of its writes, KV
		// reads; out: its writes, acks, requests) and the client's over
		// the enqueue.
		wIn, wOut := float64(st.InMsgs-st0.InMsgs)/float64(nE2E), float64(st.OutMsgs-st0.OutMsgs)/float64(nE2E)
		cIn, cOut := float64(cst.InMsgs-cst0.InMsgs)/float64(nPub), float64(cst.OutMsgs-cst0.OutMsgs)/float64(nPub)
		msgs := wIn + wOut
		foldMsgs, foldCPU, foldRate := measureFold(b, ctx, srv.url, js)
		lstats := lim.Stats()

		b.ReportMetric(rawPub, "raw_pub_jobs/s")
		b.ReportMetric(enqPub, "enqueue_pub_jobs/s")
		b.ReportMetric(enqPub/rawPub, "pub_ratio")
		b.ReportMetric(rawE2E, "raw_e2e_jobs/s")
		b.ReportMetric(reelqE2E, "reelq_e2e_jobs/s")
		b.ReportMetric(reelqE2E/rawE2E, "e2e_ratio")
		b.ReportMetric(msgs, "nats_msgs/job")
		b.ReportMetric(rawMsgs, "raw_msgs/job")
		b.ReportMetric(wIn, "worker_msgs_in/job")
		b.ReportMetric(wOut, "worker_msgs_out/job")
		b.ReportMetric(cIn, "enqueue_msgs_in/job")
		b.ReportMetric(cOut, "enqueue_msgs_out/job")
		b.ReportMetric(cpu.Seconds()*1e3/float64(nE2E), "cpu_ms/job")
		b.ReportMetric(float64(foldLag.Milliseconds()), "fold_lag_ms")
		b.ReportMetric(foldMsgs, "fold_msgs/job")
		b.ReportMetric(foldCPU, "fold_cpu_ms/job")
		b.ReportMetric(foldRate, "fold_results/s")
		b.Logf("server=%s sync_always=%v publish n=%d: raw %.0f/s, enqueue %.0f/s (x%.2f); end-to-end n=%d: raw %.0f/s, reelq %.0f/s (x%.3f)",
			srv.kind, srv.sync, nPub, rawPub, enqPub, enqPub/rawPub, nE2E, rawE2E, reelqE2E, reelqE2E/rawE2E)
		b.Logf("per job: %.1f NATS messages at the worker (%.2f in, %.2f out), %.2f at the client's enqueue (%.2f in, %.2f out), %.2f on the raw path; CPU %.3f ms in this process (raw path %.3f ms), %.3f ms in the server (raw %.3f ms); limiter: %d reads, %d writes for %d tokens",
			msgs, wIn, wOut, cIn+cOut, cIn, cOut, rawMsgs, cpu.Seconds()*1e3/float64(nE2E), rawCPU.Seconds()*1e3/float64(nE2E), srvCPU.Seconds()*1e3/float64(nE2E),
			rawSrvCPU.Seconds()*1e3/float64(nE2E), lstats.Reads, lstats.Writes, lstats.Granted)
		b.Logf("done and spend counts: folded %s after the %d-th result; the fold alone, over every result stored: %.2f NATS messages and %.3f ms CPU per result, %.0f results/s",
			foldLag.Round(time.Millisecond), nE2E, foldMsgs, foldCPU, foldRate)
		wnc.Close()
		nc.Close()
		srv.stop()
	}
}

// foldCatchUp waits until the tallies are folded through RESULTS' last
// sequence and returns how long after the last result (secs after start)
// that was.
func foldCatchUp(b *testing.B, ctx context.Context, js jetstream.JetStream, results jetstream.Stream, start time.Time, secs float64) time.Duration {
	info, err := results.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, wire.BucketTallies)
	if err != nil {
		b.Fatal(err)
	}
	for {
		if e, err := kv.Get(ctx, wire.TallyThroughKey); err == nil {
			if _, through := tally.Decode(e.Value()); through >= info.State.LastSeq {
				return time.Since(start) - time.Duration(secs*float64(time.Second))
			}
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatal("the fold did not catch up with the results")
		}
		time.Sleep(5 * time.Millisecond) // polling an external counter, as above
	}
}

// measureFold folds every result stored again from an empty tallies
// bucket, alone (the worker stopped), on a connection of its own, and
// returns its NATS messages and CPU (ms) per result and its rate: what
// counting a job costs now that it is off the job path.
func measureFold(b *testing.B, ctx context.Context, url string, js jetstream.JetStream) (msgs, cpuMS, rate float64) {
	tallies, err := js.Stream(ctx, "KV_"+wire.BucketTallies)
	if err != nil {
		b.Fatal(err)
	}
	if err := tallies.Purge(ctx); err != nil {
		b.Fatal(err)
	}
	results, err := js.Stream(ctx, queue.StreamResults)
	if err != nil {
		b.Fatal(err)
	}
	info, err := results.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	fnc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer fnc.Close()
	fjs, _ := jetstream.New(fnc)
	kv, err := fjs.KeyValue(ctx, wire.BucketTallies)
	if err != nil {
		b.Fatal(err)
	}
	f := &tally.Folder{Store: &store.Store{NC: fnc, JS: fjs, Timeout: 10 * time.Second}, KV: kv, Holder: "bench-fold", Interval: 10 * time.Millisecond}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	st0, cpu0, start := fnc.Stats(), cpuTime(), time.Now()
	go func() {
		defer close(done)
		f.Run(fctx)
	}()
	foldCatchUp(b, ctx, js, results, start, 0)
	secs, cpu, st := time.Since(start).Seconds(), cpuTime()-cpu0, fnc.Stats()
	stop()
	<-done
	n := float64(info.State.Msgs)
	return float64((st.InMsgs-st0.InMsgs)+(st.OutMsgs-st0.OutMsgs)) / n, cpu.Seconds() * 1e3 / n, n / secs
}
