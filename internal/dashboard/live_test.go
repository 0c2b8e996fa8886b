package dashboard_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/wire"
)

// liveOnce opens a live page, reads until its first fragment (or the
// answer of a refused one) and closes it.
func liveOnce(t *testing.T, d *dash, query string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", d.URL+"/live?"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("live %s: %v", query, err)
	}
	defer resp.Body.Close()
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), "event: frag") {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, got.String()
}

// Job pages leave nothing on the server. The reviewer's 20,000 anonymous
// requests for /live?view=job&arg=X (any X) left an ordered consumer each
// (JobEvents and WatchJob never deleted theirs) until every job page
// answered 500. Here the live feeds run, job pages and live job pages are
// opened and closed many times, one stays open, and no stream the
// dashboard reads has a consumer: it reads by direct get. A job that does
// not exist has no live page (404).
func TestJobPagesLeaveNoConsumer(t *testing.T) {
	t.Parallel()
	d := startDash(t, dashOptions{worker: &reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}}, knobs: map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(10 * time.Millisecond)}}})
	d.Enqueue(samsarJobs("nc", 1)...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.Client.Wait(ctx, "nc-01"); err != nil {
		t.Fatal(err)
	}
	b := d.browser(t)
	for i := range 20 {
		if code, body := b.get("/jobs/nc-01"); code != 200 {
			t.Fatalf("job page %d: %d %s", i, code, body)
		}
		if code, body := liveOnce(t, d, "view=job&arg=nc-01"); code != 200 || !strings.Contains(body, "event: frag") {
			t.Fatalf("live job page %d: %d %q", i, code, body)
		}
		if code, body := liveOnce(t, d, fmt.Sprintf("view=job&arg=no-such-job-%d", i)); code != http.StatusNotFound {
			t.Fatalf("live page of an unknown job: %d %q, want 404", code, body)
		}
	}
	// One stays open while the consumers are counted.
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	req, _ := http.NewRequestWithContext(lctx, "GET", d.URL+"/live?view=job&arg=nc-01", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	// (KV_reelq_slots holds the worker's own watch of the slots.)
	for _, name := range []string{wire.StreamResults, wire.StreamEvents, wire.StreamCounters, "KV_" + wire.BucketJobs, "OBJ_reelq_outputs"} {
		s, err := d.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers != 0 {
			t.Errorf("%s has %d consumers, want none", name, info.State.Consumers)
		}
	}
}

// flushWriter is a ResponseWriter for a live page served in the test
// process: first is closed at its first flush.
type flushWriter struct {
	mu    sync.Mutex
	h     http.Header
	code  int
	body  bytes.Buffer
	once  sync.Once
	first chan struct{}
}

func newFlushWriter() *flushWriter { return &flushWriter{h: http.Header{}, first: make(chan struct{})} }

func (w *flushWriter) Header() http.Header { return w.h }
func (w *flushWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.code == 0 {
		w.code = code
	}
}
func (w *flushWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.body.Write(p)
}
func (w *flushWriter) Flush() { w.once.Do(func() { close(w.first) }) }

func (w *flushWriter) status() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.code, w.body.String()
}

// One client cannot take every live page: the reviewer's 256 connections
// from one address locked everyone else out. A client (an address) may
// hold maxLivePerClient (32) open; its next is refused (503) while
// another client still gets one.
func TestLivePagesBoundedPerClient(t *testing.T) {
	t.Parallel()
	d := startDash(t, dashOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	open := func(addr string) *flushWriter {
		req := httptest.NewRequestWithContext(ctx, "GET", "/live?view=overview", nil)
		req.RemoteAddr, req.Host = addr, "127.0.0.1"
		w := newFlushWriter()
		done := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done)
			d.Server.ServeHTTP(w, req)
		}()
		select {
		case <-w.first:
		case <-done:
		}
		return w
	}
	for i := range 32 {
		if code, body := open(fmt.Sprintf("10.0.0.1:%d", 1000+i)).status(); code != http.StatusOK {
			t.Fatalf("live page %d of one client: %d %s", i+1, code, body)
		}
	}
	if code, _ := open("10.0.0.1:2000").status(); code != http.StatusServiceUnavailable {
		t.Errorf("the 33rd live page of one client: %d, want 503", code)
	}
	if code, body := open("10.0.0.2:1000").status(); code != http.StatusOK {
		t.Errorf("another client's live page: %d %s, want 200", code, body)
	}
}
