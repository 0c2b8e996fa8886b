package reelqtest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providers/vimmerse"
	"github.com/reelq/reelq/internal/providerstate"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/waitfor"
)

// ProviderStore is the provider-state store as an operator sees it: the
// one `enqueue pause`, `enqueue resume` and `enqueue stats` use.
func (e *Env) ProviderStore() *providerstate.Store {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.JS.KeyValue(ctx, queue.BucketProviders)
	if err != nil {
		e.T.Fatal(err)
	}
	return providerstate.New(e.JS, kv, queue.StreamJobs, queue.ConsumerNames)
}

// ConsumerInfo returns provider's consumer as the server reports it.
func (e *Env) ConsumerInfo(provider string) *jetstream.ConsumerInfo {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := e.JS.Consumer(ctx, queue.StreamJobs, provider)
	if err != nil {
		e.T.Fatalf("consumer %s: %v", provider, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		e.T.Fatalf("consumer %s info: %v", provider, err)
	}
	return info
}

// Events follows the events stored in EVENTS on subject filter (e.g.
// "events.samsar.provider_paused") and on filter.* (the same kind about
// one job), from the start of the stream, until the test ends. Events
// published before the call are delivered too.
func (e *Env) Events(filter string) <-chan reelq.Event {
	e.T.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.T.Cleanup(cancel)
	filters := []string{filter}
	if !strings.HasSuffix(filter, ">") {
		filters = append(filters, filter+".*")
	}
	cons, err := e.JS.OrderedConsumer(ctx, queue.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: filters})
	if err != nil {
		e.T.Fatalf("events consumer: %v", err)
	}
	it, err := cons.Messages()
	if err != nil {
		e.T.Fatalf("events consumer: %v", err)
	}
	out := make(chan reelq.Event, 1024)
	go func() {
		defer close(out)
		defer it.Stop()
		for ctx.Err() == nil {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			var ev reelq.Event
			if json.Unmarshal(msg.Data(), &ev) == nil {
				select {
				case out <- ev:
				case <-ctx.Done():
				}
			}
		}
	}()
	return out
}

// NextEvent returns the next event from ch, failing the test after timeout.
func (e *Env) NextEvent(ch <-chan reelq.Event, timeout time.Duration) reelq.Event {
	e.T.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			e.T.Fatal("event stream closed")
		}
		return ev
	case <-time.After(timeout):
		e.T.Fatalf("no event within %s", timeout)
	}
	return reelq.Event{}
}

// WaitProviderState watches provider's record in the provider-state
// bucket until cond holds, and returns that state. It fails the test after
// timeout.
func (e *Env) WaitProviderState(provider string, timeout time.Duration, cond func(providerstate.State) bool) providerstate.State {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv, err := e.JS.KeyValue(ctx, queue.BucketProviders)
	if err != nil {
		e.T.Fatal(err)
	}
	var st providerstate.State
	waitfor.Key(e.T, kv, provider, timeout, "provider state "+provider, func(en jetstream.KeyValueEntry) bool {
		st = providerstate.State{Provider: provider}
		if en != nil && en.Operation() == jetstream.KeyValuePut {
			if err := json.Unmarshal(en.Value(), &st); err != nil {
				e.T.Fatalf("provider state %s: %v", provider, err)
			}
		}
		return cond(st)
	})
	return st
}

// WaitReplicaView waits until replica r's local view of provider's state
// (kept by its KV watcher) satisfies cond, waking on its change channel.
func (e *Env) WaitReplicaView(r *Running, provider string, timeout time.Duration, cond func(providerstate.State) bool) providerstate.State {
	e.T.Helper()
	deadline := time.After(timeout)
	for {
		st, seen := r.W.ProviderState().View(provider)
		if cond(st) {
			return st
		}
		select {
		case <-r.W.ProviderState().Changed(seen):
		case <-deadline:
			e.T.Fatalf("replica %s: view of %s not as expected within %s; last %+v", r.ID, provider, timeout, st)
		}
	}
}

// VimmerseJob is a valid Vimmerse job (default template, 100 credits);
// the simulator counts its submissions under VimmerseTitle(id).
func VimmerseJob(id string) reelq.Job {
	return reelq.Job{ID: id, Provider: "vimmerse", Batch: "test", Input: []byte(`{"visibility_status":"0"}`)}
}

// VimmerseTitle is the workflow title VimmerseJob(id) submits.
func VimmerseTitle(id string) string { return vimmerse.Title("", id) }

// Jobs returns n jobs made by mk with ids prefix-00, prefix-01, ...
func Jobs(n int, prefix string, mk func(id string) reelq.Job) []reelq.Job {
	out := make([]reelq.Job, n)
	for i := range out {
		out[i] = mk(fmt.Sprintf("%s-%02d", prefix, i))
	}
	return out
}
