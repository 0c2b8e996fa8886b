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

	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// ResultsOptions select the results Results yields.
type ResultsOptions struct {
	// Name names the durable consumer (letters, digits, '-' and '_'); the
	// client's ConsumerPrefix is put in front. Restarting with the same
	// Name resumes after the last acknowledged result. Without a Name,
	// Results reads RESULTS without state on the server (by direct gets,
	// for listings and tools): from After on, ending at the last result
	// stored when it started unless Follow is set; Ack, Nak and InProgress
	// then do nothing.
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
	// FromNow starts a new consumer (or a read without Name) at the next
	// result instead of the oldest one kept.
	FromNow bool
	// After skips, without a Name, the results up to this RESULTS sequence
	// (a Delivery's Seq, or ResultsSeq).
	After uint64
	// Follow keeps yielding results as they are stored, without a Name.
	Follow bool
}

// Delivery is one result delivered by Results: acknowledge it once it is
// handled, or it comes back after AckWait (and after a restart).
type Delivery struct {
	Result *Result
	// Seq is the result's RESULTS sequence (set by reads without Name).
	Seq  uint64
	msg  jetstream.Msg
	span trace.Span // reelq.result.receive, ended by Ack or Nak (durable reads)
}

// Context returns ctx carrying the delivery's span, a child of the job's
// trace (the result event's traceparent): spans the handler starts from
// it join the trace of the job's enqueue and run.
func (d *Delivery) Context(ctx context.Context) context.Context {
	if d.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, d.span)
}

// Ack acknowledges the result and waits for the server to confirm.
func (d *Delivery) Ack(ctx context.Context) error {
	if d.msg == nil {
		return nil
	}
	err := d.msg.DoubleAck(ctx)
	endSpan(d.span, err)
	return err
}

// Nak asks for the result to be delivered again after delay.
func (d *Delivery) Nak(delay time.Duration) error {
	if d.msg == nil {
		return nil
	}
	defer d.span.End()
	if delay <= 0 {
		return d.msg.Nak()
	}
	return d.msg.NakWithDelay(delay)
}

// InProgress resets the AckWait timer of a result being handled slowly.
func (d *Delivery) InProgress() error {
	if d.msg == nil {
		return nil
	}
	return d.msg.InProgress()
}

// Results is the way to read results. With a Name it yields from a
// durable consumer, for services that must not miss a result across
// restarts: every result is delivered until it is acknowledged (at least
// once: a result handled but not yet acknowledged when the service stops
// comes again). Without a Name it reads RESULTS without state on the
// server (see ResultsOptions). It ends when ctx ends (yielding ctx's
// error) or the caller stops ranging.
func (c *Client) Results(ctx context.Context, opts ResultsOptions) iter.Seq2[*Delivery, error] {
	if opts.Name == "" {
		return c.readResults(ctx, opts)
	}
	return func(yield func(*Delivery, error) bool) {
		if !ValidID(opts.Name) {
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
			cfg.FilterSubject = wire.ResultSubject(opts.Provider, "*")
		}
		cctx, cancel := c.s.ReqCtx(ctx)
		cons, err := c.js.CreateOrUpdateConsumer(cctx, wire.StreamResults, cfg)
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
		defer store.StopIter(it)
		for {
			msg, err := store.NextMsg(ctx, it)
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
			_, span := c.tracer().Start(ContextWithTraceparent(ctx, msg.Headers().Get(wire.HeaderTraceparent)), "reelq.result.receive",
				trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(append(jobAttrs(msg.Subject(), r.ID, r.Provider, r.Batch),
					attribute.String("reelq.status", r.Status), attribute.Int("reelq.run", r.Run))...))
			if !yield(&Delivery{Result: &r, msg: msg, span: span}, nil) {
				return
			}
		}
	}
}

// readResults is Results without a Name.
func (c *Client) readResults(ctx context.Context, o ResultsOptions) iter.Seq2[*Delivery, error] {
	all := c.readStored(ctx, o)
	switch {
	case o.Follow && o.FromNow:
		all = c.follow(ctx, 0, o.Provider)
	case o.Follow:
		all = c.follow(ctx, o.After+1, o.Provider)
	}
	if o.Batch == "" {
		return all
	}
	return func(yield func(*Delivery, error) bool) {
		for d, err := range all {
			if err == nil && d.Result.Batch != o.Batch {
				continue
			}
			if !yield(d, err) {
				return
			}
		}
	}
}

// readStored yields the results stored when it starts, from o.After on.
func (c *Client) readStored(ctx context.Context, o ResultsOptions) iter.Seq2[*Delivery, error] {
	filter := "results.>"
	if o.Provider != "" {
		filter = wire.ResultSubject(o.Provider, "*")
	}
	return func(yield func(*Delivery, error) bool) {
		if o.FromNow {
			return
		}
		last, err := c.ResultsSeq(ctx)
		if err != nil {
			yield(nil, fmt.Errorf("reelq: read results: %w", err))
			return
		}
		for seq := o.After + 1; seq <= last; {
			var page []*Delivery
			next := uint64(0)
			cctx, cancel := c.s.ReqCtx(ctx)
			err := c.s.DirectBatch(cctx, wire.StreamResults, map[string]any{"seq": seq, "next_by_subj": filter, "batch": 500}, func(m store.Msg) bool {
				if m.Seq > last {
					return false
				}
				next = m.Seq + 1
				if r, ok := decodeResult(m.Data); ok {
					page = append(page, &Delivery{Result: r, Seq: m.Seq})
				}
				return true
			})
			cancel()
			if err != nil {
				yield(nil, fmt.Errorf("reelq: read results: %w", err))
				return
			}
			for _, d := range page {
				if !yield(d, nil) {
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
