package faulttest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

// apiKey is the key the simulator expects from every worker.
const apiKey = "faulttest-key-0123456789abcdef"

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("process fault test; skipped with -short")
	}
}

// proc is one child process started by a test. Only processes started
// here are ever signalled, always by their own pid.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startProc starts path with env, sending its output to a log file in dir;
// the first stdout line is delivered on first (if not nil).
func startProc(t testing.TB, dir, name, path string, args, env []string, first chan<- string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stderr = f
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for n := 0; sc.Scan(); n++ {
			if n == 0 && first != nil {
				first <- sc.Text()
			}
			fmt.Fprintln(f, sc.Text())
		}
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL and waits for the process to exit.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// term sends SIGTERM and waits up to 20s for a graceful exit, then kills.
func (p *proc) term() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.kill()
	}
}

func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// waitLog waits until the process has logged a line containing every one
// of parts (for what a process does that leaves no other trace).
func (p *proc) waitLog(t testing.TB, parts ...string) {
	t.Helper()
	if err := waitfor.Poll(30*time.Second, func() error {
		b, err := os.ReadFile(p.log)
		if err != nil {
			return err
		}
	lines:
		for _, l := range strings.Split(string(b), "\n") {
			for _, part := range parts {
				if !strings.Contains(l, part) {
					continue lines
				}
			}
			return nil
		}
		return waitfor.ErrNotYet
	}); err != nil {
		t.Fatalf("%s never logged %q: %v", p.name, parts, err)
	}
}

// keepEnv names a directory where every test's process logs are copied
// (one subdirectory per test), failed or not.
const keepEnv = "REELQ_FAULTTEST_KEEP"

// dumpLogs prints the tail of every log in dir when the test failed, and
// fails it if a child built with -race (REELQ_FAULTTEST_RACE=1) reported
// a data race. With REELQ_FAULTTEST_KEEP=DIR the logs are kept in DIR.
func dumpLogs(t testing.TB, dir string) {
	t.Cleanup(func() {
		files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		if keep := os.Getenv(keepEnv); keep != "" {
			to := filepath.Join(keep, strings.NewReplacer("/", "_", "=", "-").Replace(t.Name()))
			if err := os.MkdirAll(to, 0o755); err != nil {
				t.Errorf("%s: %v", keepEnv, err)
			}
			for _, f := range files {
				if b, err := os.ReadFile(f); err == nil {
					_ = os.WriteFile(filepath.Join(to, filepath.Base(f)), b, 0o644)
				}
			}
			t.Logf("process logs kept in %s", to)
		}
		for _, f := range files {
			if b, _ := os.ReadFile(f); strings.Contains(string(b), "WARNING: DATA RACE") {
				t.Errorf("%s reports a data race", filepath.Base(f))
			}
		}
		if !t.Failed() {
			return
		}
		for _, f := range files {
			b, _ := os.ReadFile(f)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			t.Logf("---- %s (last %d lines)\n%s", filepath.Base(f), len(lines), strings.Join(lines, "\n"))
		}
	})
}

