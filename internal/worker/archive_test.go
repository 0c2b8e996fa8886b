package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/archive"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/worker"
)

// A succeeded job's outputs are copied into the object store before its
// result is published: the result keeps the provider's link and gains the
// archived copy, whose bytes and sha256 are the provider's file.
func TestOutputsArchivedBeforeResult(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{
		"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond)},
		"camb":   {CompleteAfter: providersim.Duration(50 * time.Millisecond)},
	})
	env.StartWorker(reelqtest.WorkerOptions{Archive: true, Providers: map[string]reelqtest.Settings{"samsar": {}, "camb": {}}})
	jobs := []reelq.Job{reelqtest.SamsarJob("arch-video"),
		{ID: "arch-audio", Provider: "camb", Input: []byte(`{"text":"Once upon a time, a lighthouse keeper found a bottle.","source_language":1}`)}}
	env.Enqueue(jobs...)
	results := env.Results(len(jobs), time.Minute)
	store, err := archive.NewJetStreamStore(context.Background(), env.JS, archive.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		rs := results[j.ID]
		if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || len(rs[0].Outputs) == 0 {
			t.Fatalf("%s: %+v, want one success with outputs", j.ID, rs)
		}
		for i, o := range rs[0].Outputs {
			if o.Archive == nil {
				t.Fatalf("%s output %d: no archived copy (archive_error %q)", j.ID, i, o.ArchiveError)
			}
			if o.URL == "" || o.Archive.Key != archive.Key(j.ID, 1, i) || o.Archive.Store != "jetstream" || o.Archive.Size <= 0 {
				t.Errorf("%s output %d: %+v", j.ID, i, o)
			}
			// The archived bytes are the provider's file.
			want := fetch(t, o.URL)
			r, _, err := store.Open(context.Background(), o.Archive.Key)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(r)
			_ = r.Close()
			sum := sha256.Sum256(got)
			if string(got) != string(want) || hex.EncodeToString(sum[:]) != o.Archive.SHA256 {
				t.Errorf("%s output %d: archived %d bytes (sha256 %x), provider serves %d; result says sha256 %s",
					j.ID, i, len(got), sum, len(want), o.Archive.SHA256)
			}
		}
	}
}

// Links that expire before archiving: the result is published anyway,
// with the provider URL and an archive_error per output.
func TestExpiredLinkStillPublishesResult(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond), OutputNotFound: true}})
	env.StartWorker(reelqtest.WorkerOptions{Archive: true, Providers: map[string]reelqtest.Settings{"samsar": {}}})
	env.Enqueue(reelqtest.SamsarJob("gone-1"))
	rs := env.Results(1, time.Minute)["gone-1"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || len(rs[0].Outputs) == 0 {
		t.Fatalf("gone-1: %+v, want one success", rs)
	}
	for i, o := range rs[0].Outputs {
		if o.Archive != nil || o.ArchiveError == "" || o.URL == "" {
			t.Errorf("output %d: %+v, want the provider URL, no copy and an archive_error", i, o)
		}
	}
}

