package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/media"
)

// BenchmarkArchive archives one large output (1 GiB by default;
// REELQ_ARCHIVE_BENCH_BYTES changes it), generated on the fly and streamed
// by an httptest handler, into:
//
//   - disk: a plain io.Copy of the same source to a file, the ceiling;
//   - jetstream: a JetStream object store on a nats-server running as a
//     separate process (built from the module's nats-server);
//   - s3: an S3Store on gofakes3 running as a separate process (this test
//     binary started again), so that its in-memory copy is not counted.
//
// The output is a valid MP4 (the simulator's clip, then one "free" box
// of generated filler), so every copy is inspected as media the way the
// worker's are; jetstream-plain and discard-plain are the same copies
// without the inspection, the baseline of its cost, and discard is what
// the worker does with REELQ_ARCHIVE=off (download, inspect, drop).
//
// Each reports MB/s, cpu_ms/GiB (this process's user+system CPU; the
// nats-server and S3 processes are not counted) and rss_growth_MB, the
// growth of this process's peak RSS (VmHWM, reset through
// /proc/self/clear_refs; sampled VmRSS where that is refused) over its
// RSS before the run. Run it alone, once:
//
//	go test -run '^$' -bench BenchmarkArchive -benchtime 1x ./internal/archive/
func BenchmarkArchive(b *testing.B) {
	size := int64(1 << 30)
	if v := os.Getenv("REELQ_ARCHIVE_BENCH_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("REELQ_ARCHIVE_BENCH_BYTES=%q: %v", v, err)
		}
		size = n
	}
	clip, err := os.ReadFile(filepath.Join("..", "providersim", "media", "av.mp4"))
	if err != nil {
		b.Fatal(err)
	}
	block := payload(99, 1<<20)
	want := mp4SHA(clip, block, size)
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/mp4")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		_ = writeMP4(w, clip, block, size)
	}))
	defer src.Close()
	dir := b.TempDir()

	b.Run("disk", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{}}
		defer client.Transport.(*http.Transport).CloseIdleConnections()
		measure(b, size, func() {
			resp, err := client.Get(src.URL)
			if err != nil {
				b.Fatal(err)
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(dir, "disk.out"))
			if err != nil {
				b.Fatal(err)
			}
			defer os.Remove(f.Name())
			defer f.Close()
			if n, err := io.Copy(f, resp.Body); err != nil || n != size {
				b.Fatalf("copied %d bytes: %v", n, err)
			}
		})
	})

	for _, inspect := range []bool{true, false} {
		name := "jetstream"
		if !inspect {
			name += "-plain"
		}
		b.Run(name, func(b *testing.B) {
			url := natsServerProcess(b, dir)
			nc, err := nats.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if _, err := js.CreateObjectStore(ctx, BucketConfig(1, time.Hour)); err != nil {
				b.Fatal(err)
			}
			st, err := NewJetStreamStore(ctx, js, DefaultBucket)
			if err != nil {
				b.Fatal(err)
			}
			if v := os.Getenv("REELQ_ARCHIVE_BENCH_CHUNK"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil {
					b.Fatalf("REELQ_ARCHIVE_BENCH_CHUNK=%q: %v", v, err)
				}
				st.SetChunkSize(n)
			}
			benchArchive(b, st, src.URL+"/out.mp4", size, want, inspect)
		})
	}
	b.Run("discard", func(b *testing.B) { benchArchive(b, Discard(), src.URL+"/out.mp4", size, want, true) })
	b.Run("discard-plain", func(b *testing.B) { benchArchive(b, Discard(), src.URL+"/out.mp4", size, want, false) })

	b.Run("s3", func(b *testing.B) {
		endpoint := fakeS3Process(b, testBucket)
		b.Setenv("AWS_ACCESS_KEY_ID", "bench-access-key")
		b.Setenv("AWS_SECRET_ACCESS_KEY", "bench-secret-key")
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // gofakes3's throwaway cert on loopback
		defer tr.CloseIdleConnections()
		st, err := NewS3Store(S3Config{Endpoint: endpoint, Bucket: testBucket, Region: "us-east-1", PathStyle: true, Transport: tr})
		if err != nil {
			b.Fatal(err)
		}
		benchArchive(b, st, src.URL+"/out.mp4", size, want, true)
	})
}

