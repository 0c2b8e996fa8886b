// Package forwarder delivers result events to HTTP receivers that do not
// speak NATS: a durable consumer on RESULTS, each result POSTed to the
// receivers its route names, signed in the Standard Webhooks format
// (internal/webhook), retried with back-off for a retry budget (24 h by
// default), acknowledged only when every receiver answered 2xx or was
// dead-lettered. docs/webhooks.md is the user's guide.
//
// Order per job. A job's later result (run 2) is never delivered to a
// receiver before its earlier one (run 1) is settled there (delivered or
// dead-lettered). The rule lives in JetStream, not in the process, so it
// holds across restarts and replicas: the ledger (bucket reelq_hooks)
// records per job the last RESULTS sequence whose deliveries are settled
// (Done); a result whose job has an earlier routed result after Done
// still in RESULTS and not yet acknowledged waits (negative
// acknowledgement with a delay) and is looked at again. Jobs never wait for one another: a receiver that fails
// holds back only the later results of the jobs it has not received yet,
// up to MaxPending results in all (the consumer's MaxAckPending).
//
// Several receivers per result. Progress is kept per receiver in the
// job's ledger entry: a retry posts only to receivers that have not
// answered 2xx, and the result is acknowledged when all are settled, so
// one receiver's failures never re-post to the others.
package forwarder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/reelq/reelq/internal/netguard"
	"github.com/reelq/reelq/internal/webhook"
	"github.com/reelq/reelq/internal/wire"
)

// Config configures a Forwarder. Zero durations and counts take the
// defaults named.
type Config struct {
	Routes  Routes
	Secrets *webhook.Secrets
	// Network is the SSRF rule set: internal addresses are refused
	// unless allowed here.
	Network netguard.Rules
	// Timeout bounds one POST, connection to response (default 15 s).
	Timeout time.Duration
	// RetryBase and RetryMax shape the back-off between attempts
	// (exponential, jittered; defaults 5 s and 1 h). RetryBudget is how
	// long a delivery is retried after its first attempt before it is
	// dead-lettered (default 24 h).
	RetryBase, RetryMax, RetryBudget time.Duration
	// Concurrency is how many results are delivered at once (default 16).
	Concurrency int
	// MaxPending bounds results delivered and not yet settled, retrying
	// ones included (the consumer's MaxAckPending; default 10000).
	MaxPending int
	// Durable names the consumers (default DefaultDurable).
	Durable string
	// DeliverAll makes a new consumer start at the first result RESULTS
	// holds rather than after the last.
	DeliverAll bool
	Layout     Layout
	Logger     *slog.Logger
	// Registerer, if set, gets reelq_hooks_deliveries_total.
	Registerer prometheus.Registerer
}

// Forwarder is the running result forwarder.
type Forwarder struct {
	cfg      Config
	js       jetstream.JetStream
	log      *slog.Logger
	send     *sender
	results  jetstream.Stream
	dlq      jetstream.Stream
	ledger   jetstream.KeyValue
	resCons  jetstream.Consumer
	redCons  jetstream.Consumer
	firstSeq uint64
	outcomes *prometheus.CounterVec
}

// ErrNoStreams means RESULTS does not exist: no worker has set up the
// streams yet.
var ErrNoStreams = errors.New("forwarder: stream RESULTS does not exist (start a worker first; it creates the streams)")

// New checks the configuration, sets up the forwarder's streams, bucket
// and consumers, and returns a forwarder ready to Run.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Forwarder, error) {
	if cfg.Secrets == nil {
		return nil, errors.New("forwarder: no signing secret")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Timeout, 15*time.Second)
	def(&cfg.RetryBase, 5*time.Second)
	def(&cfg.RetryMax, time.Hour)
	def(&cfg.RetryBudget, 24*time.Hour)
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 10000
	}
	if cfg.Durable == "" {
		cfg.Durable = DefaultDurable
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g, err := netguard.New(cfg.Network)
	if err != nil {
		return nil, fmt.Errorf("forwarder: %w", err)
	}
	f := &Forwarder{cfg: cfg, js: js, log: cfg.Logger, send: newSender(g, cfg.Secrets, cfg.Timeout, time.Now)}
	if f.results, err = js.Stream(ctx, wire.StreamResults); errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, ErrNoStreams
	} else if err != nil {
		return nil, fmt.Errorf("forwarder: stream %s: %w", wire.StreamResults, err)
	}
	if err := Setup(ctx, js, cfg.Layout); err != nil {
		return nil, err
	}
	if f.dlq, err = js.Stream(ctx, StreamDLQ); err != nil {
		return nil, fmt.Errorf("forwarder: stream %s: %w", StreamDLQ, err)
	}
	if f.ledger, err = js.KeyValue(ctx, BucketLedger); err != nil {
		return nil, fmt.Errorf("forwarder: bucket %s: %w", BucketLedger, err)
	}
	// One message's receivers are posted one after the other: AckWait
	// covers them all, plus the ledger and DLQ writes.
	ackWait := time.Duration(max(maxURLs(cfg.Routes), 1))*cfg.Timeout + 30*time.Second
	if f.resCons, f.redCons, f.firstSeq, err = consumers(ctx, js, f.results, cfg.Durable, cfg.DeliverAll, ackWait, cfg.MaxPending); err != nil {
		return nil, err
	}
	f.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reelq_hooks_deliveries_total",
		Help: "Webhook deliveries by outcome: delivered, failed (an attempt; retried), dead_lettered, refused (the network rules), waiting (behind an earlier result of the same job)."},
		[]string{"outcome"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(f.outcomes); err != nil {
			return nil, fmt.Errorf("forwarder: metrics: %w", err)
		}
	}
	return f, nil
}

