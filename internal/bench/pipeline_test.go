package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/embedded"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/samsar"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/worker"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// instant is a zero-latency provider: every task is done at its first
// poll. It validates like Samsar so the jobs are real Samsar jobs.
type instant struct{ *samsar.Client }

func (instant) Submit(_ context.Context, req providers.Request) (providers.Task, error) {
	return providers.Task{ID: "t-" + req.JobID}, nil
}

func (instant) Poll(_ context.Context, t providers.Task) (providers.Status, error) {
	return providers.Status{State: providers.Succeeded, Outputs: []providers.Output{{URL: "https://example.invalid/" + t.ID + ".mp4"}}}, nil
}

// noLimit grants every call at once.
type noLimit struct{}

func (noLimit) Wait(context.Context) (time.Duration, error) { return 0, nil }
func (noLimit) Block(context.Context, time.Time) error      { return nil }

func job(i int) queue.Job {
	return queue.Job{ID: fmt.Sprintf("bench-%07d", i), Provider: "samsar", Batch: "bench",
		Input: json.RawMessage(fmt.Sprintf(`{"prompt":"benchmark shot %d","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":10}`, i))}
}

// BenchmarkPipeline measures, on one embedded server: raw async publish vs
// enqueue's publish path, and raw consume+publish+ack vs reelq's whole job
// path with a zero-latency provider. Run it with -benchtime 1x.
func BenchmarkPipeline(b *testing.B) {
	nPub := envInt("REELQ_BENCH_JOBS", 100000)
	nE2E := envInt("REELQ_BENCH_E2E_JOBS", 20000)
	sync := os.Getenv("REELQ_BENCH_SYNC") == "always"
	for range b.N {
		s, err := embedded.Start(embedded.Options{Name: "bench", Listen: "127.0.0.1:-1", StoreDir: b.TempDir(), SyncAlways: sync})
		if err != nil {
			b.Fatal(err)
		}
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
		ctx := context.Background()
		if err := queue.Setup(ctx, js, queue.Layout{}); err != nil {
			b.Fatal(err)
		}
		for _, name := range []string{"RAW", "RAWRES"} {
			subj := "raw.>"
			if name == "RAWRES" {
				subj = "rawres.>"
			}
			ret := jetstream.WorkQueuePolicy
			if name == "RAWRES" {
				ret = jetstream.LimitsPolicy
			}
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Retention: ret, Storage: jetstream.FileStorage, Duplicates: time.Hour}); err != nil {
				b.Fatal(err)
			}
		}
		jobs := make([]queue.Job, nPub)
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
					<-js.PublishAsyncComplete() // the window is full: let acks catch up
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

		// 2. enqueue's path: job state claim + job publish, windowed.
		kv, _ := js.KeyValue(ctx, queue.BucketJobs)
		prod := &queue.Producer{JS: js, States: jobstate.New(kv)}
		start = time.Now()
		outs, err := prod.Publish(ctx, jobs, nil)
		if err != nil {
			b.Fatal(err)
		}
		enqPub := float64(nPub) / time.Since(start).Seconds()
		for _, o := range outs {
			if o.Status != "published" {
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
		rawE2E := float64(nE2E) / time.Since(start).Seconds()
		cc.Stop()

		// 4. reelq: the whole job path with a zero-latency provider, timed
		// to the nE2E-th result (the rest of the backlog stays queued).
		rlKV, _ := js.KeyValue(ctx, queue.BucketRateLimit)
		var lim worker.Limiter = ratelimit.New(ratelimit.NewKVStore(rlKV), "samsar", ratelimit.Config{Rate: 1e6, Burst: 1000})
		if os.Getenv("REELQ_BENCH_LIMITER") == "off" {
			lim = noLimit{} // to see the limiter's share of the cost
		}
		rt := &worker.Runtime{
			Provider:     instant{samsar.New(providers.Config{}, samsar.Options{})},
			Limiter:      lim,
			MaxInflight:  256,
			PollInterval: time.Millisecond,
		}
		w, err := worker.New(ctx, nc, js, worker.Config{WorkerID: "bench", AckWait: time.Minute}, map[string]*worker.Runtime{"samsar": rt})
		if err != nil {
			b.Fatal(err)
		}
		results, _ := js.Stream(ctx, queue.StreamResults)
		wctx, stop := context.WithCancel(ctx)
		wdone := make(chan error, 1)
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
		reelqE2E := float64(nE2E) / time.Since(start).Seconds()
		stop()
		<-wdone
		b.StopTimer()

		b.ReportMetric(rawPub, "raw_pub_jobs/s")
		b.ReportMetric(enqPub, "enqueue_pub_jobs/s")
		b.ReportMetric(enqPub/rawPub, "pub_ratio")
		b.ReportMetric(rawE2E, "raw_e2e_jobs/s")
		b.ReportMetric(reelqE2E, "reelq_e2e_jobs/s")
		b.ReportMetric(reelqE2E/rawE2E, "e2e_ratio")
		b.Logf("sync_always=%v limiter=%s publish n=%d: raw %.0f/s, enqueue %.0f/s (x%.2f); end-to-end n=%d: raw %.0f/s, reelq %.0f/s (x%.3f)",
			sync, limiterMode(), nPub, rawPub, enqPub, enqPub/rawPub, nE2E, rawE2E, reelqE2E, reelqE2E/rawE2E)
		nc.Close()
		embedded.Stop(s)
	}
}

func limiterMode() string {
	if os.Getenv("REELQ_BENCH_LIMITER") == "off" {
		return "off"
	}
	return "kv"
}
