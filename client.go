package reelq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// Client enqueues jobs and follows their results over a NATS connection.
// It needs the streams and buckets a worker creates at start-up (it never
// creates or changes them), and only the permissions of a producer (see
// SECURITY.md): it publishes jobs and cancel requests and reads job state,
// queued messages and results. Operator and monitoring calls are on
// package inspect's Inspector. Only Results with a Name keeps a consumer
// on the server: every other read is a direct get, and the calls that
// follow a stream (Wait, WaitAll, Results without a Name and Follow)
// also subscribe to the subjects they read, to know when to read again
// (without that right they read every 5 s). A Client is safe for
// concurrent use.
type Client struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	s    *store.Store
	opts Options

	jobs       jetstream.KeyValue
	cancels    jetstream.KeyValue
	validators map[string]Validator
	rules      map[string]kind.Rules

	cwMu sync.Mutex
	cw   time.Duration // COUNTERS duplicate window

	// betweenReads, set by tests, runs between Get's read of the job state
	// and its read of the queue.
	betweenReads func(id string)
}

// Options configure a Client. The zero value is usable.
type Options struct {
	// ProviderEnv supplies the provider options the input rules depend on,
	// under the worker's variable names (e.g. SAMSAR_VIDEO_MODELS,
	// SEGMIND_PRICE_PER_RUN), so the client validates and prices jobs as
	// the workers will. Nil means the providers' defaults: the client
	// never reads the process environment (pass a map built from
	// os.Environ to validate as workers configured by it).
	ProviderEnv map[string]string
	// Limits are the job size limits; the zero value means the defaults
	// (MaxInputBytes, MaxMetadataBytes, MaxJobBytes).
	Limits Limits
	// By names this client in events and requests (e.g. a service name).
	// Default "reelq-client".
	By string
	// Window is how many jobs EnqueueBatch has in flight at once. Default
	// 1000.
	Window int
	// ConsumerPrefix starts the name of the durable consumers Results
	// creates (ConsumerPrefix_Name): permissions can then let each identity
	// create and delete only its own. No other call creates a consumer.
	// Default "reelq_client".
	ConsumerPrefix string
	// Timeout bounds each request to the server when ctx has no earlier
	// deadline. Default 10s.
	Timeout time.Duration
	// TracerProvider makes the spans of enqueues (one per job published,
	// whose context the job carries to the workers as its traceparent) and
	// of Results deliveries. Nil means otel's global provider, a no-op
	// until the program installs one.
	TracerProvider trace.TracerProvider
}

// ErrNotFound is returned for a job id nobody has published (or whose
// state has expired).
var ErrNotFound = errors.New("reelq: unknown job")

// ErrConflict is returned when a job id is already known with different
// content (provider, input or metadata): the known job is left as it is.
var ErrConflict = errors.New("reelq: job id already known with different content")

// ErrNotReady is returned by NewClient when the streams and buckets a worker
// creates do not exist yet.
var ErrNotReady = errors.New("reelq: streams not found; start a worker first (it creates them)")

// NewClient returns a client over nc.
func NewClient(ctx context.Context, nc *nats.Conn, opts Options) (*Client, error) {
	if opts.By == "" {
		opts.By = "reelq-client"
	}
	if opts.Window <= 0 {
		opts.Window = 1000
	}
	if opts.ConsumerPrefix == "" {
		opts.ConsumerPrefix = "reelq_client"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	opts.Limits = opts.Limits.withDefaults()
	rules := make(map[string]kind.Rules, len(kinds))
	validators := make(map[string]Validator, len(kinds))
	for _, k := range kinds {
		r, err := k.Rules(opts.ProviderEnv)
		if err != nil {
			return nil, fmt.Errorf("reelq: provider options: %w", err)
		}
		rules[k.Name], validators[k.Name] = r, r
	}
	// An async publish whose ack never comes (the connection dropped
	// after the message left) fails after a while instead of waiting
	// forever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(max(3*opts.Timeout, 30*time.Second)))
	if err != nil {
		return nil, err
	}
	c := &Client{nc: nc, js: js, s: &store.Store{NC: nc, JS: js, Timeout: opts.Timeout}, opts: opts, validators: validators, rules: rules}
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
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	return fmt.Errorf("reelq: %w", err)
}

// Validate checks j as the worker will, without publishing it. The error
// wraps ErrInvalidJob and says what is wrong the way a person reads it:
// `input.prompt is 501 characters; the limit is 500`, `input: unknown
// field "promt"`, `field "duration" must be a number, not a string`.
func (c *Client) Validate(j Job) error {
	return kind.Readable(j.Validate(c.validators, c.opts.Limits))
}

// Estimate is what jobs are expected to cost at their providers.
type Estimate struct {
	// Jobs is each job's cost, in order; a job without a price (invalid,
	// or its provider publishes none) has the zero Cost.
	Jobs []Cost
	// Totals sums the priced jobs by provider and unit.
	Totals map[string]map[string]float64
	// Unpriced counts the jobs without a price.
	Unpriced int
}

// Estimate prices jobs as the workers configured like this client will
// (it needs no server).
func (c *Client) Estimate(jobs ...Job) Estimate {
	e := Estimate{Jobs: make([]Cost, len(jobs)), Totals: map[string]map[string]float64{}}
	for i, j := range jobs {
		p := c.rules[j.Provider]
		if p == nil || c.Validate(j) != nil {
			e.Unpriced++
			continue
		}
		k := p.Estimate(j.Input)
		if k.Unit == "" {
			e.Unpriced++
			continue
		}
		e.Jobs[i] = Cost{Amount: k.Amount, Unit: k.Unit, Basis: k.Basis}
		if e.Totals[j.Provider] == nil {
			e.Totals[j.Provider] = map[string]float64{}
		}
		e.Totals[j.Provider][k.Unit] = money.Add(e.Totals[j.Provider][k.Unit], k.Amount)
	}
	return e
}

// Cancelable reports whether provider's API can stop a running task (if
// not, a running job that is cancelled still runs, and is billed, at the
// provider).
func (c *Client) Cancelable(provider string) bool {
	k, _ := kindOf(provider)
	return k.Cancelable
}

// getState reads a job's state, or ErrNotFound.
func (c *Client) getState(ctx context.Context, id string) (*JobState, error) {
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	e, err := c.jobs.Get(cctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("reelq: job state %s: %w", id, err)
	}
	return decodeState(id, e.Value())
}

func decodeState(id string, data []byte) (*JobState, error) {
	var st JobState
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
func (c *Client) states(ctx context.Context, ids []string) (map[string]*JobState, error) {
	vals, err := c.s.KVValues(ctx, wire.BucketJobs, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*JobState, len(vals))
	for id, data := range vals {
		if st, err := decodeState(id, data); err == nil {
			out[id] = st
		}
	}
	return out, nil
}

// queuedMsgs reads the messages still waiting in JOBS for the given
// subjects (one per job), keyed by subject.
func (c *Client) queuedMsgs(ctx context.Context, subjects []string) (map[string]store.Msg, error) {
	cctx, cancel := c.s.ReqCtx(ctx)
	defer cancel()
	return c.s.LastMsgs(cctx, wire.StreamJobs, subjects)
}