func fetch(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A source that trickles is cut off after one rate window and not
// retried, and the job's other outputs are not tried: the one archive
// slot goes to the next job. (Before, one output served a byte at a time
// held a cluster-wide archive slot for the fetcher's 30-minute timeout
// plus the retry budget, and every other job's result waited.)
func TestTricklingOutputGivesUpItsSlot(t *testing.T) {
	t.Parallel()
	quick := providersim.Duration(50 * time.Millisecond)
	env := reelqtest.New(t, map[string]providersim.Knobs{
		"camb":   {CompleteAfter: quick, OutputRate: 20}, // a byte every 50 ms
		"samsar": {CompleteAfter: quick},
	})
	ac := env.ArchiveConfig()
	f, err := archive.NewFetcher(archive.FetchConfig{AllowHosts: []string{"127.0.0.1"}, MinRate: 16 << 10, MinRateWindow: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	ac.Fetcher, ac.Concurrency = f, 1
	env.StartWorker(reelqtest.WorkerOptions{Config: worker.Config{Archive: ac}, Providers: map[string]reelqtest.Settings{"camb": {}, "samsar": {}}})
	env.Enqueue(reelq.Job{ID: "trickle", Provider: "camb", Input: []byte(`{"text":"Once upon a time, a lighthouse keeper found a bottle.","source_language":1}`)})
	waitfor.Job(t, env.JS, "trickle", 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseArchiving })
	env.Enqueue(reelqtest.SamsarJob("next"))
	results := env.Results(2, 30*time.Second)
	if rs := results["next"]; len(rs) != 1 || len(rs[0].Outputs) == 0 || rs[0].Outputs[0].Archive == nil {
		t.Errorf("next: %+v, want one result with an archived output", rs)
	}
	rs := results["trickle"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || len(rs[0].Outputs) < 2 {
		t.Fatalf("trickle: %+v, want one success with its outputs", rs)
	}
	outs := rs[0].Outputs
	if outs[0].Archive != nil || !strings.Contains(outs[0].ArchiveError, "too slow") {
		t.Errorf("output 0: copy %+v, archive_error %q; want cut off as too slow", outs[0].Archive, outs[0].ArchiveError)
	}
	for i, o := range outs[1:] {
		if o.Archive != nil || !strings.Contains(o.ArchiveError, "not archived: output 0 of this job was too slow") {
			t.Errorf("output %d: copy %+v, archive_error %q; want not tried", i+1, o.Archive, o.ArchiveError)
		}
	}
	if n := env.Sim.Stats(0)["camb"].DownloadRequests["aborted"]; n != 1 {
		t.Errorf("the trickling source was asked %d times (aborted), want once: not retried", n)
	}
}

// SIGTERM stops archiving at once: the worker exits without waiting for
// a slow download (or the shutdown grace), the job stays in its archiving
// phase, and the next worker archives it from the stored outputs; one
// result. (Before, archiving went on, and retried, until the shutdown
// timeout.)
func TestShutdownStopsArchiving(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond),
		OutputRate: 64 << 10, OutputSize: 2 << 20}}) // 32 s to download
	opts := reelqtest.WorkerOptions{Archive: true, Providers: map[string]reelqtest.Settings{"samsar": {}}}
	w1 := env.StartWorker(opts)
	env.Enqueue(reelqtest.SamsarJob("slow-archive"))
	waitfor.Job(t, env.JS, "slow-archive", 30*time.Second, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseArchiving })
	waitDownloading(t, env, "samsar")
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, _, err := env.States.Get(ctx, "slow-archive")
	if err != nil || st.Phase != reelq.PhaseArchiving {
		t.Fatalf("after the first worker stopped: %+v, %v; want the job still archiving", st, err)
	}
	k := env.Sim.Knobs("samsar")
	k.OutputRate = 0
	if err := env.Sim.SetKnobs("samsar", k); err != nil {
		t.Fatal(err)
	}
	opts.ID = "w2"
	env.StartWorker(opts)
	rs := env.Results(1, 30*time.Second)["slow-archive"]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || len(rs[0].Outputs) != 1 || rs[0].Outputs[0].Archive == nil {
		t.Fatalf("slow-archive: %+v, want one success with its output archived", rs)
	}
	if got := totalSubmissions(env, "samsar"); got != 1 {
		t.Errorf("provider saw %d submissions, want 1", got)
	}
}

// waitDownloading waits until the simulator serves one of provider's
// outputs.
func waitDownloading(t *testing.T, env *reelqtest.Env, provider string) {
	t.Helper()
	waitfor.Until(t, 20*time.Second, "a "+provider+" output being downloaded", func() bool { return env.Sim.Stats(0)[provider].DownloadsActive > 0 })
}
