package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/queue"
)

// REELQ_SETUP=skip refuses to start without the streams, naming the fix;
// REELQ_SETUP=only creates them and exits (no provider needed), after
// which skip starts.
func TestSetupModes(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	base := []string{"NATS_URL=" + s.ClientURL(), "LOG_FORMAT=json", "REELQ_WORKER_ID=setup-test"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	log := &opsLog{}
	err := run(ctx, nil, append(base, "REELQ_SETUP=skip", "SAMSAR_API_KEY=k"), log)
	if err == nil || !strings.Contains(err.Error(), "REELQ_SETUP=only") {
		t.Fatalf("skip without streams: %v, want an error naming REELQ_SETUP=only", err)
	}

	log = &opsLog{}
	if err := run(ctx, nil, append(base, "REELQ_SETUP=only"), log); err != nil {
		t.Fatalf("only: %v\n%s", err, log)
	}
	_, js := natstest.Connect(t, s)
	for _, name := range []string{queue.StreamJobs, queue.StreamResults, queue.StreamEvents, queue.StreamDLQ} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("after REELQ_SETUP=only: stream %s: %v", name, err)
		}
	}

	log = &opsLog{}
	err = run(ctx, nil, append(base, "REELQ_SETUP=skip"), log)
	if err == nil || !strings.Contains(err.Error(), "no provider enabled") {
		t.Fatalf("skip with streams and no provider: %v, want it to get past setup to the provider check", err)
	}
	if err := run(ctx, nil, append(base, "REELQ_SETUP=sometimes"), &opsLog{}); err == nil || !strings.Contains(err.Error(), "REELQ_SETUP") {
		t.Fatalf("bad value: %v", err)
	}
}

func TestVersionAndHelp(t *testing.T) {
	var out strings.Builder
	for _, arg := range []string{"--version", "version"} {
		out.Reset()
		if err := run(context.Background(), []string{arg}, nil, &out); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		if out.String() != "worker "+buildinfo.Version()+"\n" {
			t.Errorf("%s printed %q", arg, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"--help"}, nil, &out); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"NATS_URL", "P_MAX_INFLIGHT", "REELQ_SHUTDOWN_TIMEOUT"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("--help does not list %s", v)
		}
	}
}

// With NATS_URL unset and REELQ_LISTEN taken, the worker fails at once
// naming the variable, the address and the cause; the embedded server's
// log lines carry component=nats-server once, its banner at DEBUG.
func TestTakenEmbeddedPortIsNamed(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := &opsLog{}
	err = run(ctx, nil, []string{"REELQ_LISTEN=" + ln.Addr().String(), "REELQ_DATA_DIR=" + t.TempDir(), "SAMSAR_API_KEY=k",
		"LOG_FORMAT=json", "LOG_LEVEL=debug", "REELQ_WORKER_ID=taken-port"}, log)
	if err == nil || !strings.Contains(err.Error(), "REELQ_LISTEN "+ln.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err %v, want REELQ_LISTEN, the address and the cause", err)
	}
	banner := false
	for _, l := range log.Lines() {
		msg, _ := l["msg"].(string)
		if strings.Contains(msg, "Starting nats-server") {
			banner = l["level"] == "DEBUG" && l["component"] == "nats-server"
		}
	}
	if !banner {
		t.Errorf("no banner line at DEBUG with component nats-server:\n%s", log)
	}
	if n := strings.Count(log.String(), `"component":"nats-server","component":"nats-server"`); n > 0 {
		t.Errorf("%d lines carry component twice:\n%s", n, log)
	}
}