// benchArchive archives url into st once per iteration and checks the
// copy and, with inspect, that the inspection saw a whole MP4.
func benchArchive(b *testing.B, st Store, url string, size int64, want string, inspect bool) {
	f, err := NewFetcher(FetchConfig{AllowHosts: []string{"127.0.0.1"}})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	a, err := NewArchiver(st, Options{Fetcher: f, Retry: Retry{Attempts: 1}})
	if err != nil {
		b.Fatal(err)
	}
	a.noInspect = !inspect
	ctx := context.Background()
	key := Key("bench", 1, 0)
	measure(b, size, func() {
		c, err := a.Archive(ctx, key, url)
		if err != nil {
			b.Fatal(err)
		}
		if c.Size != size || c.SHA256 != want {
			b.Fatalf("copy %+v, want %d bytes with sha256 %s", c, size, want)
		}
		if inspect && (c.Media == nil || c.Media.Kind != "mp4" || !c.Media.Complete || c.Media.Check(media.Expect{Audio: true}) != nil) {
			b.Fatalf("inspection %+v, want a whole MP4 with audio", c.Media)
		}
	})
	if st.Name() == KindOff {
		return
	}
	if sc, err := st.Stat(ctx, key); err != nil || sc.Size != size {
		b.Fatalf("stat %+v, %v", sc, err)
	}
	if err := st.Delete(ctx, key); err != nil {
		b.Fatal(err)
	}
}

// measure runs f b.N times, reporting throughput, CPU per GiB and RSS
// growth.
func measure(b *testing.B, size int64, f func()) {
	b.SetBytes(size)
	var growth int64
	var cpu time.Duration
	for b.Loop() {
		before := cpuTime()
		runtime.GC()
		base := procStatus("VmRSS")
		peakReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
		stop := sampleRSS()
		f()
		peak := stop()
		if peakReset {
			peak = max(peak, procStatus("VmHWM"))
		}
		growth = max(growth, peak-base)
		cpu += cpuTime() - before
	}
	b.ReportMetric(float64(growth)/(1<<20), "rss_growth_MB")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N)/(float64(size)/(1<<30)), "cpu_ms/GiB")
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeMP4 writes size bytes of a valid MP4 to w: clip, then one "free"
// box (64-bit size) of block repeated.
func writeMP4(w io.Writer, clip, block []byte, size int64) error {
	hdr := binary.BigEndian.AppendUint32(nil, 1)
	hdr = append(hdr, "free"...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(size-int64(len(clip))))
	if _, err := w.Write(append(append([]byte(nil), clip...), hdr...)); err != nil {
		return err
	}
	for left := size - int64(len(clip)+len(hdr)); left > 0; {
		n := min(left, int64(len(block)))
		if _, err := w.Write(block[:n]); err != nil {
			return err
		}
		left -= n
	}
	return nil
}

// mp4SHA is the hex SHA-256 of what writeMP4 writes.
func mp4SHA(clip, block []byte, size int64) string {
	h := sha256.New()
	_ = writeMP4(h, clip, block, size)
	return hex.EncodeToString(h.Sum(nil))
}

// sampleRSS samples VmRSS every 10ms until stop, which returns the peak.
func sampleRSS() (stop func() int64) {
	done := make(chan struct{})
	var (
		wg   sync.WaitGroup
		peak int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, procStatus("VmRSS"))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		return max(peak, procStatus("VmRSS"))
	}
}

// procStatus returns a "kB" field of /proc/self/status in bytes.
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// natsServerProcess builds the module's nats-server and runs it with
// JetStream on a store in dir, stopped when b ends. It returns its URL.
func natsServerProcess(b *testing.B, dir string) string {
	bin := filepath.Join(dir, "nats-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(dir, "nats.conf")
	cfg := fmt.Sprintf("listen: \"127.0.0.1:%d\"\njetstream { store_dir: %q }\n", port, filepath.Join(dir, "jetstream"))
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	ready := make(chan struct{})
	var log bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Server is ready") {
				close(ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		close(exited)
	}()
	b.Cleanup(func() {
		_ = cmd.Process.Kill() // only the process started here, by its pid
		<-exited
	})
	select {
	case <-ready:
	case <-exited:
		b.Fatalf("nats-server exited:\n%s", log.String())
	case <-time.After(60 * time.Second):
		b.Fatal("nats-server did not start in 60s")
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// fakeS3Process starts this test binary again as a gofakes3 server (see
// TestMain) holding bucket, stopped when b ends. It returns its URL.
func fakeS3Process(b *testing.B, bucket string) string {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fakeS3Env+"="+bucket)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close() // the child exits when its stdin closes
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("fake S3 process: %v", err)
	}
	return strings.TrimSpace(line)
}
