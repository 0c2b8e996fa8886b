package worker

import (
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/metrics"
)

// A cancel request for a job waiting out a back-off on the timer gives
// back the lookahead place the job holds. The loop used to start the
// cancel step without taking the job out of its rank's pulled count, so
// every such cancel cost the puller one place of lookahead for good.
func TestCancelDuringABackOffGivesBackItsLookahead(t *testing.T) {
	t.Parallel()
	h := newLoopHarness(t, &harnessPool{})
	jobs := h.pull("backing-off")
	rank := jobs[0].priority().Rank()
	h.e.post(evMsg{j: jobs[0]})
	claim := h.nextTask("the claim step")
	h.finish(claim, waitFor(time.Hour)) // a back-off: back to the queue in an hour
	h.e.post(evCancel{id: "backing-off"})
	cancel := h.nextTask("the cancel step")
	if got := h.e.pulled[rank].Load(); got != 0 {
		t.Fatalf("pulled[%d] = %d while the only job runs its cancel step, want 0", rank, got)
	}
	h.finish(cancel, ack())
}

// docEdges returns the edges "a --> b" of the mermaid block under heading
// in docs/state_machine.md, as "a>b", with their labels; edges from or to
// [*] are left out.
func docEdges(t *testing.T, heading string) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../../docs/state_machine.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(data), "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("docs/state_machine.md has no section %q", heading)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	edge := regexp.MustCompile(`^\s*(\S+) --> (\S+)(?: : (.*))?$`)
	out := map[string]string{}
	for line := range strings.Lines(sec) {
		m := edge.FindStringSubmatch(strings.TrimRight(line, "\n"))
		if m == nil || m[1] == "[*]" || m[2] == "[*]" {
			continue
		}
		out[m[1]+">"+m[2]] = m[3]
	}
	return out
}

// The diagrams of docs/state_machine.md draw the transition tables the
// code enforces: the engine's moves, and the job state's phases
// (jobstate.Allowed), edge for edge.
func TestStateMachineDocMatchesTheTables(t *testing.T) {
	t.Run("engine", func(t *testing.T) {
		drawn := docEdges(t, "Engine states (one replica's scheduling)")
		var want []string
		for m := range moves {
			want = append(want, m[0].String()+">"+m[1].String())
		}
		compareEdges(t, drawn, want)
	})
	t.Run("phases", func(t *testing.T) {
		drawn := docEdges(t, "Phases (the job state)")
		phases := []reelq.Phase{reelq.PhaseQueued, reelq.PhaseSubmitting, reelq.PhaseSubmitted,
			reelq.PhaseHeld, reelq.PhaseArchiving, reelq.PhaseFinished}
		var want []string
		for _, from := range phases {
			for _, to := range phases {
				if from == to {
					continue
				}
				cur := &jobstate.State{ID: "j", Run: 1, Phase: from}
				if jobstate.Allowed(cur, &jobstate.State{ID: "j", Run: 1, Phase: to}) == nil {
					want = append(want, string(from)+">"+string(to))
				}
				// A new run, after a run that did not succeed.
				if jobstate.Allowed(cur, &jobstate.State{ID: "j", Run: 2, Phase: to}) == nil {
					if !strings.Contains(drawn[string(from)+">"+string(to)], "new run") {
						t.Errorf("the edge %s --> %s starts a new run; its label should say so", from, to)
					}
					want = append(want, string(from)+">"+string(to))
				}
			}
		}
		compareEdges(t, drawn, want)
	})
}

func compareEdges(t *testing.T, drawn map[string]string, want []string) {
	t.Helper()
	for _, w := range want {
		if _, ok := drawn[w]; !ok {
			t.Errorf("allowed by the code, not drawn: %s", strings.Replace(w, ">", " --> ", 1))
		}
	}
	for d := range drawn {
		if !slices.Contains(want, d) {
			t.Errorf("drawn, not allowed by the code: %s", strings.Replace(d, ">", " --> ", 1))
		}
	}
}

// In production an illegal move is no panic: it is logged and counted in
// reelq_engine_illegal_moves_total, the job takes the state, and the
// counts follow the states. (Not parallel: the package's tests run with
// strictMoves set, and this one clears it while it runs.)
func TestIllegalMoveIsCountedInProduction(t *testing.T) {
	strictMoves = false
	defer func() { strictMoves = true }()
	reg := prometheus.NewRegistry()
	e := &engine{w: &Worker{m: metrics.New(reg)}, name: "samsar", log: slog.New(slog.DiscardHandler)}
	for i := range e.pullWake {
		e.pullWake[i] = make(chan struct{}, 1)
	}
	j := &job{id: "j", heapIdx: -1, sched: schedSettled}
	e.move(j, schedWaiting)
	if j.sched != schedWaiting || e.pulled[j.priority().Rank()].Load() != 1 {
		t.Fatalf("after the illegal move: state %s, pulled %d; want waiting, 1", j.sched, e.pulled[j.priority().Rank()].Load())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "reelq_engine_illegal_moves_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["from"] == "settled" && labels["to"] == "waiting" && m.GetCounter().GetValue() == 1 {
				return
			}
		}
	}
	t.Fatal("reelq_engine_illegal_moves_total{from=settled,to=waiting} is not 1")
}

// Under the package's tests an illegal move panics.
func TestIllegalMovePanicsUnderTests(t *testing.T) {
	t.Parallel()
	e := &engine{}
	j := &job{id: "j", heapIdx: -1, sched: schedSettled}
	defer func() {
		if recover() == nil {
			t.Fatal("an illegal move did not panic")
		}
	}()
	e.move(j, schedRunning)
}

// The messages an engine holds of one job are found by its id, the first
// and the rare others alike, and each is dropped alone.
func TestHeldMessagesByID(t *testing.T) {
	t.Parallel()
	e := &engine{byID: map[string]*job{}, moreByID: map[string][]*job{}}
	a, b, c := &job{id: "x", seq: 1}, &job{id: "x", seq: 2}, &job{id: "x", seq: 3}
	for _, j := range []*job{a, b, c} {
		e.addID(j)
	}
	seqs := func() (out []uint64) {
		for j := range e.withID("x") {
			out = append(out, j.seq)
		}
		return out
	}
	if got := seqs(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("held %v, want [1 2 3]", got)
	}
	e.dropID(b)
	e.dropID(a)
	if got := seqs(); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("after dropping 2 and 1: %v, want [3]", got)
	}
	e.dropID(c)
	if len(e.byID) != 0 || len(e.moreByID) != 0 || len(seqs()) != 0 {
		t.Fatalf("left %v and %v", e.byID, e.moreByID)
	}
}
