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
// in flight in one replica (REELQ_BENCH_INFLIGHT, default 10000; e.g.
// 100000): it waits until every job is submitted and being polled, then
// reports the worker's resident memory and its CPU per poll (heartbeats for
// all N messages included) over a measuring window (REELQ_BENCH_WINDOW_S,
// default 30; every job is polled every REELQ_BENCH_POLL_S, default 10).
// REELQ_BENCH_METADATA_BYTES gives every job metadata of about that size
// (at most 16 KiB), to show what a job's payload costs in flight. Run it
// with -benchtime 1x.
func BenchmarkInFlight(b *testing.B) {
	n := envInt("REELQ_BENCH_INFLIGHT", 10000)
	window := time.Duration(envInt("REELQ_BENCH_WINDOW_S", 30)) * time.Second
	poll := time.Duration(envInt("REELQ_BENCH_POLL_S", 10)) * time.Second
	pad := envInt("REELQ_BENCH_METADATA_BYTES", 0)
	dir := b.TempDir()
	bins := buildBins(b, dir, "worker", "providersim")
	for range b.N {
		srv := startServer(b)
		simAddr := freeAddr(b)
		sim := startProcess(b, dir, bins["providersim"], []string{"-addr", simAddr, "-api-key", "k", "-complete-after", "24h", "-jitter", "0"}, nil)
		waitTCP(b, simAddr)
		httpAddr := freeAddr(b)
		env := []string{
			"NATS_URL=" + srv.url, "SAMSAR_API_KEY=k", "SAMSAR_BASE_URL=http://" + simAddr,
			"SAMSAR_RATE=3000", "SAMSAR_BURST=100", fmt.Sprintf("SAMSAR_MAX_INFLIGHT=%d", n),
			"SAMSAR_POLL_INTERVAL=" + poll.String(), "SAMSAR_MAX_POLL_INTERVAL=" + poll.String(), "SAMSAR_CALLS=64",
			fmt.Sprintf("REELQ_WINDOW=%d", n+20000), "REELQ_ARCHIVE=off", "REELQ_VALIDATE=false", "LOG_LEVEL=warn",
			"WORKER_HTTP_ADDR=" + httpAddr, "REELQ_WORKER_ID=inflight", "WORKER_PPROF=true",
		}
		worker := startProcess(b, dir, bins["worker"], nil, env)
		waitTCP(b, httpAddr)

		nc, err := nats.Connect(srv.url)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		client, err := reelq.NewClient(ctx, nc, reelq.Options{ProviderEnv: map[string]string{}})
		if err != nil {
			b.Fatal(err)
		}
		jobs := make([]reelq.Job, n)
		for i := range jobs {
			jobs[i] = job(i)
			if pad > 0 {
				jobs[i].Metadata = json.RawMessage(`{"pad":"` + strings.Repeat("m", pad) + `"}`)
			}
		}
		if _, err := client.EnqueueBatch(ctx, jobs, reelq.BatchOptions{}); err != nil {
			b.Fatal(err)
		}
		jobs = nil
		start := time.Now()
		for {
			st := simStats(b, simAddr)
			if st.Tasks >= n {
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("only %d of %d jobs submitted after 10 minutes", st.Tasks, n)
			}
			time.Sleep(500 * time.Millisecond) // polling an external process's counters
		}
		submitSecs := time.Since(start).Seconds()
		// Let the first poll round start, then measure a window of polls.
		time.Sleep(5 * time.Second) // settling, not waiting for an event
		polls0, cpu0, srvCPU0 := simStats(b, simAddr).Requests["poll 200"], procCPU(worker.Process.Pid), srv.cpu()
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
		peak := procRSS(worker.Process.Pid)
		end := time.Now().Add(window)
		for time.Now().Before(end) {
			time.Sleep(time.Second) // sampling memory over the window
			peak = max(peak, procRSS(worker.Process.Pid))
		}
		polls := simStats(b, simAddr).Requests["poll 200"] - polls0
		cpu, srvCPU := procCPU(worker.Process.Pid)-cpu0, srv.cpu()-srvCPU0
		b.StopTimer()
		b.ReportMetric(float64(peak)/(1<<20), "worker_rss_MB")
		if polls > 0 {
			b.ReportMetric(cpu.Seconds()*1e3/float64(polls), "worker_cpu_ms/poll")
			b.ReportMetric(srvCPU.Seconds()*1e3/float64(polls), "server_cpu_ms/poll")
		}
		b.Logf("%d jobs in flight in one worker (submitted in %.0f s): worker RSS %.0f MB (peak over %s); %d polls in the window: worker CPU %.3f ms/poll, nats-server CPU %.3f ms/poll (heartbeats for %d messages every 15 s included)",
			n, submitSecs, float64(peak)/(1<<20), window, polls, cpu.Seconds()*1e3/float64(max(polls, 1)), srvCPU.Seconds()*1e3/float64(max(polls, 1)), n)
		nc.Close()
		_ = worker.Process.Signal(syscall.SIGKILL)
		_ = sim.Process.Signal(syscall.SIGTERM)
		_ = worker.Wait()
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
