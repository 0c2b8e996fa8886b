package reelq_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/embedded"
	"github.com/reelq/reelq/internal/logging"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/ratelimit"
	"github.com/reelq/reelq/internal/wire"
	"github.com/reelq/reelq/internal/worker"
)

// Enqueue a job and wait for its result. Enqueueing it again is safe: the
// id is known with the same content, so nothing is published or paid twice.
func ExampleClient_Wait() {
	natsURL, stop := startReelq() // a NATS server with a worker; see below
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	client, err := reelq.NewClient(ctx, nc, reelq.Options{By: "orders-service"})
	if err != nil {
		log.Fatal(err)
	}

	job, err := reelq.NewJob("order-1234", reelq.SamsarInput{
		Prompt: "a red kite over dunes", ImageModel: "FLUX1.1PRO", VideoModel: "LUMA", Duration: 10,
	})
	if err != nil {
		log.Fatal(err)
	}
	job.Metadata = []byte(`{"order": 1234}`)
	if _, err := client.Enqueue(ctx, job); err != nil {
		log.Fatal(err)
	}
	res, err := client.Wait(ctx, job.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.ID, res.Status, len(res.Outputs), "output,", reelq.FormatCost(*res.Cost), string(res.Metadata))

	again, err := client.Enqueue(ctx, job)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(again.Status, again.Phase, again.Result.Status)
	// Output:
	// order-1234 succeeded 1 output, 100 credits {"order":1234}
	// known finished succeeded
}

