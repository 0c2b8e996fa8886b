package faulttest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
)

// A delivery waiting for another worker's submission holds no slot.
// Replica a stops (SIGSTOP) inside the paid call of job "stalled"; replica
// b gets its redelivery and waits out the claim's grace (RequestTimeout +
// 10s) before it may resubmit. Meanwhile 30 other jobs arrive, cap 2: once
// a's slot lease lapses, b runs them two at a time. (A waiting delivery
// that kept its slot would leave them one.)
func TestWaitForAnotherSubmitHoldsNoSlot(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	dumpLogs(t, dir)
	srv := natstest.Server(t)
	every := map[string]providersim.Knobs{}
	for _, p := range all.Names() {
		every[p] = providersim.Knobs{APIKey: apiKey, CompleteAfter: providersim.Duration(300 * time.Millisecond)}
	}
	mem := all.Simulator(every, seed%1000)
	var (
		mu    sync.Mutex
		stopA func()
	)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var stalled bool
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/video/create") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			stalled = bytes.Contains(body, []byte("stalled job"))
		}
		mu.Lock()
		stop := stopA
		if stalled {
			stopA = nil // once
		}
		mu.Unlock()
		if stalled && stop != nil {
			stop() // a stops inside its paid call: the task is created, the answer waits
		}
		mem.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)

	c := connect(t, srv.ClientURL(), 1)
	ws := newWorkers(t, dir, srv.ClientURL(), hs.URL, map[string]string{"SAMSAR_MAX_INFLIGHT": "2", "SAMSAR_REQUEST_TIMEOUT": "2s"})
	a := ws.start("a")
	mu.Lock()
	stopA = func() { a.signal(syscall.SIGSTOP) }
	mu.Unlock()
	stalled := reelq.Job{ID: "stalled", Provider: "samsar", Batch: "stall",
		Input: []byte(`{"prompt":"stalled job","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)}
	c.enqueue(t, []reelq.Job{stalled})
	if err := waitfor.Poll(30*time.Second, func() error {
		if len(mem.Tasks("samsar")) == 0 {
			return waitfor.ErrNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("the stalled job's create never arrived: %v", err)
	}
	ws.start("b")
	others := samsarJobs("others", 30)
	c.enqueue(t, others)
	ids := make([]string, len(others))
	for i, j := range others {
		ids[i] = j.ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := reelqtest.WaitAll(ctx, c.rc, ids, reelq.WaitOptions{}); err != nil {
		t.Fatal(err)
	}
	var tasks []providersim.TaskInfo
	for _, tk := range mem.Tasks("samsar") {
		if strings.Contains(tk.Key, "stalled job") {
			continue
		}
		tasks = append(tasks, tk)
	}
	first, last := tasks[0].Created, tasks[len(tasks)-1].DoneAt
	st, _, err := c.states.Get(ctx, stalled.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("30 other jobs ran %v..%v after the stall, at most %d at once; the stalled job is %s (submissions %d)",
		first.Sub(mem.Tasks("samsar")[0].Created).Round(time.Millisecond), last.Sub(mem.Tasks("samsar")[0].Created).Round(time.Millisecond),
		maxRunning(tasks), st.Phase, mem.Stats(0)["samsar"].Submissions["stalled job"])
	if got := maxRunning(tasks); got != 2 {
		t.Errorf("the other jobs ran at most %d at once, want 2 (the cap): the waiting delivery must hold no slot", got)
	}
	if n := mem.Stats(0)["samsar"].MaxActive; n > 2+1 {
		t.Errorf("the provider saw %d tasks active, cap 2 (+ the stalled one)", n)
	}
}
