package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
)

// TestHubModelJobs runs model-hub jobs (fal, Replicate) through the
// worker: a priced job succeeds with its estimate as cost; a job whose
// model has no price succeeds without a cost (no unit-less cost in the
// result); a job whose input breaks its model's schema, published by a
// producer that skipped validation, fails once as invalid_input and costs
// no call to the provider (the simulator's counter).
func TestHubModelJobs(t *testing.T) {
	t.Parallel()
	fast := providersim.Knobs{CompleteAfter: providersim.Duration(100 * time.Millisecond)}
	env := reelqtest.New(t, map[string]providersim.Knobs{"fal": fast, "replicate": fast})
	w := env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"fal": {}, "replicate": {}}})
	defer w.Stop()
	env.Enqueue(
		reelq.Job{ID: "fal-priced", Provider: "fal", Input: []byte(`{"model":"fal-ai/kling-video/v2.1/master/text-to-video","input":{"prompt":"a kite","duration":"10"}}`)},
		reelq.Job{ID: "fal-unpriced", Provider: "fal", Input: []byte(`{"model":"fal-ai/veo3","input":{"prompt":"a kite"}}`)},
		reelq.Job{ID: "rep-priced", Provider: "replicate", Input: []byte(`{"model":"kwaivgi/kling-v2.5-turbo-pro","input":{"prompt":"a kite","duration":5}}`)},
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, bad := range []reelq.Job{
		{ID: "fal-bad", Provider: "fal", Input: []byte(`{"model":"fal-ai/veo3","input":{"prompt":"a kite","duration":"5s"}}`)},
		{ID: "rep-bad", Provider: "replicate", Input: []byte(`{"model":"kwaivgi/kling-v2.5-turbo-pro","input":{"duration":7}}`)},
	} {
		if _, err := env.JS.PublishMsg(ctx, reelqtest.JobMsg(&bad), jetstream.WithMsgID(bad.ID)); err != nil {
			t.Fatal(err)
		}
	}
	results := env.Results(5, time.Minute)
	one := func(id string) reelq.Result {
		t.Helper()
		if len(results[id]) != 1 {
			t.Fatalf("%s: %d results, want 1", id, len(results[id]))
		}
		return results[id][0]
	}
	for id, amount := range map[string]float64{"fal-priced": 2.8, "rep-priced": 0.35} {
		if r := one(id); r.Status != reelq.StatusSucceeded || r.Cost == nil || r.Cost.Amount != amount || r.Cost.Unit != "usd" || len(r.Outputs) != 1 {
			t.Errorf("%s: %+v (cost %+v), want succeeded with one output at $%g", id, r, r.Cost, amount)
		}
	}
	if r := one("fal-unpriced"); r.Status != reelq.StatusSucceeded || r.Cost != nil {
		t.Errorf("fal-unpriced: %+v (cost %+v), want succeeded without a cost", r, r.Cost)
	}
	for id, field := range map[string]string{"fal-bad": "input.input.duration", "rep-bad": "input.input: missing property 'prompt'"} {
		r := one(id)
		if r.Status != reelq.StatusFailed || r.Error == nil || r.Error.Code != "invalid_input" || r.Attempts != 1 || !strings.Contains(r.Error.Message, field) {
			t.Errorf("%s: %+v (error %+v), want one failed attempt, invalid_input naming %s", id, r, r.Error, field)
		}
	}
	for _, p := range []string{"fal", "replicate"} {
		st := env.Sim.Stats(0)[p]
		if n := st.Requests["submit 200"] + st.Requests["submit 201"] + st.Requests["submit 422"]; st.Tasks != map[string]int{"fal": 2, "replicate": 1}[p] || n != st.Tasks {
			t.Errorf("%s: %d tasks, submits %v: a job that broke its schema reached the provider", p, st.Tasks, st.Requests)
		}
	}
}

// falJob and replicateJob are priced hub jobs whose prompts name them
// (hubPrompt), so simulator submission counts can be matched to jobs.
func falJob(id string) reelq.Job {
	return reelq.Job{ID: id, Provider: "fal", Batch: "test", Input: []byte(
		`{"model":"fal-ai/kling-video/v2.1/master/text-to-video","input":{"prompt":"` + hubPrompt(id) + `","duration":"5"}}`)}
}

func replicateJob(id string) reelq.Job {
	return reelq.Job{ID: id, Provider: "replicate", Batch: "test", Input: []byte(
		`{"model":"kwaivgi/kling-v2.5-turbo-pro","input":{"prompt":"` + hubPrompt(id) + `","duration":5}}`)}
}

func hubPrompt(id string) string { return "a kite over dunes, job " + id }

// TestReplicateCreate5xxIsAmbiguous checks a Replicate create answered
// with a 5xx is a submission with an unknown outcome (Replicate's own
// clients never retry a create after one: the prediction may exist), not
// a plain retry: it is counted, the job (below P_HOLD_ABOVE) submitted
// again, and its result says pay_once best_effort.
func TestReplicateCreate5xxIsAmbiguous(t *testing.T) {
	t.Parallel()
	knobs := providersim.Knobs{CompleteAfter: providersim.Duration(100 * time.Millisecond), ErrorRate: 1}
	env := reelqtest.New(t, map[string]providersim.Knobs{"replicate": knobs})
	ambiguous := env.Events("events.replicate." + reelq.EventAmbiguousSubmit)
	w := env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"replicate": {}}})
	defer w.Stop()
	env.Enqueue(replicateJob("r5xx"))
	if ev := env.NextEvent(ambiguous, 30*time.Second); ev.JobID != "r5xx" {
		t.Fatalf("ambiguous_submit event %+v, want job r5xx", ev)
	}
	knobs.ErrorRate = 0
	if err := env.Sim.SetKnobs("replicate", knobs); err != nil {
		t.Fatal(err)
	}
	r := env.Results(1, time.Minute)["r5xx"]
	if len(r) != 1 || r[0].Status != reelq.StatusSucceeded || r[0].PayOnce != reelq.PayOnceBestEffort {
		t.Fatalf("result %+v, want one succeeded result with pay_once best_effort", r)
	}
	st, _, err := env.States.Get(context.Background(), "r5xx")
	if err != nil || st.AmbiguousSubmits < 1 {
		t.Errorf("state %+v, %v: want the 5xx counted as an ambiguous submission", st, err)
	}
}
