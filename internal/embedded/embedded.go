// Package embedded runs an in-process nats-server with JetStream: the
// worker's default when NATS_URL is unset, and the server every test
// starts.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server.
type Options struct {
	// Name is the server name; default "reelq".
	Name string
	// Listen is host:port for clients; port -1 picks a free one. Empty
	// with DontListen means in-process connections only.
	Listen     string
	DontListen bool
	// StoreDir holds JetStream data.
	StoreDir string
	// SyncAlways fsyncs every write before acknowledging it.
	SyncAlways bool
	// MaxStore bounds JetStream file storage; zero means 8 GiB.
	MaxStore int64
	// Cluster, when set, joins a cluster (Name, Listen host:port, Routes).
	Cluster *Cluster
	// Logger receives the server's log, with component=nats-server: its
	// start-up banner and notices at DEBUG, warnings and errors as such;
	// nil means silent.
	Logger *slog.Logger
}

// Cluster describes a cluster membership.
type Cluster struct {
	Name   string
	Listen string
	Routes []string // nats-route://host:port
}

// Start starts a server and waits until it accepts connections and
// JetStream is ready.
func Start(o Options) (*server.Server, error) {
	opts := &server.Options{
		ServerName:         o.Name,
		JetStream:          true,
		StoreDir:           o.StoreDir,
		JetStreamMaxStore:  o.MaxStore,
		JetStreamMaxMemory: 256 << 20,
		SyncAlways:         o.SyncAlways,
		NoSigs:             true,
		DontListen:         o.DontListen,
		MaxPayload:         4 << 20,
	}
	if opts.ServerName == "" {
		opts.ServerName = "reelq"
	}
	if opts.JetStreamMaxStore == 0 {
		opts.JetStreamMaxStore = 8 << 30
	}
	if o.StoreDir == "" {
		return nil, errors.New("embedded nats: StoreDir is required")
	}
	if !o.DontListen {
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats listen address: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	if c := o.Cluster; c != nil {
		host, port, err := splitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats cluster address: %w", err)
		}
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
		opts.Routes = server.RoutesFromStr(joinRoutes(c.Routes))
	}
	opts.StoreDir = filepath.Clean(opts.StoreDir)
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The server reports a port it cannot listen on through Fatalf and
	// keeps waiting; the adapter hands the first fatal error over, so
	// Start fails at once with it.
	la := &logAdapter{l: log.With("component", "nats-server"), fatal: make(chan string, 1)}
	s.SetLoggerV2(la, o.Logger != nil && o.Logger.Enabled(context.Background(), slog.LevelDebug), false, false)
	go s.Start()
	for deadline := time.Now().Add(30 * time.Second); !s.ReadyForConnections(50 * time.Millisecond); {
		select {
		case msg := <-la.fatal:
			Stop(s)
			return nil, fmt.Errorf("embedded nats: %s", msg)
		default:
		}
		if time.Now().After(deadline) {
			Stop(s)
			return nil, errors.New("embedded nats: not ready after 30s")
		}
	}
	return s, nil
}

// Stop shuts s down and waits for it.
func Stop(s *server.Server) {
	if s == nil {
		return
	}
	s.Shutdown()
	s.WaitForShutdown()
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, port, nil
}

func joinRoutes(r []string) string {
	out := ""
	for i, s := range r {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

// logAdapter sends nats-server logs to slog: notices (the banner, the
// listening addresses, JetStream's settings: about 50 lines at start) at
// DEBUG, since the worker logs what matters of them itself.
type logAdapter struct {
	l     *slog.Logger
	fatal chan string // the first fatal error, for Start
}

func (a *logAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *logAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a *logAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	a.l.Error(msg)
	select {
	case a.fatal <- msg:
	default:
	}
}
func (a *logAdapter) Errorf(format string, v ...any) { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *logAdapter) Debugf(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *logAdapter) Tracef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
