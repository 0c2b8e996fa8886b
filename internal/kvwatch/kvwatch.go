// Package kvwatch keeps a process's view of a JetStream KV bucket current:
// it loads every key, then follows the changes. The view's owner applies
// each entry under its own lock and bumps its changes.Version there, so a
// reader that waits for the view to change misses nothing.
package kvwatch

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Follow hands every entry of kv to apply (live false), then every change
// (live true), on one goroutine, until ctx ends. It returns once the
// initial values are applied, with a channel closed when that goroutine
// stops: with ctx, or on its own when the server ends the watch (the
// caller starts it again then). what names the bucket's contents in
// errors ("cancel requests").
func Follow(ctx context.Context, kv jetstream.KeyValue, what string, apply func(e jetstream.KeyValueEntry, live bool)) (<-chan struct{}, error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", what, err)
	}
	ready, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		defer func() { _ = w.Stop() }()
		initial := true
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // the initial values are all in
					if initial {
						initial = false
						close(ready)
					}
					continue
				}
				apply(e, !initial)
			}
		}
	}()
	select {
	case <-ready:
		return stopped, nil
	case <-stopped:
		return nil, errors.New("watch " + what + ": the watch ended before its initial values")
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}
