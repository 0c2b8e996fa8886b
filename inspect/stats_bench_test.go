package inspect_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/embedded"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/wire"
)

// BenchmarkStats checks issue 11's bound: Stats answers in under 1 s using
// under 100 MB with 1,000,000 job states kept (REELQ_BENCH_STATES changes
// the count) in batches of 1,000 jobs (REELQ_BENCH_BATCH; 1,000 batches, a
// month of them), each with its
// counters, and a worker running every provider. The states are written
// straight into reelq_jobs (async publishes on $KV.reelq_jobs.<id>, in
// windows), as a month of workers would have left them; a million take
// half a minute to a minute and about 1 GB of disk.
//
// The server is a nats-server process built from the module, so this
// process's memory is the client's (and an idle worker's); with
// REELQ_BENCH_SERVER=embedded it runs in this process, and its heap
// then dominates the RSS figure (the garbage collector lets the heap grow
// in proportion to the server's million-entry index), which is not
// checked against the bound.
//
// It reports the first call after the fill (stats_cold_ms), the mean of
// the calls b.Loop makes (stats_ms), the bytes this process allocates per
// call (stats_alloc_MB) and its peak RSS during the calls over its RSS
// before them (stats_rss_growth_MB).
//
//	go test -run '^$' -bench '^BenchmarkStats$' -benchtime 20x .
func BenchmarkStats(b *testing.B) {
	n := envInt(b, "REELQ_BENCH_STATES", 1_000_000)
	perBatch := envInt(b, "REELQ_BENCH_BATCH", 1000)
	external := true
	var natsURL string
	switch kind := os.Getenv("REELQ_BENCH_SERVER"); kind {
	case "", "external":
		natsURL = natsServer(b)
	case "embedded":
		external = false
		s, err := embedded.Start(embedded.Options{Name: "bench", Listen: "127.0.0.1:-1", StoreDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { embedded.Stop(s) })
		natsURL = s.ClientURL()
	default:
		b.Fatalf("REELQ_BENCH_SERVER=%q: want external or embedded", kind)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	// The streams and buckets a worker creates (Stats reads no worker).
	if err := queue.Setup(ctx, js, queue.Layout{}); err != nil {
		b.Fatal(err)
	}
	client, err := inspect.New(ctx, nc, reelq.Options{By: "bench"})
	if err != nil {
		b.Fatal(err)
	}

	t0 := time.Now()
	batches := fillStates(b, nc, n, perBatch)
	b.Logf("filled %d job states in %d batches in %s", n, batches, time.Since(t0).Round(time.Millisecond))
	kv, err := js.KeyValue(ctx, wire.BucketJobs)
	if err != nil {
		b.Fatal(err)
	}
	if st, err := kv.Status(ctx); err != nil || st.Values() != uint64(n) {
		b.Fatalf("reelq_jobs holds %v values (%v), want %d", st.Values(), err, n)
	}

	check := func(s *inspect.Stats) {
		if len(s.Providers) != len(reelq.Providers) || len(s.Batches) != min(batches, 20) {
			b.Fatalf("stats: %d providers, %d batches; want %d and %d", len(s.Providers), len(s.Batches), len(reelq.Providers), min(batches, 20))
		}
		for _, bs := range s.Batches {
			if bs.Enqueued == 0 || bs.Done() != bs.Enqueued {
				b.Fatalf("batch %+v: counters not read", bs)
			}
		}
		for _, p := range s.Providers {
			if p.NoWorker {
				b.Fatalf("provider %s: no worker", p.Provider)
			}
		}
	}

	// The first call, as `enqueue stats` makes it.
	var cold time.Duration
	coldRSS := rssDuring(func() {
		start := time.Now()
		s, err := client.Stats(ctx, inspect.StatsOptions{})
		cold = time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		check(s)
	})

	var (
		total  time.Duration
		calls  int
		m0, m1 runtime.MemStats
	)
	runtime.GC()
	runtime.ReadMemStats(&m0)
	growth := rssDuring(func() {
		for b.Loop() {
			start := time.Now()
			s, err := client.Stats(ctx, inspect.StatsOptions{})
			total += time.Since(start)
			calls++
			if err != nil {
				b.Fatal(err)
			}
			check(s)
		}
	})
	runtime.ReadMemStats(&m1)
	growth = max(growth, coldRSS)

	mean := total / time.Duration(calls)
	allocMB := float64(m1.TotalAlloc-m0.TotalAlloc) / float64(calls) / (1 << 20)
	b.ReportMetric(float64(cold.Microseconds())/1000, "stats_cold_ms")
	b.ReportMetric(float64(mean.Microseconds())/1000, "stats_ms")
	b.ReportMetric(allocMB, "stats_alloc_MB")
	b.ReportMetric(float64(growth)/(1<<20), "stats_rss_growth_MB")
	b.Logf("Stats with %d job states, %d batches: first call %s, mean %s over %d calls, %.2f MB allocated per call, peak RSS growth %.1f MB (RSS after: %.0f MB; server's: %s)",
		n, batches, cold.Round(time.Microsecond), mean.Round(time.Microsecond), calls, allocMB, float64(growth)/(1<<20), float64(procStatus("VmRSS"))/(1<<20), serverRSS())
	if cold > time.Second || mean > time.Second || allocMB > 100 || (external && growth > 100<<20) {
		b.Errorf("Stats over the bound (1 s, 100 MB): first %s, mean %s, %.1f MB allocated, %.1f MB RSS growth",
			cold, mean, allocMB, float64(growth)/(1<<20))
	}
}

// fillStates writes n finished job states (a few still running) into
// reelq_jobs and the counters of their batches of perBatch jobs, with
// async publishes in windows. It returns the number of batches.
func fillStates(b *testing.B, nc *nats.Conn, n, perBatch int) int {
	const window = 20_000
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2*window), jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	wait := func(futs []jetstream.PubAckFuture) {
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(2 * time.Minute):
			b.Fatalf("%d publishes unanswered after 2 minutes", js.PublishAsyncPending())
		}
		for _, f := range futs {
			select {
			case err := <-f.Err():
				b.Fatalf("publish %s: %v", f.Msg().Subject, err)
			default:
			}
		}
	}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	futs := make([]jetstream.PubAckFuture, 0, window)
	for start := 0; start < n; start += window {
		futs = futs[:0]
		for i := start; i < min(start+window, n); i++ {
			id := fmt.Sprintf("bench-%07d", i)
			f, err := js.PublishMsgAsync(&nats.Msg{Subject: "$KV." + wire.BucketJobs + "." + id, Data: benchState(id, i, perBatch, t0)})
			if err != nil {
				b.Fatal(err)
			}
			futs = append(futs, f)
		}
		wait(futs)
	}
	// Each batch's counters, as the client and the workers keep them.
	batches := (n + perBatch - 1) / perBatch
	futs = futs[:0]
	for k := range batches {
		size := min(perBatch, n-k*perBatch)
		failed, cancelled := size/25, size/100
		for field, v := range map[string]int{
			"enqueued": size, "done_succeeded": size - failed - cancelled, "done_failed": failed, "done_cancelled": cancelled,
			wire.SpendCounterField("credits"): size * 50_000_000,
		} {
			// enqueued in COUNTERS, the rest in the tallies the workers fold
			m := nats.NewMsg(wire.BatchCounterSubject(benchBatch(k), field))
			m.Header.Set("Nats-Incr", "+"+strconv.Itoa(v))
			if field != "enqueued" {
				m = nats.NewMsg("$KV." + wire.BucketTallies + "." + wire.TallyKey("batch", benchBatch(k), field))
				m.Data = []byte(`{"val":"` + strconv.Itoa(v) + `","through":1}`)
			}
			f, err := js.PublishMsgAsync(m)
			if err != nil {
				b.Fatal(err)
			}
			futs = append(futs, f)
		}
		if len(futs) >= window {
			wait(futs)
			futs = futs[:0]
		}
	}
	wait(futs)
	return batches
}

