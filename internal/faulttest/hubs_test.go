package faulttest

import (
	"fmt"
	"maps"
	"testing"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
)

// The model hubs (fal, replicate) mixed into a batch: their jobs name a
// model and carry that model's input, and are held to the same
// guarantees as the others.

// hubs are the hub providers the mixed batches use.
var hubs = []string{"fal", "replicate"}

// withHubs adds to knobs (samsar's) the same knobs for the hubs.
func withHubs(knobs map[string]providersim.Knobs) map[string]providersim.Knobs {
	for _, p := range hubs {
		knobs[p] = knobs["samsar"]
	}
	return knobs
}

// hubEnv runs the hubs on the workers against the simulator at simURL,
// as fast as samsar. A job below P_HOLD_ABOVE is submitted again after a
// submission with an unknown outcome (the documented ambiguous window);
// the mixed jobs are priced below it.
func hubEnv(t testing.TB, simURL string) map[string]string {
	env := map[string]string{}
	for _, p := range hubs {
		spec, ok := all.Lookup(p)
		if !ok {
			t.Fatalf("no provider %s", p)
		}
		pre := spec.Kind.Prefix()
		maps.Copy(env, map[string]string{
			pre + "API_KEY": apiKey, pre + "BASE_URL": simURL + spec.Sim.Base, pre + "RATE": "200", pre + "BURST": "20",
			pre + "MAX_INFLIGHT": "4", pre + "POLL_INTERVAL": "100ms", pre + "MAX_POLL_INTERVAL": "300ms",
			pre + "REQUEST_TIMEOUT": "3s", pre + "HOLD_ABOVE": "5usd",
		})
	}
	return env
}

// hubJobs returns n jobs alternating between fal and replicate, whose
// prompts name them as samsarJobs' do (so samsarKey finds them).
func hubJobs(batch string, n int) []reelq.Job {
	jobs := make([]reelq.Job, n)
	for i := range jobs {
		id := fmt.Sprintf("%s-hub-%03d", batch, i)
		if i%2 == 0 {
			jobs[i] = reelq.Job{ID: id, Provider: "fal", Batch: batch, Input: []byte(fmt.Sprintf(
				`{"model":"fal-ai/kling-video/v2.1/master/text-to-video","input":{"prompt":%q,"duration":"5"}}`, samsarPrompt(id)))}
		} else {
			jobs[i] = reelq.Job{ID: id, Provider: "replicate", Batch: batch, Input: []byte(fmt.Sprintf(
				`{"model":"kwaivgi/kling-v2.5-turbo-pro","input":{"prompt":%q,"duration":5}}`, samsarPrompt(id)))}
		}
	}
	return jobs
}

// submissions is the simulator's paid submissions by prompt over
// providers (prompts name their job, so they do not collide).
func submissions(t testing.TB, s *sim, providers ...string) map[string]int {
	out := map[string]int{}
	for _, p := range providers {
		for k, v := range s.stats(t, p).Submissions {
			out[k] += v
		}
	}
	return out
}