// baseEnv is the environment every child starts from: nothing of the
// caller's reelq, NATS or provider settings leaks in.
func baseEnv(extra map[string]string) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GOCOVERDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// freePort returns a free port for a server that must keep its port
// across restarts. It is picked below the kernel's ephemeral range
// (32768-60999 on Linux), so no outgoing connection can take it between
// this check and the server binding it, as nats-server's own cluster
// tests do.
func freePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 1000 {
		port := 20000 + portRNG.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

var (
	portMu  sync.Mutex
	portRNG = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
)

// ---- provider simulator process ----

type sim struct {
	p   *proc
	url string
	// mem is the simulator itself when it runs in the test process
	// (startMemSim), nil for a process.
	mem *providersim.Server
}

// startSim runs cmd/providersim with knobs (each gets the test API key).
func startSim(t testing.TB, dir string, knobs map[string]providersim.Knobs) *sim {
	t.Helper()
	every := map[string]providersim.Knobs{}
	for _, p := range all.Names() {
		k := knobs[p]
		k.APIKey = apiKey
		every[p] = k
	}
	b, _ := json.Marshal(every)
	file := filepath.Join(dir, "knobs.json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	first := make(chan string, 1)
	p := startProc(t, dir, "providersim", bins["providersim"],
		[]string{"-addr", "127.0.0.1:0", "-knobs", file, "-api-key", apiKey, "-seed", fmt.Sprint(seed % 1000)}, baseEnv(nil), first)
	select {
	case line := <-first:
		// "providersim listening on http://127.0.0.1:PORT"
		i := strings.Index(line, "http://")
		if i < 0 {
			t.Fatalf("providersim said %q", line)
		}
		return &sim{p: p, url: strings.Fields(line[i:])[0]}
	case <-p.done:
		t.Fatal("providersim exited at start")
	case <-time.After(30 * time.Second):
		t.Fatal("providersim did not start")
	}
	return nil
}

// stats reads the simulator's own counters.
func (s *sim) stats(t testing.TB, provider string) providersim.Stats {
	t.Helper()
	resp, err := http.Get(s.url + "/admin/stats")
	if err != nil {
		t.Fatalf("providersim stats: %v", err)
	}
	defer resp.Body.Close()
	var every map[string]providersim.Stats
	if err := json.NewDecoder(resp.Body).Decode(&every); err != nil {
		t.Fatalf("providersim stats: %v", err)
	}
	return every[provider]
}

// ---- nats-server processes ----

// natsd is a nats-server process (the upstream command, file store), so
// that it can be SIGKILLed and restarted on its store directory and port.
type natsd struct {
	t       testing.TB
	dir     string
	name    string
	port    int
	cluster *clusterConf
	p       *proc
	gen     int
}

// clusterConf makes a natsd a member of a cluster.
type clusterConf struct {
	Name   string
	Port   int
	Routes []string // nats-route://host:port of every member
}

func newNATSD(t testing.TB, dir, name string, cluster *clusterConf) *natsd {
	return &natsd{t: t, dir: dir, name: name, port: freePort(t), cluster: cluster}
}

func (n *natsd) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// config renders the server's configuration file.
func (n *natsd) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %q\nlisten: \"127.0.0.1:%d\"\n", n.name, n.port)
	fmt.Fprintf(&b, "jetstream { store_dir: %q }\n", filepath.Join(n.dir, "store-"+n.name))
	if c := n.cluster; c != nil {
		routes, _ := json.Marshal(c.Routes)
		fmt.Fprintf(&b, "cluster { name: %q, listen: \"127.0.0.1:%d\", routes: %s }\n", c.Name, c.Port, routes)
	}
	return b.String()
}

