package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reelq/reelq/internal/waitfor"
)

// server is one system's server process, started fresh for each run.
type server struct {
	addr string // host:port on loopback
	cmd  *exec.Cmd
	pid  func() int // the process whose CPU is counted (with its children)
	stop func()
}

// cpu is the server's CPU time so far: the process, its live children and
// the children it has reaped (Postgres serves each connection from a
// forked backend; Redis forks to save).
func (s *server) cpu() time.Duration { return treeCPU(s.pid()) }

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNATS runs the nats-server binary built from the main module with
// JetStream on and internal/bench's configuration: no fsync per write
// (the server's default) unless syncAlways.
func startNATS(bin, dir string, syncAlways bool) *server {
	port := freePort()
	sync := ""
	if syncAlways {
		sync = ", sync_interval: always"
	}
	conf := fmt.Sprintf("listen: \"127.0.0.1:%d\"\nmax_payload: 4MB\njetstream { store_dir: %q, max_file_store: 8GB%s }\n", port, filepath.Join(dir, "store"), sync)
	cf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		fatalf("%v", err)
	}
	return startProc(exec.Command(bin, "-c", cf), dir, port)
}

// startRedis runs redis-server with its defaults (RDB snapshots, no AOF)
// on a fresh directory.
func startRedis(dir string) *server {
	port := freePort()
	return startProc(exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir), dir, port)
}

// startProc starts a server with its output in dir/server.log and waits
// for its port. The server stops when the run ends, fatalf included.
func startProc(cmd *exec.Cmd, dir string, port int) *server {
	log, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		fatalf("%v", err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		fatalf("start %s: %v", cmd.Path, err)
	}
	s := &server{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, pid: func() int { return cmd.Process.Pid }}
	s.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	atExit = append(atExit, func() { s.stop() })
	waitTCP(s.addr)
	return s
}

// atExit stops the servers a run started when fatalf ends it.
var atExit []func()

// startPostgres initialises a cluster in dir and runs postgres with its
// defaults (fsync and synchronous commit on), trust authentication on
// loopback. As root it runs as the postgres user, which initdb requires.
func startPostgres(dir string) *server {
	bindir := pgBindir()
	data := filepath.Join(dir, "pg")
	asUser := func(name string, args ...string) *exec.Cmd {
		if os.Geteuid() != 0 {
			return exec.Command(name, args...)
		}
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			fatalf("postgres as root needs the postgres user (apt-get install postgresql): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			fatalf("%v", err)
		}
	}
	initdb := asUser(filepath.Join(bindir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort()
	cmd := asUser(filepath.Join(bindir, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1")
	s := startProc(cmd, dir, port)
	pid := 0
	s.pid = func() int {
		if pid == 0 {
			b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
			if err != nil {
				return cmd.Process.Pid // runuser, still starting
			}
			pid, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		}
		return pid
	}
	s.stop = func() {
		_ = syscall.Kill(s.pid(), syscall.SIGINT) // fast shutdown
		_ = cmd.Wait()
	}
	waitPostgres(s.addr)
	return s
}

func pgBindir() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		fatalf("initdb not found: apt-get install postgresql")
	}
	return filepath.Dir(m[len(m)-1])
}

func waitTCP(addr string) {
	err := waitfor.Poll(30*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err
	})
	if err != nil {
		fatalf("server on %s did not start: %v", addr, err)
	}
}

// waitPostgres waits until postgres takes queries: it opens its port
// before it has finished starting.
func waitPostgres(addr string) {
	ctx := context.Background()
	err := waitfor.Poll(60*time.Second, func() error {
		c, err := pgx.Connect(ctx, "postgres://postgres@"+addr+"/postgres?sslmode=disable")
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		return c.Ping(ctx)
	})
	if err != nil {
		fatalf("postgres on %s did not start: %v", addr, err)
	}
}

// selfCPU is this process's CPU time (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// treeCPU is a process's CPU time from /proc: its own, its reaped
// children's, and that of its live descendants.
func treeCPU(pid int) time.Duration {
	kids := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(p); len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			kids[pp] = append(kids[pp], p)
		}
	}
	var sum func(p int) time.Duration
	sum = func(p int) time.Duration {
		f := statFields(p)
		if len(f) < 15 {
			return 0
		}
		var ticks int64
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += v
		}
		d := time.Duration(ticks * int64(time.Second) / 100) // USER_HZ = 100
		for _, k := range kids[p] {
			d += sum(k)
		}
		return d
	}
	return sum(pid)
}

// statFields are /proc/pid/stat's fields after the command name: [0] is
// the state, [1] the parent's pid, [11..14] utime, stime, cutime, cstime.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
}