func benchBatch(k int) string { return fmt.Sprintf("bench-batch-%05d", k) }

// benchState is job i's state: a finished Samsar-sized job with its result
// (about 1 KB, as real ones are), or, for one job in a hundred, one still
// being polled.
func benchState(id string, i, perBatch int, t0 time.Time) []byte {
	p := reelq.Providers[i%len(reelq.Providers)]
	enq := t0.Add(time.Duration(i) * time.Second)
	sub := enq.Add(2 * time.Second)
	done := sub.Add(70 * time.Second)
	input := fmt.Sprintf(`{"prompt":"a lighthouse keeper finds a message in a bottle, scene %d","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`, i)
	st := reelq.JobState{ID: id, Provider: p, Batch: benchBatch(i / perBatch), Digest: "sha256:" + strings.Repeat("ab", 32),
		Phase: reelq.PhaseFinished, Run: 1, Seq: uint64(i + 1), Input: json.RawMessage(input), Metadata: json.RawMessage(`{"order":` + strconv.Itoa(i) + `}`),
		Task: &reelq.Task{ID: fmt.Sprintf("task-%012d", i)}, Attempts: 0, Submissions: 1, Worker: "worker-7f9c-1", SubmitToken: "tok-" + id,
		EnqueuedAt: &enq, SubmitStartedAt: &sub, SubmittedAt: &sub, UpdatedAt: done}
	if i%100 == 99 {
		st.Phase = reelq.PhaseSubmitted
	} else {
		r := reelq.Result{ID: id, Provider: p, Batch: st.Batch, Run: 1, Status: reelq.StatusSucceeded, Attempts: 1, ProviderTaskID: st.Task.ID,
			Outputs:  []reelq.Output{{URL: "https://cdn.samsar.one/videos/" + st.Task.ID + ".mp4", ContentType: "video/mp4", Name: "video"}},
			Cost:     &reelq.Cost{Amount: 50, Unit: "credits", Basis: "10 credits/s x 5 s"},
			Metadata: st.Metadata, EnqueuedAt: &enq, SubmittedAt: &sub, CompletedAt: done}
		st.Result, _ = json.Marshal(r)
	}
	data, _ := json.Marshal(st)
	return data
}