// start launches the server (again) and waits until it accepts clients.
func (n *natsd) start() {
	n.t.Helper()
	conf := filepath.Join(n.dir, n.name+".conf")
	if err := os.WriteFile(conf, []byte(n.config()), 0o644); err != nil {
		n.t.Fatal(err)
	}
	n.gen++
	n.p = startProc(n.t, n.dir, fmt.Sprintf("natsd-%s.%d", n.name, n.gen), bins["nats-server"], []string{"-c", conf}, baseEnv(nil), nil)
	addr := fmt.Sprintf("127.0.0.1:%d", n.port)
	if err := waitfor.Poll(60*time.Second, func() error {
		select {
		case <-n.p.done:
			return errors.New("exited")
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		n.t.Fatalf("nats-server %s did not start: %v", n.name, err)
	}
}

// ---- worker processes ----

// workers runs cmd/worker replicas with a common environment. Each start
// of replica "a" is a new process with worker id a.1, a.2, ...
type workers struct {
	t     testing.TB
	dir   string
	env   map[string]string
	mu    sync.Mutex
	procs map[string]*proc
	gens  map[string]int
}

func newWorkers(t testing.TB, dir, natsURL, simURL string, env map[string]string) *workers {
	base := map[string]string{
		"NATS_URL":                 natsURL,
		"SAMSAR_API_KEY":           apiKey,
		"SAMSAR_BASE_URL":          simURL,
		"SAMSAR_RATE":              "200",
		"SAMSAR_BURST":             "20",
		"SAMSAR_MAX_INFLIGHT":      "6",
		"SAMSAR_POLL_INTERVAL":     "100ms",
		"SAMSAR_MAX_POLL_INTERVAL": "300ms",
		"SAMSAR_REQUEST_TIMEOUT":   "3s",
		"VIMMERSE_ENABLED":         "false",
		"REELQ_ACK_WAIT":           slotLease.String(), // also the slot lease
		"REELQ_RETRY_BASE":         "100ms",
		"REELQ_RETRY_MAX":          "1s",
		"REELQ_MAX_ATTEMPTS":       "10",
		// At least the longest request timeout plus 10s (validated).
		"REELQ_SHUTDOWN_TIMEOUT": "15s",
		// Outputs are archived into the object store; the simulator that
		// serves them is on loopback, which the fetcher refuses unless
		// allowed.
		"REELQ_ARCHIVE_ALLOW_HOSTS": "127.0.0.1",
		"LOG_FORMAT":                "json",
		"LOG_LEVEL":                 "info",
	}
	for k, v := range env {
		base[k] = v
	}
	return &workers{t: t, dir: dir, env: base, procs: map[string]*proc{}, gens: map[string]int{}}
}

// start starts replica id (a new generation if it ran before).
func (w *workers) start(id string) *proc {
	w.mu.Lock()
	w.gens[id]++
	wid := fmt.Sprintf("%s.%d", id, w.gens[id])
	w.mu.Unlock()
	return w.startAs(id, wid)
}

// startAs starts replica id under worker id wid, whatever ran under it
// before (a StatefulSet pod restarted under its name).
func (w *workers) startAs(id, wid string) *proc {
	w.mu.Lock()
	defer w.mu.Unlock()
	env := map[string]string{"REELQ_WORKER_ID": wid}
	for k, v := range w.env {
		env[k] = v
	}
	p := startProc(w.t, w.dir, "worker-"+wid, bins["worker"], nil, baseEnv(env), nil)
	w.procs[id] = p
	return p
}

func (w *workers) get(id string) *proc {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.procs[id]
}

// ---- client side: producer and checks ----

// client is the test's view of the queue: the public client, as a
// producer uses it, plus direct reads of the streams and the job state.
type client struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	rc     *reelq.Client
	ri     *inspect.Inspector
	states *jobstate.Store
}

// connect opens a client to url and sets up reelq's streams and buckets
// with the given replica count (as a worker does at start), retrying while
// a cluster forms.
func connect(t testing.TB, url string, replicas int) *client {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	err = waitfor.Poll(60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return queue.Setup(ctx, js, queue.Layout{Replicas: replicas, Outputs: true})
	})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := reelq.NewClient(ctx, nc, reelq.Options{ProviderEnv: map[string]string{}, By: "faulttest"})
	if err != nil {
		t.Fatal(err)
	}
	ri, err := inspect.New(ctx, nc, reelq.Options{ProviderEnv: map[string]string{}, By: "faulttest"})
	if err != nil {
		t.Fatal(err)
	}
	return &client{nc: nc, js: js, rc: rc, ri: ri, states: jobstate.New(js, kv)}
}

// samsarJobs returns n valid Samsar jobs whose prompts name them, so the
// simulator's submission counts can be matched to jobs.
func samsarJobs(batch string, n int) []reelq.Job {
	jobs := make([]reelq.Job, n)
	for i := range jobs {
		id := fmt.Sprintf("%s-%03d", batch, i)
		jobs[i] = reelq.Job{ID: id, Provider: "samsar", Batch: batch,
			Input: []byte(fmt.Sprintf(`{"prompt":%q,"image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`, samsarPrompt(id)))}
	}
	return jobs
}

func samsarPrompt(id string) string { return "fault test, job " + id }

func samsarKey(j reelq.Job) string { return samsarPrompt(j.ID) }

// enqueue publishes jobs through the public client; every one must be new.
func (c *client) enqueue(t testing.TB, jobs []reelq.Job) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.rc.EnqueueBatch(ctx, jobs, reelq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Err != nil || o.Status != reelq.Published {
			t.Fatalf("enqueue %s: %s %v", o.ID, o.Status, o.Err)
		}
	}
}

