package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/reelq/reelq/internal/embedded"
)

// benchServer is the server a benchmark runs against: embedded in this
// process (REELQ_BENCH_SERVER unset or "embedded") or a nats-server
// process built from the module ("external"). REELQ_BENCH_SYNC=always
// makes it fsync every write (the worker's embedded default).
type benchServer struct {
	kind string
	sync bool
	url  string
	s    *server.Server
	cmd  *exec.Cmd
}

func startServer(tb testing.TB) *benchServer {
	tb.Helper()
	bs := &benchServer{kind: os.Getenv("REELQ_BENCH_SERVER"), sync: os.Getenv("REELQ_BENCH_SYNC") == "always"}
	if bs.kind == "" {
		bs.kind = "embedded"
	}
	dir := tb.TempDir()
	switch bs.kind {
	case "embedded":
		s, err := embedded.Start(embedded.Options{Name: "bench", Listen: "127.0.0.1:-1", StoreDir: dir, SyncAlways: bs.sync})
		if err != nil {
			tb.Fatal(err)
		}
		bs.s, bs.url = s, s.ClientURL()
	case "external":
		bin := filepath.Join(dir, "nats-server")
		build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			tb.Fatalf("build nats-server: %v", err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		conf := fmt.Sprintf("listen: \"127.0.0.1:%d\"\nmax_payload: 4MB\njetstream { store_dir: %q, max_file_store: 8GB", port, filepath.Join(dir, "store"))
		if bs.sync {
			conf += ", sync_interval: always"
		}
		conf += " }\n"
		cf := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
			tb.Fatal(err)
		}
		bs.cmd = exec.Command(bin, "-c", cf)
		if err := bs.cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		bs.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
		waitTCP(tb, fmt.Sprintf("127.0.0.1:%d", port))
	default:
		tb.Fatalf("REELQ_BENCH_SERVER=%q: want embedded or external", bs.kind)
	}
	return bs
}

// cpu is the server process's CPU time so far (0 for the embedded server,
// whose CPU counts in this process's).
func (bs *benchServer) cpu() time.Duration {
	if bs.cmd == nil {
		return 0
	}
	return procCPU(bs.cmd.Process.Pid)
}

func (bs *benchServer) stop() {
	if bs.s != nil {
		embedded.Stop(bs.s)
	}
	if bs.cmd != nil {
		_ = bs.cmd.Process.Signal(syscall.SIGTERM)
		_ = bs.cmd.Wait()
	}
}

// cpuTime is this process's CPU time (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU reads a process's user + system CPU time from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration((ut + st) * int64(time.Second) / 100) // USER_HZ = 100
}

// procRSS reads a process's resident set size in bytes from /proc.
func procRSS(pid int) int64 {
	path := "/proc/self/status"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
