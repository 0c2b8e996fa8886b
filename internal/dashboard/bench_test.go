package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/dashboard"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/wire"
)

// benchStates is how many job states the page-load benchmark keeps in
// reelq_jobs.
const benchStates = 1_000_000

// A page load with 1,000,000 job states kept answers in well under 300 ms:
// no page scans the states, and the job list reads at most 20,000 of them
// a page. The states belong to one batch of 1,000,000 jobs (its index
// holds them all, its counters say 600,000 done) and 20 others, 10 of
// them held; the DLQ holds 100 dead letters.
//
//	go test -run '^$' -bench PageLoad -benchtime 20x ./internal/dashboard/
func BenchmarkPageLoad(b *testing.B) {
	s := natstest.Server(b)
	nc, js := natstest.Connect(b, s)
	natstest.Setup(b, js)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, p := range reelq.Providers {
		if _, err := queue.EnsureConsumers(ctx, js, p, queue.ConsumerSettings{}); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	seed(b, ctx, js)
	b.Logf("seeded %d job states in %s", benchStates, time.Since(start).Round(time.Millisecond))

	c, err := reelq.NewClient(ctx, nc, reelq.Options{ProviderEnv: map[string]string{}, By: "dashboard", ConsumerPrefix: "dashboard"})
	if err != nil {
		b.Fatal(err)
	}
	ins, err := inspect.New(ctx, nc, reelq.Options{By: "dashboard", ConsumerPrefix: "dashboard"})
	if err != nil {
		b.Fatal(err)
	}
	d, err := dashboard.New(dashboard.Config{Client: c, Inspector: ins, NC: nc, ListenHost: "127.0.0.1", Auth: dashboard.Auth{Token: testToken}})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(d)
	defer hs.Close()
	// The job list: unfiltered, deep in the stream (a cursor half way),
	// by provider, by a common state, by a state no job has (the bounded
	// scan: 20,000 states read, then "continue"), a rare one (1 job in
	// 100,000), the last hour, a small batch and the big one by state.
	pages := []string{"/", "/batches/big", "/batches/big?from=500.0", "/jobs/big-0777777", "/dlq",
		"/jobs", "/jobs?before=500000", "/jobs?provider=segmind", "/jobs?state=succeeded&provider=camb", "/jobs?state=submitting",
		"/jobs?state=held", "/jobs?since=1h", "/jobs?batch=small-3", "/jobs?batch=big&state=queued&provider=vimmerse"}
	for _, page := range pages {
		b.Run(page, func(b *testing.B) {
			var worst time.Duration
			for b.Loop() {
				t0 := time.Now()
				resp, err := http.Get(hs.URL + page)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n == 0 {
					b.Fatalf("GET %s: %d", page, resp.StatusCode)
				}
				worst = max(worst, time.Since(t0))
			}
			mean := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(mean.Microseconds())/1000, "ms/page")
			b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
			if mean > 300*time.Millisecond {
				b.Errorf("GET %s takes %s on average with %d job states, want under 300ms", page, mean, benchStates)
			}
		})
	}
}

// seed writes the job states, the batch index and counters, a few results
// and dead letters, as the workers would.
func seed(b *testing.B, ctx context.Context, js jetstream.JetStream) {
	b.Helper()
	now := time.Now().UTC()
	futures := make(chan jetstream.PubAckFuture, 8192)
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				errs <- err
				for range futures {
				}
				return
			}
		}
	}()
	pub := func(subj string, data []byte, hdr nats.Header) {
		for {
			f, err := js.PublishMsgAsync(&nats.Msg{Subject: subj, Data: data, Header: hdr})
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				// A loaded host: wait for the server to catch up.
				select {
				case <-js.PublishAsyncComplete():
				case <-time.After(time.Second):
				}
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			futures <- f
			return
		}
	}
	chunk := make([]string, 0, 1000)
	for i := range benchStates {
		batch, id := "big", fmt.Sprintf("big-%07d", i)
		if i%50_000 == 0 && i > 0 {
			batch, id = "small-"+strconv.Itoa(i/50_000), fmt.Sprintf("small-%07d", i)
		}
		st := reelq.JobState{ID: id, Provider: reelq.Providers[i%4], Batch: batch, Phase: reelq.PhaseQueued, Run: 1,
			Input: json.RawMessage(`{"prompt":"a lighthouse at dusk","duration":5}`), UpdatedAt: now, Attempts: 0}
		if i%100_000 == 77 {
			st.Phase, st.HeldReason = reelq.PhaseHeld, "no answer to the submission"
			pub(wire.HeldMarkerSubject(st.Provider, id), nil, nats.Header{"Nats-Incr": {"+1"}})
		} else if i%10 < 6 {
			res, _ := json.Marshal(reelq.Result{ID: id, Provider: st.Provider, Batch: batch, Run: 1, Status: reelq.StatusSucceeded,
				ProviderTaskID: "task-" + id, CompletedAt: now, Cost: &reelq.Cost{Amount: 50, Unit: "credits"}})
			st.Phase, st.Task, st.Result = reelq.PhaseFinished, &reelq.Task{ID: "task-" + id}, res
		}
		data, _ := json.Marshal(st)
		pub("$KV."+wire.BucketJobs+"."+id, data, nil)
		if batch == "big" {
			chunk = append(chunk, id)
			if len(chunk) == cap(chunk) {
				idx, _ := json.Marshal(chunk)
				pub(wire.BatchIndexSubject("big"), idx, nil)
				chunk = chunk[:0]
			}
		}
	}
	incr := func(subj string, n int) {
		pub(subj, nil, nats.Header{"Nats-Incr": {"+" + strconv.Itoa(n)}})
	}
	incr(wire.BatchCounterSubject("big", "enqueued"), benchStates-19)
	incr(wire.BatchCounterSubject("big", "done_succeeded"), 600_000)
	for i := 1; i < 20; i++ {
		incr(wire.BatchCounterSubject("small-"+strconv.Itoa(i), "enqueued"), 1)
	}
	for i := range 100 {
		pub(wire.DLQSubject("samsar", fmt.Sprintf("dead-%d", i)), []byte(`{"id":"x"}`), nats.Header{"Reelq-Error-Code": {"invalid_request"}, "Reelq-Error": {"unreadable"}})
		res, _ := json.Marshal(reelq.Result{ID: fmt.Sprintf("big-%07d", i), Provider: "samsar", Batch: "big", Run: 1, Status: reelq.StatusSucceeded, CompletedAt: now})
		pub(wire.ResultSubject("samsar", fmt.Sprintf("big-%07d", i)), res, nil)
	}
	close(futures)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal(ctx.Err())
	}
}