// natsServer builds the nats-server command from the module, starts it
// with JetStream on a free loopback port and its store in a temporary
// directory, waits for its "Server is ready" line and returns its URL; it
// is stopped when the benchmark ends.
func natsServer(b *testing.B) string {
	dir := b.TempDir()
	bin := filepath.Join(dir, "nats-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatalf("build nats-server: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listen: \"127.0.0.1:%d\"\nmax_payload: 4MB\njetstream { store_dir: %q, max_file_store: 8GB }\n",
		port, filepath.Join(dir, "store")), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	logs, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(logs)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Server is ready") {
				close(ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, logs)
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		b.Fatal("nats-server not ready after 30 s")
	}
	serverPID = cmd.Process.Pid
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// serverPID is the external nats-server's process id, for its RSS in the
// log.
var serverPID int

func serverRSS() string {
	if serverPID == 0 {
		return "in this process"
	}
	return fmt.Sprintf("%.0f MB", float64(pidStatus(strconv.Itoa(serverPID), "VmRSS"))/(1<<20))
}

// rssDuring runs f and returns the process's peak RSS during it minus
// its RSS before, once the garbage of the fill is returned to the system:
// the peak is VmHWM, reset through /proc/self/clear_refs where the kernel
// allows it, and VmRSS sampled every 5 ms.
func rssDuring(f func()) int64 {
	debug.FreeOSMemory()
	base := procStatus("VmRSS")
	reset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	done := make(chan struct{})
	var (
		wg   sync.WaitGroup
		peak int64
	)
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, procStatus("VmRSS"))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	peak = max(peak, procStatus("VmRSS"))
	if reset {
		peak = max(peak, procStatus("VmHWM"))
	}
	return max(0, peak-base)
}

// procStatus returns a "kB" field of /proc/self/status in bytes (0 where
// there is no /proc).
func procStatus(field string) int64 { return pidStatus("self", field) }

// pidStatus returns a "kB" field of /proc/<pid>/status in bytes.
func pidStatus(pid, field string) int64 {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
