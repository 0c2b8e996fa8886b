package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/leaktest"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/wire"
)

// asProcess makes the test binary run main() (TestSIGTERM).
const asProcess = "REELQ_TEST_FORWARDER_MAIN"

// TestMain runs the binary as the forwarder when asProcess is set; else
// the tests, failing if one leaves a goroutine behind.
func TestMain(m *testing.M) {
	if os.Getenv(asProcess) != "" {
		os.Args = os.Args[:1] // the test flags are not the forwarder's
		main()
		os.Exit(0)
	}
	leaktest.VerifyTestMain(m)
}

const secret = "whsec_dGVzdC1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg=="

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// receiver answers 200 and passes each webhook-id on.
func receiver(t *testing.T) (*httptest.Server, chan string) {
	got := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got <- r.Header.Get("webhook-id") }))
	t.Cleanup(srv.Close)
	return srv, got
}

func publishResult(t *testing.T, url, id string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, _ := json.Marshal(reelq.Result{ID: id, Provider: "segmind", Run: 1, Status: reelq.StatusSucceeded, CompletedAt: time.Now().UTC()})
	if _, err := nc.Request("results.segmind."+id, b, 10*time.Second); err != nil { // JetStream's ack
		t.Fatal(err)
	}
}

func environ(natsURL, hookURL string, extra ...string) []string {
	return append([]string{"NATS_URL=" + natsURL, "FORWARDER_URL=" + hookURL, "FORWARDER_SECRET=" + secret,
		"FORWARDER_ALLOW_HOSTS=127.0.0.1", "LOG_FORMAT=json"}, extra...)
}

// The command delivers a result and, when its context ends (what SIGTERM
// does through signal.NotifyContext), returns nil having left nothing
// running (TestMain's goleak).
func TestRunDeliversAndStops(t *testing.T) {
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)
	natstest.Setup(t, js)
	srv, got := receiver(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, environ(s.ClientURL(), srv.URL), &logs) }()
	// The consumer starts after the last stored result: publish once it
	// exists.
	for {
		if _, err := js.Consumer(ctx, wire.StreamResults, "forwarder"); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	publishResult(t, s.ClientURL(), "cmd-1")
	select {
	case id := <-got:
		if id != "result:cmd-1" {
			t.Errorf("webhook-id %q", id)
		}
	case err := <-done:
		t.Fatalf("run ended: %v\n%s", err, logs.String())
	case <-time.After(time.Minute):
		t.Fatalf("nothing delivered\n%s", logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	if strings.Contains(logs.String(), strings.TrimPrefix(secret, "whsec_")) {
		t.Error("the secret reached the log")
	}
	if !strings.Contains(logs.String(), "forwarder stopped") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// A real SIGTERM to a forwarder process ends it with exit status 0.
func TestSIGTERM(t *testing.T) {
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)
	natstest.Setup(t, js)
	srv, _ := receiver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var logs syncBuffer
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(environ(s.ClientURL(), srv.URL), asProcess+"=1")...)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for !strings.Contains(logs.String(), "forwarding results") {
		select {
		case err := <-exited:
			t.Fatalf("exited before starting: %v\n%s", err, logs.String())
		case <-ctx.Done():
			t.Fatalf("never started:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "forwarder stopped") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// --help lists every variable; bad settings are refused naming the
// variable and never echoing a secret.
func TestHelpAndConfigErrors(t *testing.T) {
	var out bytes.Buffer
	for _, arg := range []string{"--version", "version"} {
		out.Reset()
		if err := run(context.Background(), []string{arg}, nil, &out); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		if out.String() != "forwarder "+buildinfo.Version()+"\n" {
			t.Errorf("%s printed %q", arg, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"--help"}, nil, &out); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"FORWARDER_URL", "FORWARDER_SECRET_FILE", "FORWARDER_RETRY_BUDGET", "FORWARDER_ALLOW_HOSTS", "NATS_URL", "nats://127.0.0.1:4222"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("--help lacks %s", v)
		}
	}
	short := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(short, []byte("whsec_c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"FORWARDER_URL=https://h.example/x"}, "FORWARDER_SECRET_FILE: required"},
		{[]string{"FORWARDER_SECRET_FILE=" + short, "FORWARDER_URL=https://h.example/x"}, "secret 1 of 1 is 5 bytes"},
		{[]string{"FORWARDER_SECRET=" + secret}, "no receiver"},
		{[]string{"FORWARDER_SECRET=" + secret, "FORWARDER_URL=ftp://h.example/x?token=s3cret"}, `FORWARDER_URL: ftp://h.example/x?…: unsafe url: scheme "ftp"`},
		{[]string{"FORWARDER_SECRET=" + secret, "FORWARDER_PROVIDER_URLS=nope=https://h.example"}, `FORWARDER_PROVIDER_URLS: "nope": unknown provider`},
		{[]string{"FORWARDER_SECRET=" + secret, "FORWARDER_URL=https://h.example", "FORWARDER_RETRY_BUDGET=1h", "FORWARDER_RETENTION=30m"}, "FORWARDER_RETENTION: 30m is shorter than FORWARDER_RETRY_BUDGET"},
		{[]string{"FORWARDER_SECRET=" + secret, "FORWARDER_URL=https://h.example", "FORWARDER_TIMEOUT=soon"}, `FORWARDER_TIMEOUT: invalid duration "soon"`},
		{[]string{"FORWARDER_SECRET=" + secret, "FORWARDER_URL=https://h.example", "FORWARDER_RETRY_BUGDET=1h", "FORWARDER_DELIVER=some"}, "did you mean FORWARDER_RETRY_BUDGET"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), nil, tc.env, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.env, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%v: the error shows a URL's query: %v", tc.env, err)
		}
	}
}
