package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/natstest"
)

// authServer is a JetStream server that admits only user op with password
// s3cret, with reelq's streams.
func authServer(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{{Username: "op", Password: "s3cret"}}, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("op", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Setup(t, js)
	return s
}

// writeContext writes the nats CLI's context file NAME under dir (an
// XDG_CONFIG_HOME) as `nats context save` does.
func writeContext(t *testing.T, dir, name string, settings map[string]any) {
	t.Helper()
	b, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "nats", "context", name+".json")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// An operator with the nats CLI set up needs nothing else: enqueue reads
// the same context files (selected by context.txt, or named by --context
// or NATS_CONTEXT), and --server, NATS_URL and NATS_USER/NATS_PASSWORD
// still win over the context's fields. Not parallel: the context files are
// found through the process's XDG_CONFIG_HOME, as the nats CLI finds them.
func TestNATSContexts(t *testing.T) {
	s := authServer(t)
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	writeContext(t, cfg, "ops", map[string]any{"description": "reelq ops", "url": s.ClientURL(), "user": "op", "password": "s3cret"})
	writeContext(t, cfg, "nowhere", map[string]any{"url": "nats://127.0.0.1:1", "user": "op", "password": "s3cret"})

	enq := func(environ []string, args ...string) res {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var out, errb bytes.Buffer
		err := run(ctx, args, append(environ, "NATS_TIMEOUT=2s"), strings.NewReader(""), &out, &errb)
		if msg := errorText(err); msg != "" {
			errb.WriteString("enqueue: " + msg + "\n")
		}
		return res{exitCode(err), out.String(), errb.String()}
	}
	ok := func(what string, r res) {
		t.Helper()
		if r.code != 0 || !strings.Contains(r.stdout, "\"providers\"") {
			t.Errorf("%s: want the stats of the context's server:\n%s", what, r)
		}
	}
	// Named by --context, or by NATS_CONTEXT (the flag wins).
	ok("--context ops", enq(nil, "stats", "-o", "json", "--context", "ops"))
	ok("NATS_CONTEXT=ops", enq([]string{"NATS_CONTEXT=ops"}, "stats", "-o", "json"))
	ok("--context over NATS_CONTEXT", enq([]string{"NATS_CONTEXT=nowhere"}, "stats", "-o", "json", "--context", "ops"))
	// The selected one, as `nats context select ops` leaves it.
	if err := os.WriteFile(filepath.Join(cfg, "nats", "context.txt"), []byte("ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok("selected context", enq(nil, "stats", "-o", "json"))

	// NATS_URL and --server win over the context's url; NATS_USER and
	// NATS_PASSWORD over its credentials.
	if r := enq([]string{"NATS_URL=nats://127.0.0.1:1"}, "stats", "--context", "ops"); r.code != exitUnavailable || !strings.Contains(r.stderr, "127.0.0.1:1") {
		t.Errorf("NATS_URL over the context: want exit 5 at 127.0.0.1:1:\n%s", r)
	}
	ok("--server over the context", enq(nil, "stats", "-o", "json", "--context", "nowhere", "--server", s.ClientURL()))
	if r := enq([]string{"NATS_USER=op", "NATS_PASSWORD=wrong"}, "stats", "--context", "ops"); r.code != exitUnavailable || !strings.Contains(strings.ToLower(r.stderr), "authorization") {
		t.Errorf("NATS_USER/NATS_PASSWORD over the context: want an authorization failure:\n%s", r)
	}
	// An unknown context is bad usage, named, with where contexts live.
	if r := enq(nil, "stats", "--context", "nope"); r.code != exitUsage || !strings.Contains(r.stderr, `unknown context "nope"`) ||
		!strings.Contains(r.stderr, filepath.Join(cfg, "nats", "context")) {
		t.Errorf("unknown context: want exit 2 naming it and the directory:\n%s", r)
	}
}
