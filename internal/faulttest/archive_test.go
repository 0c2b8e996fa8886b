package faulttest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/archive"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
)

// Archive fault tests use Camb: a story has two outputs (story.wav and
// dialogue.wav), both served at -output-size bytes, slowly.
const (
	archiveOutputSize = 8 << 20 // bytes per output
	archiveOutputRate = 4 << 20 // bytes per second: 2 s per output
)

func cambJob(id string) reelq.Job {
	return reelq.Job{ID: id, Provider: "camb", Batch: "archive",
		Input: []byte(fmt.Sprintf(`{"text":"A story for fault test job %s.","source_language":1,"title":%q}`, id, cambTitle(id)))}
}

func cambTitle(id string) string { return "Fault test " + id }

func cambKey(j reelq.Job) string { return cambTitle(j.ID) }

// cambWorkers runs Camb (and nothing else) against the simulator.
func cambWorkers(t testing.TB, dir, natsURL, simURL string, env map[string]string) *workers {
	e := map[string]string{
		"SAMSAR_ENABLED":         "false",
		"CAMB_API_KEY":           apiKey,
		"CAMB_BASE_URL":          simURL + "/apis",
		"CAMB_RATE":              "100",
		"CAMB_BURST":             "10",
		"CAMB_MAX_INFLIGHT":      "4",
		"CAMB_POLL_INTERVAL":     "100ms",
		"CAMB_MAX_POLL_INTERVAL": "300ms",
		"CAMB_REQUEST_TIMEOUT":   "3s",
	}
	for k, v := range env {
		e[k] = v
	}
	return newWorkers(t, dir, natsURL, simURL, e)
}

// providerCalls is how often the simulator was asked about tasks (polls
// and result fetches) and to create them.
func providerCalls(st providersim.Stats) (polls, submits int) {
	for k, n := range st.Requests {
		op, _, _ := strings.Cut(k, " ")
		switch op {
		case "poll", "result":
			polls += n
		case "submit":
			submits += n
		}
	}
	return polls, submits
}

// A worker is SIGKILLed in the middle of copying a job's second output
// into the archive (the first is already archived). The outputs learnt
// from the final poll were stored in the job state before archiving, so
// the next delivery re-archives from them: no second submission, no poll
// of the finished task, and the archive keys are deterministic, so the
// repeated upload of the first output replaces its object. The job ends
// with exactly one result, one archived copy per output, each the
// provider's bytes.
func TestWorkerKilledDuringArchiveUpload(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startSim(t, dir, map[string]providersim.Knobs{"camb": {
		CompleteAfter: providersim.Duration(300 * time.Millisecond),
		OutputSize:    archiveOutputSize,
		OutputRate:    archiveOutputRate,
	}})
	c := connect(t, srv.ClientURL(), 1)
	ws := cambWorkers(t, dir, srv.ClientURL(), s.url, nil)
	ws.start("a")
	jobs := []reelq.Job{cambJob("upload-kill")}
	id := jobs[0].ID
	c.enqueue(t, jobs)

	waitfor.Job(t, c.js, id, time.Minute, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseArchiving })
	obs := c.outputs(t)
	// The kill lands once output 0 is archived and output 1 is a quarter
	// copied: it streams from the download into the object store, so its
	// chunks there show how far the copy has come (the simulator counts
	// served bytes only once a download ends).
	chunks := archiveOutputSize / archive.DefaultChunkSize
	if err := waitfor.Poll(time.Minute, func() error {
		if _, err := obs.GetInfo(context.Background(), archive.Key(id, 1, 0)); err != nil {
			return err
		}
		if n := c.archiveMsgs(); n < uint64(chunks+1+chunks/4) {
			return fmt.Errorf("%d messages in the archive's stream", n)
		}
		return nil
	}); err != nil {
		t.Fatalf("waiting for the second output's copy: %v", err)
	}
	ws.get("a").kill()
	before := s.stats(t, "camb")
	pollsAtKill, submitsAtKill := providerCalls(before)
	s.waitDownloadsEnded(t)
	if _, err := obs.GetInfo(context.Background(), archive.Key(id, 1, 1)); err == nil {
		t.Fatal("output 1 was archived before the kill: the kill did not land during the copy")
	}
	ws.start("a")
	c.waitSettled(t, 1, 2*time.Minute)

	st := s.stats(t, "camb")
	rep := verify(t, c, st.Submissions, jobs, cambKey)
	polls, submits := providerCalls(st)
	if polls != pollsAtKill || submits != submitsAtKill || st.Submissions[cambKey(jobs[0])] != 1 {
		t.Errorf("after the kill: polls %d -> %d, submits %d -> %d, paid submissions %d; want no new call and 1 paid",
			pollsAtKill, polls, submitsAtKill, submits, st.Submissions[cambKey(jobs[0])])
	}
	res := c.result(t, jobs[0])
	if res.Status != reelq.StatusSucceeded || len(res.Outputs) != 2 {
		t.Fatalf("result %+v, want succeeded with 2 outputs", res)
	}
	s.setKnobs(t, "camb", map[string]any{"output_rate": 0})
	for i, o := range res.Outputs {
		want := archive.Key(id, 1, i)
		if o.Archive == nil || o.ArchiveError != "" {
			t.Errorf("output %d: archive %+v, error %q; want an archived copy", i, o.Archive, o.ArchiveError)
			continue
		}
		if o.Archive.Key != want || o.Archive.Bucket != archive.DefaultBucket || o.Archive.Size != archiveOutputSize {
			t.Errorf("output %d: archived as %+v, want %s/%s, %d bytes", i, o.Archive, archive.DefaultBucket, want, archiveOutputSize)
		}
		stored := c.objectSHA256(t, obs, want)
		served := fetchSHA256(t, o.URL)
		if stored != o.Archive.SHA256 || served != o.Archive.SHA256 {
			t.Errorf("output %d: sha256 in the result %s, of the stored object %s, of the provider's file %s", i, o.Archive.SHA256, stored, served)
		}
	}
	objects := c.objectNames(t, obs)
	if want := []string{archive.Key(id, 1, 0), archive.Key(id, 1, 1)}; strings.Join(objects, ",") != strings.Join(want, ",") {
		t.Errorf("the archive holds %v, want exactly %v (one copy per output)", objects, want)
	}
	orphans := c.orphanChunks(t, obs)
	t.Logf("FIGURES %s: downloads=%v download_requests=%v polls_after_kill=%d submits_after_kill=%d orphan_chunks=%d (%d KiB) %s",
		t.Name(), st.Downloads, st.DownloadRequests, polls-pollsAtKill, submits-submitsAtKill, orphans, orphans*archive.DefaultChunkSize>>10, rep)
}

