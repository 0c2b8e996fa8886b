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

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
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

// dumpLogs prints the tail of every log in dir when the test failed, and
// fails it if a child built with -race (REELQ_FAULTTEST_RACE=1) reported
// a data race.
func dumpLogs(t testing.TB, dir string) {
	t.Cleanup(func() {
		files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
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
}

// startSim runs cmd/providersim with knobs (each gets the test API key).
func startSim(t testing.TB, dir string, knobs map[string]providersim.Knobs) *sim {
	t.Helper()
	all := map[string]providersim.Knobs{}
	for _, p := range providersim.Providers {
		k := knobs[p]
		k.APIKey = apiKey
		all[p] = k
	}
	b, _ := json.Marshal(all)
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
	var all map[string]providersim.Stats
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatalf("providersim stats: %v", err)
	}
	return all[provider]
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
	if err := eventually(60*time.Second, func() error {
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
		"REELQ_ACK_WAIT":           "2s",
		"REELQ_RETRY_BASE":         "100ms",
		"REELQ_RETRY_MAX":          "1s",
		"REELQ_MAX_ATTEMPTS":       "10",
		"REELQ_SHUTDOWN_TIMEOUT":   "5s",
		"LOG_FORMAT":               "json",
		"LOG_LEVEL":                "info",
	}
	for k, v := range env {
		base[k] = v
	}
	return &workers{t: t, dir: dir, env: base, procs: map[string]*proc{}, gens: map[string]int{}}
}

// start starts replica id (a new generation if it ran before).
func (w *workers) start(id string) *proc {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gens[id]++
	wid := fmt.Sprintf("%s.%d", id, w.gens[id])
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

type client struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	states   *jobstate.Store
	producer *queue.Producer
}

// connect opens a client to url and sets up reelq's streams and buckets
// with the given replica count, retrying while a cluster forms.
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
	err = eventually(60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return queue.Setup(ctx, js, queue.Layout{Replicas: replicas})
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
	states := jobstate.New(kv)
	return &client{nc: nc, js: js, states: states, producer: &queue.Producer{JS: js, States: states}}
}

// eventually retries f every 100ms until it succeeds or d passes.
func eventually(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		<-t.C
	}
}

// samsarJobs returns n valid Samsar jobs whose prompts name them, so the
// simulator's submission counts can be matched to jobs.
func samsarJobs(batch string, n int) []queue.Job {
	jobs := make([]queue.Job, n)
	for i := range jobs {
		id := fmt.Sprintf("%s-%03d", batch, i)
		jobs[i] = queue.Job{ID: id, Provider: "samsar", Batch: batch,
			Input: []byte(fmt.Sprintf(`{"prompt":%q,"image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`, samsarPrompt(id)))}
	}
	return jobs
}

func samsarPrompt(id string) string { return "fault test, job " + id }

func (c *client) enqueue(t testing.TB, jobs []queue.Job) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.producer.Publish(ctx, jobs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Err != nil || o.Status != "published" {
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
	err := eventually(timeout, func() error {
		if got := c.resultCount(); got < n {
			return fmt.Errorf("%d of %d jobs have a result", got, n)
		}
		left, err := c.streamMsgs(queue.StreamJobs)
		if err != nil {
			return err
		}
		if left > 0 {
			return fmt.Errorf("all %d jobs have results but JOBS still holds %d messages", n, left)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("not settled after %s: %v", timeout, err)
	}
}

// report is what one fault run measured.
type report struct {
	Jobs, Results, Succeeded, Failed, Cancelled int
	// Ambiguous is the sum of the jobs' AmbiguousSubmits (resubmissions
	// after an unknown outcome); AmbiguousJobs how many jobs had one.
	Ambiguous, AmbiguousJobs int
	// ExtraSubmissions counts paid submissions beyond one per job, as the
	// simulator saw them; every one must be covered by Ambiguous.
	ExtraSubmissions int
	// AmbiguousEvents and RecoveredEvents count the events of those kinds
	// (best effort: events published while NATS was down are lost).
	AmbiguousEvents, RecoveredEvents uint64
}

func (r report) String() string {
	return fmt.Sprintf("jobs=%d results=%d succeeded=%d failed=%d cancelled=%d ambiguous_resubmits=%d ambiguous_jobs=%d extra_paid_submissions=%d ambiguous_events=%d recovered_events=%d",
		r.Jobs, r.Results, r.Succeeded, r.Failed, r.Cancelled, r.Ambiguous, r.AmbiguousJobs, r.ExtraSubmissions, r.AmbiguousEvents, r.RecoveredEvents)
}

// verify checks the guarantees after a run: exactly one result event per
// job (and none for anything else), every job finished, and no job paid
// for more often than its recorded ambiguous resubmissions allow.
func verify(t testing.TB, c *client, subs map[string]int, jobs []queue.Job, prompt func(queue.Job) string) report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep := report{Jobs: len(jobs)}
	counts := c.subjectCounts(queue.StreamResults, "results.>")
	if len(counts) != len(jobs) {
		t.Errorf("RESULTS has %d subjects, want %d (one per job)", len(counts), len(jobs))
	}
	rs, err := c.js.Stream(ctx, queue.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		subj := queue.ResultSubject(j.Provider, j.ID)
		n := counts[subj]
		rep.Results += int(n)
		if n != 1 {
			t.Errorf("job %s: %d result events, want exactly 1", j.ID, n)
		}
		if m, err := rs.GetLastMsgForSubject(ctx, subj); err == nil {
			var r queue.Result
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Errorf("job %s: bad result %s", j.ID, m.Data)
			}
			switch r.Status {
			case queue.StatusSucceeded:
				rep.Succeeded++
			case queue.StatusFailed:
				rep.Failed++
				t.Logf("job %s failed: %+v", j.ID, r.Error)
			case queue.StatusCancelled:
				rep.Cancelled++
			}
		}
		st, _, err := c.states.Get(ctx, j.ID)
		if err != nil {
			t.Errorf("job %s: state: %v", j.ID, err)
			continue
		}
		if st.Phase != jobstate.Finished {
			t.Errorf("job %s: phase %s, want finished", j.ID, st.Phase)
		}
		rep.Ambiguous += st.AmbiguousSubmits
		if st.AmbiguousSubmits > 0 {
			rep.AmbiguousJobs++
		}
		got := subs[prompt(j)]
		if got > 1 {
			rep.ExtraSubmissions += got - 1
		}
		if got > 1+st.AmbiguousSubmits {
			t.Errorf("job %s: the provider saw %d paid submissions, but only %d ambiguous resubmissions were recorded",
				j.ID, got, st.AmbiguousSubmits)
		}
	}
	known := map[string]bool{}
	for _, j := range jobs {
		known[prompt(j)] = true
	}
	for p, n := range subs {
		if n > 0 && !known[p] {
			t.Errorf("provider saw %d submissions of an unknown prompt %q", n, p)
		}
	}
	ev := c.subjectCounts(queue.StreamEvents, "events.>")
	for subj, n := range ev {
		switch {
		case strings.HasSuffix(subj, "."+queue.EventAmbiguousSubmit):
			rep.AmbiguousEvents += n
		case strings.HasSuffix(subj, "."+queue.EventRecoveredTask):
			rep.RecoveredEvents += n
		}
	}
	return rep
}

// waitPhase waits until job id's state satisfies ok.
func (c *client) waitPhase(t testing.TB, id string, timeout time.Duration, ok func(*jobstate.State) bool) *jobstate.State {
	t.Helper()
	var st *jobstate.State
	err := eventually(timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, _, err := c.states.Get(ctx, id)
		if err != nil {
			return err
		}
		st = s
		if !ok(s) {
			return fmt.Errorf("job %s in phase %s", id, s.Phase)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for job %s: %v", id, err)
	}
	return st
}

// errNotYet is what an eventually condition returns while it does not hold.
var errNotYet = errors.New("not yet")