// subjectCounts returns how many messages stream holds per subject
// matching filter. Errors (a server restarting) return nil.
func (c *client) subjectCounts(stream, filter string) map[string]uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil
	}
	if info.State.Subjects == nil {
		return map[string]uint64{}
	}
	return info.State.Subjects
}

func (c *client) streamMsgs(stream string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// resultCount is how many jobs have a result event (0 while unreachable).
func (c *client) resultCount() int { return len(c.subjectCounts(queue.StreamResults, "results.>")) }

// waitSettled waits until every job has a result event and JOBS is empty
// (every message acknowledged: nothing lost, nothing left to redeliver).
func (c *client) waitSettled(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	err := waitfor.Poll(timeout, func() error {
		if got := c.resultCount(); got < n {
			return fmt.Errorf("%d of %d jobs have a result", got, n)
		}
		return c.jobsEmpty()
	})
	if err != nil {
		t.Fatalf("not settled after %s: %v", timeout, err)
	}
}

// waitSettledOrHeld waits until every job has a result event or is held
// for an operator (the hold policy acknowledges a held job's message: it
// waits in its state), and JOBS is empty.
func (c *client) waitSettledOrHeld(t testing.TB, jobs []reelq.Job, timeout time.Duration) {
	t.Helper()
	err := waitfor.Poll(timeout, func() error {
		counts := c.subjectCounts(queue.StreamResults, "results.>")
		if counts == nil {
			return errors.New("RESULTS unreachable")
		}
		open := 0
		for _, j := range jobs {
			if counts[wire.ResultSubject(j.Provider, j.ID)] > 0 {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, _, err := c.states.Get(ctx, j.ID)
			cancel()
			if err != nil || st.Phase != reelq.PhaseHeld {
				open++
			}
		}
		if open > 0 {
			return fmt.Errorf("%d of %d jobs have neither a result nor are held", open, len(jobs))
		}
		return c.jobsEmpty()
	})
	if err != nil {
		t.Fatalf("not settled after %s: %v", timeout, err)
	}
}

// jobsEmpty reports whether JOBS holds no message.
func (c *client) jobsEmpty() error {
	left, err := c.streamMsgs(queue.StreamJobs)
	if err != nil {
		return err
	}
	if left > 0 {
		return fmt.Errorf("JOBS still holds %d messages", left)
	}
	return nil
}

// report is what one fault run measured.
type report struct {
	Jobs, Results, Succeeded, Failed, Cancelled, Held int
	// Ambiguous is the sum of the jobs' AmbiguousSubmits (submissions
	// whose outcome was unknown); AmbiguousJobs how many jobs had one.
	Ambiguous, AmbiguousJobs int
	// ExtraSubmissions counts paid submissions beyond one per job, as the
	// simulator saw them (double payments); every one must be covered by
	// Ambiguous. PaidTwiceJobs counts the jobs paid more than once.
	ExtraSubmissions, PaidTwiceJobs int
	// Archived counts outputs with an archived copy, ArchiveErrors those
	// published with archive_error.
	Archived, ArchiveErrors int
	// AmbiguousEvents, RecoveredEvents, HeldEvents and PaidTwiceEvents
	// count the events of those kinds (best effort: events published while
	// NATS was down are lost).
	AmbiguousEvents, RecoveredEvents, HeldEvents, PaidTwiceEvents uint64
}

func (r report) String() string {
	return fmt.Sprintf("jobs=%d results=%d succeeded=%d failed=%d cancelled=%d held=%d ambiguous_submits=%d ambiguous_jobs=%d extra_paid_submissions=%d paid_twice_jobs=%d archived=%d archive_errors=%d ambiguous_events=%d recovered_events=%d held_events=%d paid_twice_events=%d",
		r.Jobs, r.Results, r.Succeeded, r.Failed, r.Cancelled, r.Held, r.Ambiguous, r.AmbiguousJobs, r.ExtraSubmissions, r.PaidTwiceJobs,
		r.Archived, r.ArchiveErrors, r.AmbiguousEvents, r.RecoveredEvents, r.HeldEvents, r.PaidTwiceEvents)
}

// verify checks the guarantees after a run: exactly one result event per
// job (and none for anything else), every job finished, and no job paid
// for more often than its recorded ambiguous submissions allow.
func verify(t testing.TB, c *client, subs map[string]int, jobs []reelq.Job, key func(reelq.Job) string) report {
	t.Helper()
	return verifyHeld(t, c, subs, jobs, key, false)
}

// verifyHeld is verify where a job may instead be held (the hold policy):
// a held job has no result event, its message is acknowledged, and it was
// paid for at most once.
func verifyHeld(t testing.TB, c *client, subs map[string]int, jobs []reelq.Job, key func(reelq.Job) string, holdOK bool) report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep := report{Jobs: len(jobs)}
	counts := c.subjectCounts(queue.StreamResults, "results.>")
	rs, err := c.js.Stream(ctx, queue.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	expected := map[string]bool{}
	for _, j := range jobs {
		subj := wire.ResultSubject(j.Provider, j.ID)
		expected[subj] = true
		st, _, err := c.states.Get(ctx, j.ID)
		if err != nil {
			t.Errorf("job %s: state: %v", j.ID, err)
			continue
		}
		n := counts[subj]
		rep.Results += int(n)
		switch {
		case holdOK && st.Phase == reelq.PhaseHeld:
			rep.Held++
			if n != 0 {
				t.Errorf("job %s: held, but %d result events", j.ID, n)
			}
		case st.Phase != reelq.PhaseFinished:
			t.Errorf("job %s: phase %s, want finished", j.ID, st.Phase)
		case n != 1:
			t.Errorf("job %s: %d result events, want exactly 1", j.ID, n)
		}
		if n > 0 {
			m, err := rs.GetLastMsgForSubject(ctx, subj)
			if err != nil {
				t.Errorf("job %s: result: %v", j.ID, err)
			} else {
				var r reelq.Result
				if err := json.Unmarshal(m.Data, &r); err != nil {
					t.Errorf("job %s: bad result %s", j.ID, m.Data)
				}
				switch r.Status {
				case reelq.StatusSucceeded:
					rep.Succeeded++
				case reelq.StatusFailed:
					rep.Failed++
					t.Logf("job %s failed: %+v", j.ID, r.Error)
				case reelq.StatusCancelled:
					rep.Cancelled++
				}
				for _, o := range r.Outputs {
					if o.Archive != nil {
						rep.Archived++
					}
					if o.ArchiveError != "" {
						rep.ArchiveErrors++
					}
				}
			}
		}
		rep.Ambiguous += st.AmbiguousSubmits
		if st.AmbiguousSubmits > 0 {
			rep.AmbiguousJobs++
		}
		got := subs[key(j)]
		if got > 1 {
			rep.ExtraSubmissions += got - 1
			rep.PaidTwiceJobs++
		}
		if got > 1+st.AmbiguousSubmits {
			t.Errorf("job %s: the provider saw %d paid submissions, but only %d ambiguous submissions were recorded",
				j.ID, got, st.AmbiguousSubmits)
		}
	}
	for subj, n := range counts {
		if !expected[subj] {
			t.Errorf("RESULTS holds %d events for %s, which is no job of this run", n, subj)
		}
	}
	known := map[string]bool{}
	for _, j := range jobs {
		known[key(j)] = true
	}
	for p, n := range subs {
		if n > 0 && !known[p] {
			t.Errorf("provider saw %d submissions of an unknown prompt %q", n, p)
		}
	}
	rep.AmbiguousEvents = c.eventCount(reelq.EventAmbiguousSubmit)
	rep.RecoveredEvents = c.eventCount(reelq.EventRecoveredTask)
	rep.HeldEvents = c.eventCount(reelq.EventHeld)
	rep.PaidTwiceEvents = c.eventCount(reelq.EventPaidTwice)
	return rep
}

// eventCount is how many events of kind EVENTS holds, about any provider
// or job (job events are on events.<provider>.<kind>.<job_id>).
func (c *client) eventCount(kind string) uint64 {
	var n uint64
	for _, f := range wire.EventFilter("*", kind) {
		for _, m := range c.subjectCounts(queue.StreamEvents, f) {
			n += m
		}
	}
	return n
}