// The output links expire (-output-ttl) before the archive gets to them:
// the worker copying them is SIGKILLed mid-download and the links are gone
// by the time the job is redelivered. The result is published all the
// same, keeping the provider's links, with archive_error on each output
// and an archive_failed event each; nothing is submitted or polled again.
func TestLinksExpireBeforeArchiving(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	s := startSim(t, dir, map[string]providersim.Knobs{"camb": {
		CompleteAfter: providersim.Duration(300 * time.Millisecond),
		OutputSize:    archiveOutputSize,
		OutputRate:    archiveOutputRate,
		OutputTTL:     providersim.Duration(4 * time.Second),
	}})
	c := connect(t, srv.ClientURL(), 1)
	ws := cambWorkers(t, dir, srv.ClientURL(), s.url, nil)
	ws.start("a")
	jobs := []reelq.Job{cambJob("expired-links")}
	id := jobs[0].ID
	c.enqueue(t, jobs)

	st := waitfor.Job(t, c.js, id, time.Minute, func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseArchiving })
	// The first output is an eighth copied (its chunks in the archive's
	// stream; the simulator counts served bytes only once a download ends).
	if err := waitfor.Poll(time.Minute, func() error {
		if n := c.archiveMsgs(); n < uint64(archiveOutputSize/archive.DefaultChunkSize/8) {
			return fmt.Errorf("%d messages in the archive's stream", n)
		}
		return nil
	}); err != nil {
		t.Fatalf("waiting for the first output's copy: %v", err)
	}
	ws.get("a").kill()
	s.waitDownloadsEnded(t)
	pollsAtKill, submitsAtKill := providerCalls(s.stats(t, "camb"))
	// Wait (no sleep: ask the provider's storage) until every link is gone.
	for _, o := range st.Outputs {
		if err := waitfor.Poll(time.Minute, func() error {
			resp, err := http.Head(o.URL)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				return fmt.Errorf("%s answers %s", o.URL, resp.Status)
			}
			return nil
		}); err != nil {
			t.Fatalf("the output link never expired: %v", err)
		}
	}
	ws.start("a")
	c.waitSettled(t, 1, 2*time.Minute)

	sst := s.stats(t, "camb")
	rep := verify(t, c, sst.Submissions, jobs, cambKey)
	polls, submits := providerCalls(sst)
	if polls != pollsAtKill || submits != submitsAtKill || sst.Submissions[cambKey(jobs[0])] != 1 {
		t.Errorf("after the kill: polls %d -> %d, submits %d -> %d, paid submissions %d; want no new call and 1 paid",
			pollsAtKill, polls, submitsAtKill, submits, sst.Submissions[cambKey(jobs[0])])
	}
	res := c.result(t, jobs[0])
	if res.Status != reelq.StatusSucceeded || len(res.Outputs) != len(st.Outputs) || len(res.Outputs) != 2 {
		t.Fatalf("result %+v, want succeeded with the 2 stored outputs", res)
	}
	for i, o := range res.Outputs {
		if o.Archive != nil || o.ArchiveError == "" || o.URL != st.Outputs[i].URL {
			t.Errorf("output %d: %+v, want the provider's link %s with archive_error and no copy", i, o, st.Outputs[i].URL)
		}
	}
	if rep.ArchiveErrors != 2 || rep.Archived != 0 {
		t.Errorf("%d outputs with archive_error, %d archived; want 2, 0", rep.ArchiveErrors, rep.Archived)
	}
	if n := c.eventCount(reelq.EventArchiveFailed); n != 2 {
		t.Errorf("%d archive_failed events, want 2", n)
	}
	obs := c.outputs(t)
	if objects := c.objectNames(t, obs); len(objects) != 0 {
		t.Errorf("the archive holds %v, want nothing", objects)
	}
	t.Logf("FIGURES %s: download_requests=%v archive_error=%q orphan_chunks=%d %s", t.Name(), sst.DownloadRequests, res.Outputs[0].ArchiveError, c.orphanChunks(t, obs), rep)
}

