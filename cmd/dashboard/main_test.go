package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/leaktest"
	"github.com/reelq/reelq/internal/natstest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// syncBuf is a log that the command and the test share.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The command serves on the address it was given, reads through NATS,
// keeps its token out of the log, and stops when told (live pages too).
func TestRunServesAndStops(t *testing.T) {
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)
	natstest.Setup(t, js)
	token := filepath.Join(t.TempDir(), "token")
	const secret = "cmd-dashboard-token-5c1e9a"
	if err := os.WriteFile(token, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log syncBuf
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--token-file", token, "--min-interval", "50ms"},
			[]string{"NATS_URL=" + s.ClientURL()}, &log, func(a string) { addr <- a })
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	for _, p := range []string{"/healthz", "/", "/jobs", "/dlq"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d %s", p, resp.StatusCode, b)
		}
	}
	// A live page open while the command stops.
	resp, err := http.Get(base + "/live?view=overview")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the command did not stop with a live page open")
	}
	if strings.Contains(log.String(), secret) {
		t.Error("the log shows the token")
	}
	if !strings.Contains(log.String(), "actions=token") {
		t.Errorf("the log does not say how actions are allowed:\n%s", log.String())
	}
}

func TestRunErrors(t *testing.T) {
	s := natstest.Server(t) // no streams: no worker has started
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", "x"}, "--tls-cert and --tls-key go together"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--token-file", "/nonexistent/token"}, "token file"},
		{nil, "no reelq streams"},
	} {
		err := run(context.Background(), c.args, []string{"NATS_URL=" + s.ClientURL()}, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		var out strings.Builder
		if err := run(context.Background(), []string{arg}, nil, &out, nil); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		if out.String() != "dashboard "+buildinfo.Version()+"\n" {
			t.Errorf("%s printed %q", arg, out.String())
		}
	}
}
