package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/wire"
)

// streamAdminSubject is an entry of auth.conf that SECURITY.md says to
// remove from the worker's permissions when setup runs as its own step.
var streamAdminSubject = regexp.MustCompile(`^"\$JS\.API\.STREAM\.(CREATE|UPDATE)\.[^"]+"$`)

// stripWorkerStreamAdmin returns auth.conf without the worker's
// $JS.API.STREAM.CREATE.<x> and $JS.API.STREAM.UPDATE.<x> entries (the
// other roles unchanged), and how many it removed.
func stripWorkerStreamAdmin(t *testing.T, conf string) (string, int) {
	t.Helper()
	start := strings.Index(conf, "\n  WORKER = {")
	end := strings.Index(conf, "\n  PRODUCER = {")
	if start < 0 || end < start {
		t.Fatal("auth.conf: no WORKER role followed by PRODUCER")
	}
	removed := 0
	var out []string
	for _, line := range strings.Split(conf[start:end], "\n") {
		trimmed := strings.TrimSpace(line)
		if !strings.HasPrefix(trimmed, `"`) {
			out = append(out, line)
			continue
		}
		var keep []string
		for _, item := range strings.Split(trimmed, ",") {
			item = strings.TrimSpace(item)
			if streamAdminSubject.MatchString(item) {
				removed++
				continue
			}
			keep = append(keep, item)
		}
		if len(keep) > 0 {
			out = append(out, line[:len(line)-len(strings.TrimLeft(line, " \t"))]+strings.Join(keep, ", "))
		}
	}
	worker := strings.Join(out, "\n")
	if strings.Contains(worker, "$JS.API.STREAM.CREATE") || strings.Contains(worker, "$JS.API.STREAM.UPDATE") {
		t.Fatalf("the stripped WORKER role still has stream create or update rights:\n%s", worker)
	}
	return conf[:start] + worker + conf[end:], removed
}

// startStrippedServer starts the shipped single-server config with the
// worker's stream create and update rights removed, as SECURITY.md
// describes for running setup as its own step.
func startStrippedServer(t *testing.T) (*server.Server, *opsLog) {
	t.Helper()
	auth, err := os.ReadFile("../../deploy/nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	stripped, removed := stripWorkerStreamAdmin(t, string(auth))
	// CREATE and UPDATE of each of reelq's streams, buckets and the
	// output archive.
	if want := 2 * (len(queue.Layout{}.StreamConfigs()) + len(queue.Layout{}.KeyValueConfigs()) + 1); removed != want {
		t.Fatalf("removed %d stream create/update entries from the WORKER role, want %d", removed, want)
	}
	serverConf, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(serverConf), "include ./auth.conf") {
		t.Fatalf("%s does not include ./auth.conf", shippedConfig)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), []byte(stripped), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(cfg, serverConf, 0o600); err != nil {
		t.Fatal(err)
	}
	return startConfigServer(t, cfg)
}