// Output links that answer 404 at once (the provider lost the files): the
// result is published with the provider's link and archive_error, after
// no retry of a permanent answer, and the job is paid once.
func TestOutputNotFoundPublishesArchiveError(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(100 * time.Millisecond), OutputNotFound: true}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}, Archive: true})
	failed := env.Events("events.samsar." + reelq.EventArchiveFailed)
	job := reelqtest.SamsarJob("output-404")
	env.Enqueue(job)
	rs := env.Results(1, time.Minute)[job.ID]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || len(rs[0].Outputs) != 1 {
		t.Fatalf("results %+v, want one succeeded with one output", rs)
	}
	o := rs[0].Outputs[0]
	if o.Archive != nil || !strings.Contains(o.ArchiveError, "404") || o.URL == "" {
		t.Errorf("output %+v, want the provider's link with a 404 archive_error", o)
	}
	if ev := env.NextEvent(failed, 30*time.Second); ev.JobID != job.ID {
		t.Errorf("archive_failed event %+v, want one for %s", ev, job.ID)
	}
	st := env.Sim.Stats(0)["samsar"]
	if st.Submissions[reelqtest.SamsarPrompt(job.ID)] != 1 || st.DownloadRequests["404"] != 1 {
		t.Errorf("paid submissions %d, 404 downloads %d; want 1, 1 (a 404 is not retried)", st.Submissions[reelqtest.SamsarPrompt(job.ID)], st.DownloadRequests["404"])
	}
	waitDrained(t, env)
}

// archiveMsgs is how many messages (chunks and metadata) the archive's
// stream holds.
func (c *client) archiveMsgs() uint64 {
	n, _ := c.streamMsgs("OBJ_" + archive.DefaultBucket)
	return n
}

// outputs opens the archive's object store.
func (c *client) outputs(t testing.TB) jetstream.ObjectStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obs, err := c.js.ObjectStore(ctx, archive.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

// result reads job j's result event.
func (c *client) result(t testing.TB, j reelq.Job) *reelq.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.rc.Get(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	r := st.StoredResult()
	if r == nil {
		t.Fatalf("job %s has no result", j.ID)
	}
	return r
}

// objectNames lists the archive's objects, sorted.
func (c *client) objectNames(t testing.TB, obs jetstream.ObjectStore) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	infos, err := obs.List(ctx)
	if err != nil && err != jetstream.ErrNoObjectsFound {
		t.Fatal(err)
	}
	var names []string
	for _, in := range infos {
		names = append(names, in.Name)
	}
	sort.Strings(names)
	return names
}

// orphanChunks counts chunk messages in the archive's stream that belong
// to no object: what an upload cut short by a SIGKILL leaves behind until
// the bucket's TTL removes it.
func (c *client) orphanChunks(t testing.TB, obs jetstream.ObjectStore) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	infos, err := obs.List(ctx)
	if err != nil && err != jetstream.ErrNoObjectsFound {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for _, in := range infos {
		live[in.NUID] = true
	}
	prefix := "$O." + archive.DefaultBucket + ".C."
	n := 0
	for subj, count := range c.subjectCounts("OBJ_"+archive.DefaultBucket, prefix+">") {
		if !live[strings.TrimPrefix(subj, prefix)] {
			n += int(count)
		}
	}
	return n
}

// objectSHA256 reads an archived object and returns its SHA-256 in hex.
func (c *client) objectSHA256(t testing.TB, obs jetstream.ObjectStore, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := obs.Get(ctx, name)
	if err != nil {
		t.Fatalf("object %s: %v", name, err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatalf("object %s: %v", name, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fetchSHA256 downloads url and returns its SHA-256 in hex.
func fetchSHA256(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// waitDownloadsEnded waits, after a worker was killed, until the simulator
// serves no output: the download it served ends aborted, or complete when
// the simulator had already written the rest into the loopback socket (on a
// loaded machine the worker's copy into the store lags its download; the
// test then waited 30 s for an abort that never came). Either way the
// killed worker's copy was cut short: the archive's objects show it.
func (s *sim) waitDownloadsEnded(t testing.TB) {
	t.Helper()
	s.waitStats(t, "camb", "the killed worker's download to end", func(st providersim.Stats) bool { return st.DownloadsActive == 0 })
	t.Logf("the provider's downloads: %v", s.stats(t, "camb").DownloadRequests)
}
