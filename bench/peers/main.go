// Command peers compares reelq's job path with raw JetStream, asynq
// (Redis), River (Postgres) and BullMQ (Redis, Node) on one machine:
// the same number of jobs, a zero-latency handler, the same concurrency,
// each system's own dedupe on, every system against its own server
// process, started fresh for each run. Rounds interleave the systems and
// the ratios are taken within a round. Run it with ./run.sh, which
// installs the servers and Node packages it needs; docs/testing.md has
// the figures and what each system is configured with.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// result is one system's run, printed by the child as JSON.
type result struct {
	System      string  `json:"system"`
	Jobs        int     `json:"jobs"`
	EnqueueS    float64 `json:"enqueue_s"`    // enqueueing every job
	E2ES        float64 `json:"e2e_s"`        // working every queued job to its end
	ClientE2ES  float64 `json:"client_cpu_s"` // CPU of the process that works the jobs, over E2ES
	ServerE2ES  float64 `json:"server_cpu_s"` // CPU of the server, over E2ES
	ClientTotS  float64 `json:"client_tot_s"` // same, over enqueue and work
	ServerTotS  float64 `json:"server_tot_s"` // same, over enqueue and work
	MsgsPerJob  float64 `json:"msgs_per_job"` // NATS messages per job at the worker (reelq, jetstream)
	Concurrency int     `json:"concurrency"`
}

type opts struct {
	jobs, conc int
	natsBin    string
	nodeDir    string
	natsSync   bool
	cooldown   time.Duration
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "peers: "+format+"\n", a...)
	for _, f := range atExit {
		f()
	}
	os.Exit(1)
}

