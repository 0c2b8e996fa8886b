package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/archive"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
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
