package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/synadia-io/orbit.go/natscontext"

	"github.com/reelq/reelq/internal/config"
	"github.com/reelq/reelq/internal/natsconn"
)

// dial connects to NATS through the nats CLI's context files
// (natscontext: $XDG_CONFIG_HOME/nats/context/<name>.json, else
// ~/.config/nats/...): the named context (--context, else NATS_CONTEXT),
// else the one `nats context select` chose (context.txt), else none.
// What the command line and the environment set wins over the context:
// --server, then NATS_URL, then the context's url, then
// nats://127.0.0.1:4222; credentials from NATS_CREDS, NATS_NKEY,
// NATS_TOKEN(_FILE) or NATS_USER replace the context's as a whole; NATS_CA,
// NATS_CERT/NATS_KEY and NATS_INBOX_PREFIX replace its fields of the same
// name.
func dial(cfg config.NATS, name, server string, log *slog.Logger) (*nats.Conn, error) {
	// The context's options come first, these after them.
	var ours []nats.Option
	url := server
	if url == "" {
		url = cfg.URL
	}
	if url != "" {
		ours = append(ours, servers(url))
	}
	if cfg.Creds != "" || cfg.NKey != "" || cfg.Token != "" || cfg.User != "" {
		ours = append(ours, noAuth)
	}
	env, err := natsconn.Options(cfg, "reelq-enqueue", log)
	if err != nil {
		return nil, err
	}
	nc, _, err := natscontext.Connect(name, append(ours, env...)...)
	if err != nil {
		if strings.HasPrefix(err.Error(), "unknown context") || strings.HasPrefix(err.Error(), "invalid context name") {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("--context/NATS_CONTEXT: %v (contexts are the nats CLI's, in %s; `nats context ls` lists them)", err, contextDir())}
		}
		where := "at " + config.RedactURL(url)
		if url == "" {
			where = "(no --server or NATS_URL: the nats context's url, else " + nats.DefaultURL + ")"
		}
		return nil, fmt.Errorf("connect to NATS %s: %w", where, err)
	}
	return nc, nil
}

// servers replaces the context's server list.
func servers(url string) nats.Option {
	return func(o *nats.Options) error {
		o.Servers = nil
		for _, u := range strings.Split(url, ",") {
			if u = strings.TrimSpace(u); u != "" {
				o.Servers = append(o.Servers, u)
			}
		}
		return nil
	}
}

// noAuth drops the context's credentials, for the environment's.
func noAuth(o *nats.Options) error {
	o.User, o.Password, o.UserInfo = "", "", nil
	o.Token, o.TokenHandler = "", nil
	o.UserJWT, o.SignatureCB, o.Nkey = nil, nil, ""
	return nil
}

// contextDir is where the nats CLI keeps its contexts, for messages.
func contextDir() string {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "nats", "context")
	}
	return "~/.config/nats/context"
}
