package embedded

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/reelq/reelq/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// syncBuffer is a log sink safe for the server's goroutines.
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

// A port in use fails Start at once with the listen error, which names the
// address (before: "not ready after 30s", after waiting 30 s).
func TestTakenPortFailsAtOnceNamingIt(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var logs syncBuffer
	s, err := Start(Options{Listen: ln.Addr().String(), StoreDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err == nil {
		Stop(s)
		t.Fatal("Start on a port in use succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, ln.Addr().String()) || !strings.Contains(msg, "address already in use") {
		t.Errorf("error %q does not name the address and the cause", msg)
	}
}

// The server's banner (about 50 notices) is logged at DEBUG, each line
// with component=nats-server once; at INFO a start logs nothing.
func TestBannerAtDebugComponentOnce(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var logs syncBuffer
		s, err := Start(Options{Listen: "127.0.0.1:-1", StoreDir: t.TempDir(),
			Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))})
		if err != nil {
			t.Fatal(err)
		}
		Stop(s)
		out := logs.String()
		switch level {
		case slog.LevelInfo:
			if strings.Contains(out, "level=INFO") {
				t.Errorf("at INFO, a start logged notices:\n%s", out)
			}
		case slog.LevelDebug:
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) < 10 || !strings.Contains(out, "Starting nats-server") {
				t.Errorf("at DEBUG, %d lines and no banner:\n%s", len(lines), out)
			}
			for _, l := range lines {
				if n := strings.Count(l, "component=nats-server"); n != 1 {
					t.Errorf("line with component %d times: %s", n, l)
					break
				}
				if strings.Contains(l, "Starting nats-server") && !strings.Contains(l, "level=DEBUG") {
					t.Errorf("banner not at DEBUG: %s", l)
				}
			}
		}
	}
}
