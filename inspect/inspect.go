// Package inspect is reelq's operator API: queue statistics, provider
// pauses, held jobs, the dead-letter queue, budgets, job timelines and
// archived outputs. Producers need only the reelq package's Client;
// an Inspector needs the identity the calls it makes require (an operator
// identity for Pause, Resume, Resolve, Redrive and SetBudget for a
// provider; one that may read EVENTS for JobEvents and FollowEvents: see
// SECURITY.md).
package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// Inspector reads and operates the queue over a NATS connection. It is
// safe for concurrent use.
type Inspector struct {
	client *reelq.Client
	nc     *nats.Conn
	js     jetstream.JetStream
	s      *store.Store
	opts   reelq.Options

	jobs    jetstream.KeyValue
	cancels jetstream.KeyValue
}

// New returns an inspector over nc. opts are the reelq.Client's (By names
// the operator in events and requests, Timeout bounds each request).
func New(ctx context.Context, nc *nats.Conn, opts reelq.Options) (*Inspector, error) {
	client, err := reelq.NewClient(ctx, nc, opts)
	if err != nil {
		return nil, err
	}
	if opts.By == "" {
		opts.By = "reelq-client"
	}
	if opts.ConsumerPrefix == "" {
		opts.ConsumerPrefix = "reelq_client"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	c := &Inspector{client: client, nc: nc, js: js, s: &store.Store{NC: nc, JS: js, Timeout: opts.Timeout}, opts: opts}
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	if c.jobs, err = js.KeyValue(cctx, wire.BucketJobs); err != nil {
		return nil, notReady(err)
	}
	if c.cancels, err = js.KeyValue(cctx, wire.BucketCancel); err != nil {
		return nil, notReady(err)
	}
	return c, nil
}

func notReady(err error) error {
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: %w", reelq.ErrNotReady, err)
	}
	return fmt.Errorf("reelq: %w", err)
}

// getState reads a job's state, or reelq.ErrNotFound.
func (c *Inspector) getState(ctx context.Context, id string) (*reelq.JobState, error) {
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	e, err := c.jobs.Get(cctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w %q", reelq.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("reelq: job state %s: %w", id, err)
	}
	return decodeState(id, e.Value())
}

func decodeState(id string, data []byte) (*reelq.JobState, error) {
	var st reelq.JobState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("reelq: decode job state %s: %w", id, err)
	}
	if st.Run == 0 {
		st.Run = 1
	}
	return &st, nil
}

// states reads the states of ids in batched requests; ids without state
// are absent from the result.
func (c *Inspector) states(ctx context.Context, ids []string) (map[string]*reelq.JobState, error) {
	vals, err := c.s.KVValues(ctx, wire.BucketJobs, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*reelq.JobState, len(vals))
	for id, data := range vals {
		if st, err := decodeState(id, data); err == nil {
			out[id] = st
		}
	}
	return out, nil
}

// event publishes e (an operator's provider_paused, say).
func (c *Inspector) event(e reelq.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.Worker == "" {
		e.Worker = c.opts.By
	}
	data, _ := json.Marshal(e)
	_ = c.nc.Publish(e.Subject(), data)
}