// A service that must not miss a result consumes them through a durable
// consumer: each result is delivered until it is acknowledged, and a
// restart with the same Name resumes after the last acknowledged one.
func ExampleClient_Results() {
	natsURL, stop := startReelq()
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	client, err := reelq.NewClient(ctx, nc, reelq.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for id, prompt := range map[string]string{"kite": "a red kite", "lighthouse": "a lighthouse at dusk", "boat": "a paper boat"} {
		job, err := reelq.NewJob(id, reelq.SamsarInput{Prompt: prompt, ImageModel: "FLUX1.1PRO", VideoModel: "LUMA", Duration: 5})
		if err != nil {
			log.Fatal(err)
		}
		job.Batch = "spring"
		if _, err := client.Enqueue(ctx, job); err != nil {
			log.Fatal(err)
		}
	}

	handled := 0
	for d, err := range client.Results(ctx, reelq.ResultsOptions{Name: "main", Batch: "spring"}) {
		if err != nil {
			log.Fatal(err) // ctx ended, or the consumer could not be created
		}
		r := d.Result
		fmt.Println(r.ID, r.Status, reelq.FormatCost(*r.Cost)) // handle it (bill it, store the outputs) ...
		if err := d.Ack(ctx); err != nil {                     // ... then acknowledge it
			log.Fatal(err)
		}
		if handled++; handled == 3 {
			break // a service keeps ranging
		}
	}
	// Unordered output:
	// kite succeeded 50 credits
	// lighthouse succeeded 50 credits
	// boat succeeded 50 credits
}

// Enqueue a batch with progress, then wait for all of it. Jobs without an
// id get one from their content, so enqueueing the same batch again (after
// a crash, say) publishes nothing and pays nothing twice.
func ExampleClient_WaitAll() {
	natsURL, stop := startReelq()
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	client, err := reelq.NewClient(ctx, nc, reelq.Options{})
	if err != nil {
		log.Fatal(err)
	}

	var jobs []reelq.Job
	for i := range 10 {
		job, err := reelq.NewJob("", reelq.CambInput{Text: fmt.Sprintf("Chapter %d. The keeper lit the lamp.", i+1), SourceLanguage: 1})
		if err != nil {
			log.Fatal(err)
		}
		job.Batch = "audiobook"
		jobs = append(jobs, job)
	}
	enqueued, err := client.EnqueueBatch(ctx, jobs, reelq.BatchOptions{
		Progress: func(r reelq.EnqueueResult, done, total int) {
			if done == total {
				fmt.Printf("enqueued %d of %d\n", done, total)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	var ids []string
	for _, r := range enqueued {
		if r.Err != nil {
			log.Fatal(r.Err) // invalid, or the id is known with other content
		}
		ids = append(ids, r.ID)
	}
	byStatus, n := map[string]int{}, 0
	for r, err := range client.WaitAll(ctx, ids, reelq.WaitOptions{}) {
		if err != nil {
			log.Fatal(err)
		}
		byStatus[r.Status]++
		n++
	}
	fmt.Println(n, "results:", byStatus)

	again, err := client.EnqueueBatch(ctx, jobs, reelq.BatchOptions{})
	if err != nil {
		log.Fatal(err)
	}
	known := 0
	for _, r := range again {
		if r.Status == reelq.Known {
			known++
		}
	}
	fmt.Println("again:", known, "known")
	// Output:
	// enqueued 10 of 10
	// 10 results: map[succeeded:10]
	// again: 10 known
}

// Each provider's input as a Go value, encoded as the worker reads it.
// Validate checks an input with the worker's rules before anything is
// paid.
func ExampleNewJob() {
	for _, in := range []reelq.Input{
		reelq.SamsarInput{Prompt: "A lighthouse keeper finds a message in a bottle", ImageModel: "FLUX1.1PRO", VideoModel: "LUMA", Duration: 30, AspectRatio: "16:9"},
		reelq.SegmindInput{WorkflowID: "67ee7aecd4ffdb6b8c9315ea-v4", Inputs: map[string]any{"input_image": "https://example.com/a.png"}},
		reelq.VimmerseInput{TemplateID: "overlay_gray_5443", Title: "Spring walk", ImageURLs: []string{"https://example.com/person.png"},
			Options: map[string]any{"prompt": "Person is joyfully smiling and walking backward", "motion_type": "Auto"}},
		reelq.CambInput{Text: "Once upon a time, a lighthouse keeper found a bottle...", SourceLanguage: 1, NarratorVoiceID: 147320},
	} {
		job, err := reelq.NewJob("", in)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(job.Provider, string(job.Input))
	}

	fmt.Println(reelq.SamsarInput{Prompt: "a red kite", ImageModel: "FLUX1.1PRO", VideoModel: "LUMA", Duration: 300}.Validate())
	fmt.Println(reelq.CambInput{Text: "Once upon a time..."}.Validate())
	// Output:
	// samsar {"prompt":"A lighthouse keeper finds a message in a bottle","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":30,"aspect_ratio":"16:9"}
	// segmind {"input_image":"https://example.com/a.png","workflow_id":"67ee7aecd4ffdb6b8c9315ea-v4"}
	// vimmerse {"template_id":"overlay_gray_5443","options":{"motion_type":"Auto","prompt":"Person is joyfully smiling and walking backward"},"image_urls":["https://example.com/person.png"],"title":"Spring walk"}
	// camb {"text":"Once upon a time, a lighthouse keeper found a bottle...","source_language":1,"narrator_voice_id":147320}
	// reelq: invalid job: input.duration is 300 s; the limit is 120 s
	// reelq: invalid job: input.source_language is required (Camb language id, 1 = English)
}

// startReelq runs what the examples need and a real deployment runs
// elsewhere: an embedded NATS server with JetStream (data in a temporary
// directory), and startWorker's simulator and worker. It returns the
// server's URL and a function that stops them all and removes the data.
func startReelq() (natsURL string, stop func()) {
	dir, err := os.MkdirTemp("", "reelq-example-")
	must(err)
	s, err := embedded.Start(embedded.Options{Name: "example", Listen: "127.0.0.1:-1", StoreDir: dir})
	must(err)
	stopWorker := startWorker(s.ClientURL())
	return s.ClientURL(), func() {
		stopWorker()
		embedded.Stop(s)
		_ = os.RemoveAll(dir)
	}
}

// startWorker sets up reelq's streams and buckets on the server at
// natsURL and runs, in this process, the provider simulator over HTTP and
// one worker running all four providers against it. The returned
// function stops both.
func startWorker(natsURL string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	nc, err := nats.Connect(natsURL)
	must(err)
	js, err := jetstream.New(nc)
	must(err)
	must(queue.Setup(ctx, js, queue.Layout{}))

	key := func(p string) string { return "example-key-" + p + "-0123456789abcdef" }
	knobs := map[string]providersim.Knobs{}
	secrets := &logging.Secrets{}
	for _, p := range all.Names() {
		knobs[p] = providersim.Knobs{APIKey: key(p), CompleteAfter: providersim.Duration(20 * time.Millisecond)}
		secrets.Add(key(p))
	}
	sim := httptest.NewServer(all.Simulator(knobs, 1))

	rlKV, err := js.KeyValue(ctx, wire.BucketRateLimit)
	must(err)
	rts := map[string]*worker.Runtime{}
	for _, spec := range all.Specs {
		p := spec.Name()
		lim := ratelimit.New(ratelimit.NewKVStore(rlKV), p, ratelimit.Config{Rate: 200, Burst: 10})
		prov, err := spec.Build(providers.Config{BaseURL: sim.URL + spec.Sim.Base, APIKey: key(p), RequestTimeout: 10 * time.Second,
			HTTPClient: worker.HTTPClient(lim, 10*time.Second, 0)}, nil)
		must(err)
		rts[p] = &worker.Runtime{Provider: prov, Spec: spec, Limiter: lim, MaxInflight: 8, PollInterval: 20 * time.Millisecond,
			MaxPollInterval: 80 * time.Millisecond, RequestTimeout: 10 * time.Second}
	}
	w, err := worker.New(ctx, nc, js, worker.Config{WorkerID: "example", Logger: slog.New(slog.DiscardHandler), Secrets: secrets,
		AckWait: 10 * time.Second, RetryBase: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, PullWait: time.Second}, rts)
	must(err)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	return func() {
		cancel()
		if err := <-done; err != nil {
			log.Printf("worker: %v", err)
		}
		nc.Close()
		sim.Close()
	}
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
