package main

// Test harness for the operations tests (observability_test.go,
// security_test.go): it runs the real worker run() — configuration from an
// environment list, logging, NATS connection, metrics registry, health
// server — against a NATS server and the provider simulator, and captures
// its JSON log lines.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/waitfor"
)

// opsLog is a concurrency-safe log sink for run()'s stderr.
type opsLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *opsLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *opsLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Lines returns the JSON log lines decoded (non-JSON lines are returned
// with only "raw" set, so nothing escapes an assertion).
func (l *opsLog) Lines() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			m = map[string]any{"raw": line}
		}
		out = append(out, m)
	}
	return out
}

// opsWorker is one run() of the worker command.
type opsWorker struct {
	t      testing.TB
	cancel context.CancelFunc
	done   chan error
	Log    *opsLog
	// HTTP is the base URL of WORKER_HTTP_ADDR (empty if not served).
	HTTP string
	once sync.Once
	err  error
}

// startOpsWorker runs run(ctx, nil, environ, log) and waits until it serves
// WORKER_HTTP_ADDR (when set) and consumes.
func startOpsWorker(t testing.TB, environ []string) *opsWorker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &opsWorker{t: t, cancel: cancel, done: make(chan error, 1), Log: &opsLog{}}
	go func() { w.done <- run(ctx, nil, environ, w.Log) }()
	t.Cleanup(func() {
		_ = w.Stop()
		if t.Failed() {
			t.Logf("worker log:\n%s", w.Log)
		}
	})
	wantHTTP := false
	for _, kv := range environ {
		if strings.HasPrefix(kv, "WORKER_HTTP_ADDR=") && kv != "WORKER_HTTP_ADDR=" {
			wantHTTP = true
		}
	}
	waitfor.Until(t, 30*time.Second, "the worker to start", func() bool {
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("worker exited early: %v\nlog:\n%s", err, w.Log)
		default:
		}
		consuming := false
		for _, l := range w.Log.Lines() {
			if l["msg"] == "serving /healthz, /readyz and /metrics" {
				if a, ok := l["addr"].(string); ok {
					w.HTTP = "http://" + a
				}
			}
			if l["msg"] == "consuming" {
				consuming = true
			}
		}
		return consuming && (!wantHTTP || w.HTTP != "")
	})
	return w
}

// Stop cancels run() (as SIGTERM does) and returns its error.
func (w *opsWorker) Stop() error {
	w.once.Do(func() {
		w.cancel()
		select {
		case w.err = <-w.done:
		case <-time.After(60 * time.Second):
			w.err = fmt.Errorf("worker did not stop within 60s")
			w.t.Errorf("%v", w.err)
		}
	})
	return w.err
}

// get fetches path from the worker's HTTP server.
func (w *opsWorker) get(path string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(w.HTTP + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// promSample is one sample of the Prometheus text exposition format.
type promSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

var promLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseProm reads the text exposition format (what promhttp serves
// without content negotiation).
func parseProm(t testing.TB, text string) []promSample {
	t.Helper()
	var out []promSample
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			t.Fatalf("bad metrics line %q", line)
		}
		series, val := line[:sp], line[sp+1:]
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			t.Fatalf("bad metrics value in %q: %v", line, err)
		}
		s := promSample{Name: series, Labels: map[string]string{}, Value: v}
		if i := strings.IndexByte(series, '{'); i >= 0 {
			s.Name = series[:i]
			for _, m := range promLabel.FindAllStringSubmatch(series[i:], -1) {
				s.Labels[m[1]] = m[2]
			}
		}
		out = append(out, s)
	}
	return out
}

// promFind returns the samples of name whose labels include want.
func promFind(samples []promSample, name string, want map[string]string) []promSample {
	var out []promSample
next:
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		for k, v := range want {
			if s.Labels[k] != v {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// promSum adds up the samples of name whose labels include want, and
// reports whether there was any.
func promSum(samples []promSample, name string, want map[string]string) (float64, bool) {
	found := promFind(samples, name, want)
	sum := 0.0
	for _, s := range found {
		sum += s.Value
	}
	return sum, len(found) > 0
}
