package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/waitfor"
)

// BenchmarkInFlight runs the real worker binary against the provider
// simulator (both processes, with a nats-server process) with N long jobs
// in flight (REELQ_BENCH_INFLIGHT, default 10000; e.g. 100000) in one
// replica, or spread over REELQ_BENCH_REPLICAS worker processes (each
// with N/replicas slots and 5% more): it waits until every job is submitted and being
// polled, then reports the largest replica's resident memory (and with
// several, all replicas' together) and the workers' CPU per poll
// (heartbeats for all N messages included) over a measuring window
// (REELQ_BENCH_WINDOW_S, default 30; every job is polled every
// REELQ_BENCH_POLL_S, default 10; the provider's rate limit is
// REELQ_BENCH_RATE calls a second, default 3000, polls included).
// REELQ_BENCH_METADATA_BYTES gives every job metadata of about that size
// (at most 16 KiB), to show what a job's payload costs in flight.
// REELQ_BENCH_HEAPPROFILE and REELQ_BENCH_CPUPROFILE name files for the
// worker's heap profile at the window's end (FILE.txt: the same in text,
// with runtime.MemStats) and its CPU profile over the window (go tool
// pprof -top FILE). Run it with -benchtime 1x.
func BenchmarkInFlight(b *testing.B) {
	n := envInt("REELQ_BENCH_INFLIGHT", 10000)
	replicas := max(envInt("REELQ_BENCH_REPLICAS", 1), 1)
	window := time.Duration(envInt("REELQ_BENCH_WINDOW_S", 30)) * time.Second
	poll := time.Duration(envInt("REELQ_BENCH_POLL_S", 10)) * time.Second
	rate := envInt("REELQ_BENCH_RATE", 3000)
	pad := envInt("REELQ_BENCH_METADATA_BYTES", 0)
	dir := b.TempDir()
	bins := buildBins(b, dir, "worker", "providersim")
	for range b.N {
		srv := startServer(b)
		simAddr := freeAddr(b)
		sim := startProcess(b, dir, bins["providersim"], []string{"-addr", simAddr, "-api-key", "k", "-complete-after", "24h", "-jitter", "0"}, nil)
		waitTCP(b, simAddr)
		var workers []*exec.Cmd
		var httpAddrs []string
		for r := range replicas {
			httpAddr := freeAddr(b)
			env := []string{
				"NATS_URL=" + srv.url, "SAMSAR_API_KEY=k", "SAMSAR_BASE_URL=http://" + simAddr,
				fmt.Sprintf("SAMSAR_RATE=%d", rate), "SAMSAR_BURST=100", fmt.Sprintf("SAMSAR_MAX_INFLIGHT=%d", n),
				// Each replica its share and some: the messages do not
				// spread exactly evenly over the replicas' pulls.
				fmt.Sprintf("SAMSAR_SLOTS=%d", n/replicas+n/replicas/20+64),
				"SAMSAR_POLL_INTERVAL=" + poll.String(), "SAMSAR_MAX_POLL_INTERVAL=" + poll.String(), "SAMSAR_CALLS=64",
				fmt.Sprintf("REELQ_WINDOW=%d", n+20000), "REELQ_ARCHIVE=off", "REELQ_VALIDATE=false", "LOG_LEVEL=warn",
				"WORKER_HTTP_ADDR=" + httpAddr, fmt.Sprintf("REELQ_WORKER_ID=inflight-%d", r), "WORKER_PPROF=true",
			}
			// Each replica logs to a file of its own (startProcess names it
			// after the binary).
			bin := filepath.Join(dir, fmt.Sprintf("worker-%d", r))
			if err := os.Link(bins["worker"], bin); err != nil {
				b.Fatal(err)
			}
			workers = append(workers, startProcess(b, dir, bin, nil, env))
			httpAddrs = append(httpAddrs, httpAddr)
		}
		for _, a := range httpAddrs {
			waitTCP(b, a)
		}
		httpAddr := httpAddrs[0] // the profiles are the first replica's

		nc, err := nats.Connect(srv.url)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		client, err := reelq.NewClient(ctx, nc, reelq.Options{ProviderEnv: map[string]string{}})
		if err != nil {
			b.Fatal(err)
		}
		for from := 0; from < n; from += 100000 { // batches of at most 100,000
			jobs := make([]reelq.Job, min(n-from, 100000))
			for i := range jobs {
				jobs[i] = job(from + i)
				if pad > 0 {
					jobs[i].Metadata = json.RawMessage(`{"pad":"` + strings.Repeat("m", pad) + `"}`)
				}
			}
			if _, err := client.EnqueueBatch(ctx, jobs, reelq.BatchOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		limit := 10*time.Minute + 2*time.Duration(n/rate)*time.Second
		for {
			st := simStats(b, simAddr)
			if st.Tasks >= n {
				break
			}
			if time.Since(start) > limit {
				b.Fatalf("only %d of %d jobs submitted after %s", st.Tasks, n, limit)
			}
			time.Sleep(500 * time.Millisecond) // polling an external process's counters
		}
		submitSecs := time.Since(start).Seconds()
		// Let the first poll round start, then measure a window of polls.
		time.Sleep(5 * time.Second) // settling, not waiting for an event
		cpuOf := func() (d time.Duration) {
			for _, w := range workers {
				d += procCPU(w.Process.Pid)
			}
			return d
		}
		rssOf := func() (sum, top int64) {
			for _, w := range workers {
				r := procRSS(w.Process.Pid)
				sum, top = sum+r, max(top, r)
			}
			return sum, top
		}
		polls0, cpu0, srvCPU0 := simStats(b, simAddr).Requests["poll 200"], cpuOf(), srv.cpu()
		if f := os.Getenv("REELQ_BENCH_CPUPROFILE"); f != "" {
			go func() { // the worker's own profile over the window
				resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", httpAddr, int(window.Seconds())-2))
				if err == nil {
					defer resp.Body.Close()
					if out, err := os.Create(f); err == nil {
						_, _ = io.Copy(out, resp.Body)
						_ = out.Close()
					}
				}
			}()
		}
		peakSum, peak := rssOf()
		end := time.Now().Add(window)
		for time.Now().Before(end) {
			time.Sleep(time.Second) // sampling memory over the window
			sum, top := rssOf()
			peakSum, peak = max(peakSum, sum), max(peak, top)
		}
		polls := simStats(b, simAddr).Requests["poll 200"] - polls0
		if f := os.Getenv("REELQ_BENCH_HEAPPROFILE"); f != "" {
			saveURL(b, fmt.Sprintf("http://%s/debug/pprof/heap", httpAddr), f)
			saveURL(b, fmt.Sprintf("http://%s/debug/pprof/heap?debug=1", httpAddr), f+".txt") // with runtime.MemStats
		}
		cpu, srvCPU := cpuOf()-cpu0, srv.cpu()-srvCPU0
		b.StopTimer()
		b.ReportMetric(float64(peak)/(1<<20), "worker_rss_MB")
		if replicas > 1 {
			b.ReportMetric(float64(peakSum)/(1<<20), "workers_rss_MB")
		}
		if polls > 0 {
			b.ReportMetric(cpu.Seconds()*1e3/float64(polls), "worker_cpu_ms/poll")
			b.ReportMetric(srvCPU.Seconds()*1e3/float64(polls), "server_cpu_ms/poll")
		}
		b.Logf("%d jobs in flight in %d worker(s) (submitted in %.0f s): worker RSS %.0f MB, all replicas %.0f MB (peaks over %s); %d polls in the window: worker CPU %.3f ms/poll, nats-server CPU %.3f ms/poll (heartbeats for %d messages every 15 s included)",
			n, replicas, submitSecs, float64(peak)/(1<<20), float64(peakSum)/(1<<20), window, polls, cpu.Seconds()*1e3/float64(max(polls, 1)), srvCPU.Seconds()*1e3/float64(max(polls, 1)), n)
		nc.Close()
		for _, w := range workers {
			_ = w.Process.Signal(syscall.SIGKILL)
		}
		_ = sim.Process.Signal(syscall.SIGTERM)
		for _, w := range workers {
			_ = w.Wait()
		}
		_ = sim.Wait()
		srv.stop()
	}
}

// buildBins builds the named commands of this module into dir.
func buildBins(tb testing.TB, dir string, names ...string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for _, name := range names {
		p := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", p, "github.com/reelq/reelq/cmd/"+name)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			tb.Fatalf("build %s: %v", name, err)
		}
		out[name] = p
	}
	return out
}

func startProcess(tb testing.TB, dir, bin string, args, env []string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(dir, filepath.Base(bin)+".log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = logf.Close()
		if tb.Failed() {
			if f, err := os.Open(logf.Name()); err == nil {
				sc := bufio.NewScanner(f)
				for sc.Scan() {
					tb.Log(sc.Text())
				}
				_ = f.Close()
			}
		}
	})
	return cmd
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitTCP(tb testing.TB, addr string) {
	tb.Helper()
	waitfor.Until(tb, 30*time.Second, "a listener on "+addr, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func simStats(tb testing.TB, addr string) providersim.Stats {
	tb.Helper()
	resp, err := http.Get("http://" + addr + "/admin/stats")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var all map[string]providersim.Stats
	if err := json.Unmarshal(b, &all); err != nil {
		tb.Fatalf("admin stats: %v: %s", err, strings.TrimSpace(string(b)))
	}
	return all["samsar"]
}

// saveURL writes what url serves to the file f (a profile of the worker).
func saveURL(tb testing.TB, url, f string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Logf("%s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	out, err := os.Create(f)
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		tb.Logf("%s: %v", url, err)
	}
}