func maxURLs(r Routes) int {
	n := len(r.Default)
	for _, m := range []map[string][]string{r.Provider, r.Batch} {
		for _, us := range m {
			n = max(n, len(us))
		}
	}
	return n
}

// Run delivers until ctx ends, then stops taking results, lets the
// deliveries in flight finish (each POST is bounded by Timeout) and
// returns. Failed fetches (a NATS outage) are logged and tried again
// every second meanwhile.
func (f *Forwarder) Run(ctx context.Context) error {
	defer f.send.close()
	var wg sync.WaitGroup
	wg.Go(func() { f.pull(ctx, f.resCons, f.handleResult) })
	wg.Go(func() { f.pull(ctx, f.redCons, f.handleRedrive) })
	wg.Wait()
	return nil
}

// pull fetches from cons as slots free up and hands each message to
// handle on a goroutine of its own, at most Concurrency at once. The
// handlers run on a context that ctx's end does not cancel: a POST in
// flight finishes, and its outcome is recorded.
func (f *Forwarder) pull(ctx context.Context, cons jetstream.Consumer, handle func(context.Context, jetstream.Msg)) {
	slots := make(chan struct{}, f.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	hctx := context.WithoutCancel(ctx)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	fill:
		for n < f.cfg.Concurrency {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break fill
			}
		}
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			for range n {
				<-slots
			}
			if ctx.Err() != nil {
				return
			}
			f.log.Warn("fetch failed; retrying", "consumer", cons.CachedInfo().Stream, "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		got := 0
		for m := range batch.Messages() {
			got++
			wg.Go(func() {
				defer func() { <-slots }()
				handle(hctx, m)
			})
		}
		cancel()
		for range n - got {
			<-slots
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
			f.log.Debug("fetch ended", "consumer", cons.CachedInfo().Stream, "err", err)
		}
	}
}

// delay is the back-off before attempt n+1 (n ≥ 1), capped at limit:
// cenkalti/backoff's jittered exponential schedule from RetryBase.
func (f *Forwarder) delay(n int, limit time.Duration) time.Duration {
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(f.cfg.RetryBase), backoff.WithMaxInterval(limit),
		backoff.WithMaxElapsedTime(0))
	d := b.NextBackOff()
	for i := 1; i < n && d < limit; i++ {
		d = b.NextBackOff()
	}
	return min(d, limit)
}

// event is what routing and the ledger need of a result.
type event struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	Batch    string `json:"batch"`
	Run      int    `json:"run"`
}

// parseEvent reads a result's routing fields; the subject
// (results.<provider>.<id>) is authoritative for provider and id.
func parseEvent(subject string, data []byte) event {
	var e event
	_ = json.Unmarshal(data, &e) // an unreadable body still routes by its subject
	if p := strings.Split(subject, "."); len(p) == 3 {
		e.Provider, e.ID = p[1], p[2]
	}
	return e
}

// webhookID is the result's webhook-id: its Nats-Msg-Id in RESULTS
// (result:<job id>, result:<job id>:<run> for later runs), the same on
// every attempt and re-drive, so receivers de-duplicate by it.
func (e event) webhookID() string { return wire.ResultMsgID(e.ID, e.Run) }

func (f *Forwarder) count(outcome string, n int) {
	if n > 0 {
		f.outcomes.WithLabelValues(outcome).Add(float64(n))
	}
}

// nak asks for the message again after d; a failed nak only means the
// message comes back after AckWait.
func (f *Forwarder) nak(m jetstream.Msg, d time.Duration) {
	if err := m.NakWithDelay(d); err != nil {
		f.log.Warn("nak failed; the message comes back after its ack wait", "subject", m.Subject(), "err", err)
	}
}

func (f *Forwarder) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		f.log.Warn("ack failed; the message comes back and is recognised as settled", "subject", m.Subject(), "err", err)
	}
}

// errorText is the dead letter's last error.
func errorText(a attempt) string {
	if a.Err == nil {
		return ""
	}
	return a.Err.Error()
}

func seqStr(n uint64) string { return strconv.FormatUint(n, 10) }
