package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
)

// The worker command with SAMSAR_CALLBACKS on serves the endpoint on
// REELQ_CALLBACK_ADDR, registers each job's URL, and the simulator's
// callbacks bring every result long before the hour between polls; the
// endpoint serves nothing else, and the secret is never logged.
func TestWorkerCallbacks(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(200 * time.Millisecond)}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	const secret = "worker-callback-secret-0123456789abcdef-xyz"
	w := startOpsWorker(t, opsEnviron(env, "callbacks",
		"SAMSAR_POLL_INTERVAL=1h", "SAMSAR_MAX_POLL_INTERVAL=1h", "SAMSAR_CALLBACKS=true",
		"REELQ_CALLBACK_ADDR="+addr, "REELQ_CALLBACK_URL=http://"+addr, "REELQ_CALLBACK_SECRET="+secret))
	const n = 3
	env.Enqueue(samsarJobs("cb", n)...)
	results := env.Results(n, time.Minute)
	for id, rs := range results {
		if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
			t.Errorf("job %s: %+v, want one succeeded result", id, rs)
		}
	}
	if got := env.Sim.Stats(0)["samsar"].Requests["callback 202"]; got != n {
		t.Errorf("callbacks answered 202: %d, want %d", got, n)
	}
	for path, want := range map[string]int{"/metrics": 404, "/healthz": 404, "/debug/pprof/": 404, "/hooks/samsar/x/y": 405} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s on the callback address: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if log := fmt.Sprint(w.Log); strings.Contains(log, secret) || strings.Contains(log, secret[:16]) {
		t.Error("the worker logged the callback secret")
	}
}