// Setup as its own step (SECURITY.md): under a copy of the shipped
// permissions without the worker's $JS.API.STREAM.CREATE.<x> and
// $JS.API.STREAM.UPDATE.<x> entries, the worker identity cannot create or
// update a stream, and a worker with REELQ_SETUP=auto refuses to start
// with an error naming the denied subject and REELQ_SETUP; the admin
// identity sets up with REELQ_SETUP=only and exits; then a worker with
// REELQ_SETUP=skip runs the producer's Samsar jobs to one succeeded
// result each, without a permission violation.
func TestSetupOnlyThenSkipWithoutStreamRights(t *testing.T) {
	t.Parallel()
	s, slog := startStrippedServer(t)
	_, simURL := simServer(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond)}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin := connectAs(t, s, "admin")
	workerAs := func(id string, extra ...string) []string {
		return workerEnviron(s.ClientURL(), simURL, id, append([]string{
			"NATS_USER=worker",
			"NATS_PASSWORD_FILE=" + writeSecret(t, "nats-password", shippedPasswords["worker"]),
			"SAMSAR_API_KEY_FILE=" + writeSecret(t, "samsar-key", reelqtest.APIKey("samsar")),
		}, extra...)...)
	}

	// No stream yet: a worker that would create them is refused, names
	// what it was denied and the way out, and creates nothing.
	autoCtx, autoCancel := context.WithTimeout(ctx, 30*time.Second)
	defer autoCancel()
	autoLog := &opsLog{}
	autoErr := run(autoCtx, nil, workerAs("strip-auto", "REELQ_SETUP=auto"), autoLog)
	if autoErr == nil || !strings.Contains(autoErr.Error(), "$JS.API.STREAM.CREATE.JOBS") || !strings.Contains(autoErr.Error(), "REELQ_SETUP=only") ||
		!strings.Contains(autoErr.Error(), "REELQ_SETUP=skip") {
		t.Fatalf("REELQ_SETUP=auto without stream rights: %v, want an error naming $JS.API.STREAM.CREATE.JOBS, REELQ_SETUP=only and skip\nlog:\n%s", autoErr, autoLog)
	}
	t.Logf("REELQ_SETUP=auto without stream rights: %v", autoErr)
	if _, err := admin.js.Stream(ctx, queue.StreamJobs); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("after the refused REELQ_SETUP=auto: stream JOBS: %v, want not found", err)
	}

	// Setup as the admin identity, as its own step: it sets up and exits.
	onlyLog := &opsLog{}
	onlyEnv := workerEnviron(s.ClientURL(), simURL, "strip-setup", "REELQ_SETUP=only", "NATS_USER=admin",
		"NATS_PASSWORD_FILE="+writeSecret(t, "admin-password", shippedPasswords["admin"]), "NATS_INBOX_PREFIX=_INBOX_admin")
	if err := run(ctx, nil, onlyEnv, onlyLog); err != nil {
		t.Fatalf("REELQ_SETUP=only as admin: %v\nlog:\n%s", err, onlyLog)
	}
	if err := queue.Ready(ctx, admin.js); err != nil {
		t.Fatalf("after REELQ_SETUP=only: %v", err)
	}

	// The worker identity really has no stream rights: creating or
	// updating one of reelq's streams with the very configuration setup
	// gave it is refused by the server's permissions (with the shipped
	// permissions both succeed: nothing changes).
	var cfgs = map[string]jetstream.StreamConfig{}
	for _, name := range []string{queue.StreamJobs, queue.StreamResults} {
		st, err := admin.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfgs[name] = st.CachedInfo().Config
	}
	direct := connectAs(t, s, "worker")
	var wg sync.WaitGroup
	var createErr, updateErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		defer dcancel()
		_, createErr = direct.js.CreateStream(dctx, cfgs[queue.StreamJobs])
	}()
	go func() {
		defer wg.Done()
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		defer dcancel()
		_, updateErr = direct.js.UpdateStream(dctx, cfgs[queue.StreamResults])
	}()
	wg.Wait()
	viol := strings.Join(violations(slog, `reelq-test/worker"`), "\n")
	for subj, err := range map[string]error{"$JS.API.STREAM.CREATE.JOBS": createErr, "$JS.API.STREAM.UPDATE.RESULTS": updateErr} {
		if err == nil || !strings.Contains(viol, subj) {
			t.Errorf("the stripped worker identity publishes to %s: %v, want refused with a permission violation (violations: %q)", subj, err, viol)
		}
	}

	// A worker that only checks the streams runs jobs.
	w := startOpsWorker(t, workerAs("strip-worker", "REELQ_SETUP=skip"))
	if code, body, _ := w.get("/readyz"); code != 200 {
		t.Fatalf("REELQ_SETUP=skip worker not ready: %d %s", code, body)
	}
	prod := connectAs(t, s, "producer").client(t)
	after, err := prod.ResultsSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []reelq.Job
	var ids []string
	for i := range 3 {
		j := samsarJob(fmt.Sprintf("strip-%d", i), "strip")
		jobs, ids = append(jobs, j), append(ids, j.ID)
	}
	out, err := prod.EnqueueBatch(ctx, jobs, reelq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Status != reelq.Published {
			t.Fatalf("enqueue %s: %s %v", o.ID, o.Status, o.Err)
		}
	}
	got, err := reelqtest.WaitAll(ctx, prod.Client, ids, reelq.WaitOptions{From: after + 1})
	if err != nil {
		t.Fatalf("wait for the jobs: %d of %d: %v\nworker log:\n%s\nserver log:\n%s", len(got), len(ids), err, w.Log, slog)
	}
	results, err := admin.js.Stream(ctx, queue.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if r := got[id]; r == nil || r.Status != reelq.StatusSucceeded {
			t.Errorf("job %s: %+v, want succeeded", id, r)
		}
		st := waitState(t, prod, id, "finished", func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseFinished })
		if st.Run != 1 {
			t.Errorf("job %s: run %d, want 1", id, st.Run)
		}
		subj := wire.ResultSubject("samsar", id)
		info, err := results.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Subjects[subj]; n != 1 {
			t.Errorf("job %s: %d results on %s, want 1", id, n, subj)
		}
	}
	if err := w.Stop(); err != nil {
		t.Errorf("worker stop: %v", err)
	}
	if v := violations(slog, "reelq-worker/strip-worker"); len(v) > 0 {
		t.Errorf("the REELQ_SETUP=skip worker hit permission violations:\n%s", strings.Join(v, "\n"))
	}
}
