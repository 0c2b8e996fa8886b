package reelq

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// ResultsOptions select the results a Results consumer delivers.
type ResultsOptions struct {
	// Name names the durable consumer (letters, digits, '-' and '_'); the
	// client's ConsumerPrefix is put in front. Restarting with the same
	// Name resumes after the last acknowledged result.
	Name string
	// Provider, if set, delivers only that provider's results (filtered on
	// the server).
	Provider string
	// Batch, if set, delivers only that batch's results (results of other
	// batches are acknowledged and skipped by the client).
	Batch string
	// AckWait is how long a delivered result may stay unacknowledged before
	// it is delivered again. Default 30s.
	AckWait time.Duration
	// FromNow starts a new consumer at the next result instead of the
	// oldest one kept.
	FromNow bool
}

// Delivery is one result delivered by Results: acknowledge it once it is
// handled, or it comes back after AckWait (and after a restart).
type Delivery struct {
	Result *Result
	msg    jetstream.Msg
	span   trace.Span // reelq.result.receive, ended by Ack or Nak
}

// Context returns ctx carrying the delivery's span, a child of the job's
// trace (the result event's traceparent): spans the handler starts from
// it join the trace of the job's enqueue and run.
func (d *Delivery) Context(ctx context.Context) context.Context {
	return trace.ContextWithSpan(ctx, d.span)
}

// Ack acknowledges the result and waits for the server to confirm.
func (d *Delivery) Ack(ctx context.Context) error {
	err := d.msg.DoubleAck(ctx)
	endSpan(d.span, err)
	return err
}

// Nak asks for the result to be delivered again after delay.
func (d *Delivery) Nak(delay time.Duration) error {
	defer d.span.End()
	if delay <= 0 {
		return d.msg.Nak()
	}
	return d.msg.NakWithDelay(delay)
}

// InProgress resets the AckWait timer of a result being handled slowly.
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// Results yields result events from a durable consumer, for services
// that must not miss a result across restarts: every result is delivered
// until it is acknowledged (at least once: a result handled but not yet
// acknowledged when the service stops comes again). It ends when ctx ends
// (yielding ctx's error) or the caller stops ranging.
func (c *Client) Results(ctx context.Context, opts ResultsOptions) iter.Seq2[*Delivery, error] {
	return func(yield func(*Delivery, error) bool) {
		if opts.Name == "" || !ValidID(opts.Name) {
			yield(nil, fmt.Errorf("reelq: Results needs a Name of letters, digits, '-' or '_', got %q", opts.Name))
			return
		}
		if opts.AckWait <= 0 {
			opts.AckWait = 30 * time.Second
		}
		cfg := jetstream.ConsumerConfig{
			Durable: c.opts.ConsumerPrefix + "_" + opts.Name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: opts.AckWait,
			MaxAckPending: 1000, Description: "reelq results for " + c.opts.By,
		}
		if opts.FromNow {
			cfg.DeliverPolicy = jetstream.DeliverNewPolicy
		}
		if opts.Provider != "" {
			cfg.FilterSubject = ResultSubject(opts.Provider, "*")
		}
		cctx, cancel := c.reqCtx(ctx)
		cons, err := c.js.CreateOrUpdateConsumer(cctx, StreamResults, cfg)
		cancel()
		if err != nil {
			yield(nil, fmt.Errorf("reelq: results consumer %s: %w", cfg.Durable, err))
			return
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(100))
		if err != nil {
			yield(nil, fmt.Errorf("reelq: results consumer %s: %w", cfg.Durable, err))
			return
		}
		defer stopIter(it)
		for {
			msg, err := nextMsg(ctx, it)
			if err != nil {
				yield(nil, err)
				return
			}
			var r Result
			if json.Unmarshal(msg.Data(), &r) != nil {
				_ = msg.Term() // not a reelq result
				continue
			}
			if r.Run == 0 {
				r.Run = 1
			}
			if opts.Batch != "" && r.Batch != opts.Batch {
				_ = msg.Ack()
				continue
			}
			_, span := c.tracer().Start(ContextWithTraceparent(ctx, msg.Headers().Get(HeaderTraceparent)), "reelq.result.receive",
				trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(append(jobAttrs(msg.Subject(), r.ID, r.Provider, r.Batch),
					attribute.String("reelq.status", r.Status), attribute.Int("reelq.run", r.Run))...))
			if !yield(&Delivery{Result: &r, msg: msg, span: span}, nil) {
				return
			}
		}
	}
}

// DeleteResults deletes the durable consumer Results(Name) created.
func (c *Client) DeleteResults(ctx context.Context, name string) error {
	cctx, cancel := c.reqCtx(ctx)
	defer cancel()
	return c.js.DeleteConsumer(cctx, StreamResults, c.opts.ConsumerPrefix+"_"+name)
}

// ReadOptions select the result events ReadResults yields.
type ReadOptions struct {
	// After skips the results up to this RESULTS sequence (0: from the
	// oldest kept).
	After uint64
	// Provider, if set, yields only that provider's results.
	Provider string
	// Follow keeps yielding results as they are stored (as Follow does)
	// instead of ending after the last one stored when ReadResults was
	// called.
	Follow bool
}

// ReadResults yields the result events kept in RESULTS, oldest first (a
// job retried has one per run). It keeps no state on the server: it is for
// listing and for tools; a service that must not miss a result across
// restarts uses Results.
func (c *Client) ReadResults(ctx context.Context, o ReadOptions) iter.Seq2[*Result, error] {
	var providers []string
	filter := "results.>"
	if o.Provider != "" {
		providers = []string{o.Provider}
		filter = ResultSubject(o.Provider, "*")
	}
	if o.Follow {
		return c.follow(ctx, o.After+1, providers)
	}
	return func(yield func(*Result, error) bool) {
		last, err := c.ResultsSeq(ctx)
		if err != nil {
			yield(nil, fmt.Errorf("reelq: read results: %w", err))
			return
		}
		for seq := o.After + 1; seq <= last; {
			var page []*Result
			next := uint64(0)
			cctx, cancel := c.reqCtx(ctx)
			err := c.directBatch(cctx, StreamResults, map[string]any{"seq": seq, "next_by_subj": filter, "batch": 500}, func(m storedMsg) bool {
				if m.Seq > last {
					return false
				}
				next = m.Seq + 1
				var r Result
				if json.Unmarshal(m.Data, &r) == nil {
					if r.Run == 0 {
						r.Run = 1
					}
					page = append(page, &r)
				}
				return true
			})
			cancel()
			if err != nil {
				yield(nil, fmt.Errorf("reelq: read results: %w", err))
				return
			}
			for _, r := range page {
				if !yield(r, nil) {
					return
				}
			}
			if next <= seq {
				return // nothing more before last
			}
			seq = next
		}
	}
}