func main() {
	var o opts
	rounds := flag.Int("rounds", 3, "rounds; each runs every system once, in turn")
	systems := flag.String("systems", "jetstream,reelq,asynq,river,bullmq", "systems to run, comma-separated")
	one := flag.String("one", "", "run this one system and print its result as JSON (what each round runs in a child process)")
	flag.IntVar(&o.jobs, "jobs", 20000, "jobs per run")
	flag.IntVar(&o.conc, "concurrency", 256, "jobs worked at once")
	flag.StringVar(&o.natsBin, "nats-server", "nats-server", "nats-server binary (run.sh builds the main module's)")
	flag.BoolVar(&o.natsSync, "nats-sync-always", false, "nats-server fsyncs every write (sync_interval: always), as the worker's embedded server does by default")
	flag.StringVar(&o.nodeDir, "node-dir", "node", "directory of bullmq.mjs with its node_modules")
	flag.DurationVar(&o.cooldown, "river-fetch-cooldown", 100*time.Millisecond, "River's FetchCooldown (its default, 100ms, caps a queue at concurrency/cooldown jobs/s)")
	flag.Parse()
	if *one != "" {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		go func() { fatalf("%s", <-sig) }() // stop the servers on Ctrl-C too; lives until exit
		r := runOne(*one, o)
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	var all [][]result
	for round := 1; round <= *rounds; round++ {
		var rs []result
		for _, sys := range strings.Split(*systems, ",") {
			fmt.Fprintf(os.Stderr, "round %d: %s\n", round, sys)
			rs = append(rs, child(sys, os.Args[1:]))
		}
		printRound(round, rs)
		all = append(all, rs)
	}
	if len(all) > 1 {
		printSummary(all)
	}
}

// child runs one system in a fresh process, so that no system's
// goroutines, heap or connections weigh on another's figures.
func child(sys string, args []string) result {
	cmd := exec.Command(os.Args[0], append(args, "-one", sys)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		fatalf("%s: %v", sys, err)
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		fatalf("%s: result %q: %v", sys, out.String(), err)
	}
	return r
}

func runOne(sys string, o opts) result {
	var r result
	switch sys {
	case "jetstream":
		r = runJetStream(o)
	case "reelq":
		r = runReelq(o)
	case "asynq":
		r = runAsynq(o)
	case "river":
		r = runRiver(o)
	case "bullmq":
		r = runBullMQ(o)
	default:
		fatalf("-one %q: want jetstream, reelq, asynq, river or bullmq", sys)
	}
	r.System, r.Jobs, r.Concurrency = sys, o.jobs, o.conc
	return r
}

func printRound(round int, rs []result) {
	var raw *result
	for i := range rs {
		if rs[i].System == "jetstream" {
			raw = &rs[i]
		}
	}
	fmt.Printf("\nround %d: %d jobs, concurrency %d\n", round, rs[0].Jobs, rs[0].Concurrency)
	fmt.Printf("%-10s %12s %12s %14s %14s %10s %10s %9s\n", "system", "enqueue/s", "e2e/s", "cpu ms/job", "cpu ms/job", "enq ratio", "e2e ratio", "msgs/job")
	fmt.Printf("%-10s %12s %12s %14s %14s %10s %10s %9s\n", "", "", "", "(work)", "(enq+work)", "to raw", "to raw", "(NATS)")
	for _, r := range rs {
		er, wr := "-", "-"
		if raw != nil {
			er = fmt.Sprintf("%.2f", r.enqRate()/raw.enqRate())
			wr = fmt.Sprintf("%.3f", r.e2eRate()/raw.e2eRate())
		}
		msgs := "-"
		if r.MsgsPerJob > 0 {
			msgs = fmt.Sprintf("%.1f", r.MsgsPerJob)
		}
		fmt.Printf("%-10s %12.0f %12.0f %14.3f %14.3f %10s %10s %9s\n", r.System, r.enqRate(), r.e2eRate(), r.cpuWork(), r.cpuTotal(), er, wr, msgs)
	}
}

func (r result) enqRate() float64  { return float64(r.Jobs) / r.EnqueueS }
func (r result) e2eRate() float64  { return float64(r.Jobs) / r.E2ES }
func (r result) cpuWork() float64  { return (r.ClientE2ES + r.ServerE2ES) * 1e3 / float64(r.Jobs) }
func (r result) cpuTotal() float64 { return (r.ClientTotS + r.ServerTotS) * 1e3 / float64(r.Jobs) }

// printSummary gives each system's range over the rounds, ratios taken
// within each round.
func printSummary(all [][]result) {
	type span struct{ lo, hi float64 }
	add := func(s *span, v float64) {
		if s.lo == 0 || v < s.lo {
			s.lo = v
		}
		if v > s.hi {
			s.hi = v
		}
	}
	type row struct{ enq, e2e, cpu, cpuTot, er, wr span }
	rows := map[string]*row{}
	var order []string
	for _, rs := range all {
		var raw *result
		for i := range rs {
			if rs[i].System == "jetstream" {
				raw = &rs[i]
			}
		}
		for _, r := range rs {
			w := rows[r.System]
			if w == nil {
				w = &row{}
				rows[r.System] = w
				order = append(order, r.System)
			}
			add(&w.enq, r.enqRate())
			add(&w.e2e, r.e2eRate())
			add(&w.cpu, r.cpuWork())
			add(&w.cpuTot, r.cpuTotal())
			if raw != nil {
				add(&w.er, r.enqRate()/raw.enqRate())
				add(&w.wr, r.e2eRate()/raw.e2eRate())
			}
		}
	}
	fmt.Printf("\nall %d rounds (min-max; ratios within a round)\n", len(all))
	fmt.Printf("%-10s %14s %14s %14s %14s %12s %12s\n", "system", "enqueue/s", "e2e/s", "cpu ms/job", "(enq+work)", "enq ratio", "e2e ratio")
	for _, name := range order {
		w := rows[name]
		fmt.Printf("%-10s %6.0f-%-7.0f %6.0f-%-7.0f %6.3f-%-7.3f %6.3f-%-7.3f %5.2f-%-6.2f %5.3f-%-6.3f\n", name,
			w.enq.lo, w.enq.hi, w.e2e.lo, w.e2e.hi, w.cpu.lo, w.cpu.hi, w.cpuTot.lo, w.cpuTot.hi, w.er.lo, w.er.hi, w.wr.lo, w.wr.hi)
	}
}
