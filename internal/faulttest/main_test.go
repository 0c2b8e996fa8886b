package faulttest

import (
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/leaktest"
)

// seedEnv fixes the seed of every random fault schedule.
const seedEnv = "REELQ_FAULT_SEED"

var (
	// bins holds the binaries built in TestMain: worker, providersim,
	// enqueue and nats-server.
	bins = map[string]string{}
	seed uint64
)

func TestMain(m *testing.M) {
	flag.Parse()
	seed = uint64(time.Now().UnixNano())
	if v := os.Getenv(seedEnv); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s=%q: %v\n", seedEnv, v, err)
			os.Exit(2)
		}
		seed = s
	}
	fmt.Printf("faulttest: seed %d (rerun with %s=%d)\n", seed, seedEnv, seed)
	dir, err := os.MkdirTemp("", "reelq-faulttest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	code := 2
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "faulttest: build:", err)
	} else {
		code = m.Run()
	}
	if code == 0 {
		// No test leaves a goroutine behind (the processes it starts are
		// its own; this checks the harness in this process).
		if err := leaktest.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "faulttest: goroutines left behind:", err)
			code = 1
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles the commands the fault tests run as processes, and the
// upstream nats-server command (the same nats-server module the worker
// embeds) for the tests that kill and restart servers. Set
// REELQ_FAULTTEST_RACE=1 to build reelq's commands with the race detector;
// nats-server is always built without it, so that only reelq's own races
// fail a test.
func build(dir string) error {
	if testing.Short() {
		return nil // the process tests are skipped in -short mode
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	race := os.Getenv("REELQ_FAULTTEST_RACE") == "1"
	for name, pkg := range map[string]string{
		"worker":      "github.com/reelq/reelq/cmd/worker",
		"providersim": "github.com/reelq/reelq/cmd/providersim",
		"enqueue":     "github.com/reelq/reelq/cmd/enqueue",
		"nats-server": "github.com/nats-io/nats-server/v2",
	} {
		out := filepath.Join(dir, name)
		args := []string{"build", "-o", out}
		if race && name != "nats-server" {
			args = append(args, "-race")
		}
		cmd := exec.Command(goBin, append(args, pkg)...)
		cmd.Dir = filepath.Join("..", "..")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
		bins[name] = out
	}
	return nil
}

// rngFor returns the test's own random source, derived from the run's
// seed and the test name so that one test's schedule does not depend on
// which other tests ran.
func rngFor(t testing.TB) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(t.Name()))
	t.Logf("fault schedule seed %d (rerun with %s=%d -run '^%s$')", seed, seedEnv, seed, t.Name())
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}
