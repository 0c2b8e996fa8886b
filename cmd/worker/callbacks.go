package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/callback"
	"github.com/reelq/reelq/internal/config"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/queue"
)

// callbacks is the inbound callback setup: the URL minter (nil: no
// provider has callbacks on) and the check of each such provider's
// signatures.
type callbacks struct {
	minter *callback.Minter
	provs  map[string]callback.Provider
	// secrets are the values to redact from logs.
	secrets []string
}

// loadCallbacks builds the callback setup from the configuration; its
// errors name the variable.
func loadCallbacks(cfg *config.Worker, environ []string) (*callbacks, error) {
	on := cfg.CallbacksOn()
	cb := &callbacks{provs: map[string]callback.Provider{}}
	if len(on) == 0 {
		return cb, nil
	}
	m, err := callback.NewMinter(cfg.CallbackURL, cfg.CallbackSecret)
	if err != nil {
		name := "REELQ_CALLBACK_URL"
		if strings.HasPrefix(err.Error(), "secret") {
			name = "REELQ_CALLBACK_SECRET"
		}
		return nil, fmt.Errorf("configuration: %s: %w", name, err)
	}
	cb.minter, cb.secrets = m, []string{cfg.CallbackSecret}
	env := config.Environ(environ)
	for _, name := range on {
		spec, _ := all.Lookup(name)
		var p callback.Provider
		if spec.Callbacks.Check != nil {
			chk, err := spec.Callbacks.Check(env)
			if err != nil {
				return nil, fmt.Errorf("configuration: %w", err)
			}
			p.Verify = chk.Verify
			cb.secrets = append(cb.secrets, chk.Secrets...)
		}
		cb.provs[name] = p
	}
	return cb, nil
}

// urlFor is the CallbackURL of provider's Runtime: nil when its
// callbacks are off.
func (cb *callbacks) urlFor(provider string) func(id string) string {
	if _, on := cb.provs[provider]; !on {
		return nil
	}
	return func(id string) string { return cb.minter.URL(provider, id) }
}

// serve serves the endpoint on REELQ_CALLBACK_ADDR until ctx ends.
func (cb *callbacks) serve(ctx context.Context, cfg *config.Worker, nc *nats.Conn, js jetstream.JetStream, log *slog.Logger) error {
	if cfg.CallbackAddr == "" {
		return nil
	}
	if cb.minter == nil {
		log.Warn("REELQ_CALLBACK_ADDR is set but no provider has P_CALLBACKS=true: the endpoint is not started")
		return nil
	}
	kv, err := js.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		return err
	}
	h := (&callback.Handler{Minter: cb.minter, Providers: cb.provs, Phase: callback.StatePhase(jobstate.New(js, kv)),
		Wake: callback.Publish(nc), MaxBody: cfg.CallbackMaxBody, Rate: cfg.CallbackRate, Burst: cfg.CallbackBurst,
		Log: log.With("component", "callbacks")}).Init()
	addr, _, err := callback.Serve(ctx, cfg.CallbackAddr, h)
	if err != nil {
		return fmt.Errorf("REELQ_CALLBACK_ADDR: %w", err)
	}
	log.Info("serving provider callbacks", "addr", addr, "providers", slices.Sorted(maps.Keys(cb.provs)))
	return nil
}
