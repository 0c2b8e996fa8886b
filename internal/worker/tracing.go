package worker

import (
	"context"
	"encoding/json"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/wire"
)

// tracerOf is provider's tracer for the worker's spans; nil gives a no-op
// tracer (tracing off: nothing is recorded or allocated per span).
func tracerOf(provider trace.TracerProvider) trace.Tracer {
	if provider == nil {
		provider = noop.NewTracerProvider()
	}
	return provider.Tracer(reelq.TracerName)
}

// startDelivery starts the span of one delivery of a job, from its
// receipt to its settlement, as a child of the producer's span when the
// message carries a traceparent. Every step of the delivery runs under it.
func (e *engine) startDelivery(j *job) {
	ctx := reelq.ContextWithTraceparent(context.Background(), j.traceparent)
	_, j.span = e.w.tracer.Start(ctx, "reelq.job", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.destination.name", j.msg.Subject()),
		attribute.Int64("messaging.nats.stream_sequence", int64(j.seq)),
		attribute.Int64("reelq.delivery", int64(j.deliveries)),
		attribute.String("reelq.job.id", j.id),
		attribute.String("reelq.provider", e.name),
		attribute.String("reelq.batch", j.env.Batch),
		attribute.Int("reelq.run", j.run),
	))
}

// endDelivery ends j's delivery span with how it was settled.
func endDelivery(j *job, out outcome) {
	if j.span == nil {
		return
	}
	j.span.SetAttributes(attribute.String("reelq.outcome", out.String()))
	if out.kind == outTerm {
		j.span.SetStatus(codes.Error, out.reason)
	}
	j.span.End()
}

// resultTraceparent is the traceparent j's result event carries: the
// context of j's delivery span (reelq.job), written by the W3C
// propagator, so that a result consumer's span is that span's child. A
// delivery whose span records nothing (tracing off, or not sampled)
// passes on the job's own traceparent, without a cost.
func resultTraceparent(j *job) string {
	if j.span == nil || !j.span.IsRecording() {
		return j.traceparent
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpan(context.Background(), j.span), c)
	return c.Get(wire.HeaderTraceparent)
}

// withJobSpan is ctx carrying j's delivery span.
func withJobSpan(ctx context.Context, j *job) context.Context {
	if j.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, j.span)
}

// callSpan starts the span of one provider call (submit, poll, cancel)
// under ctx's span; the HTTP transport adds the response's status code.
// end records the call's error.
func (e *engine) callSpan(ctx context.Context, call string, j *job) (context.Context, func(error)) {
	if _, off := e.w.tracer.(noop.Tracer); off {
		return ctx, endNothing // tracing off: no span options built per call
	}
	ctx, span := e.w.tracer.Start(ctx, "reelq.provider."+call, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("reelq.provider", e.name), attribute.String("reelq.call", call)))
	if span.IsRecording() && j != nil {
		span.SetAttributes(attribute.String("reelq.job.id", j.id))
		if m := inputModel(j.env.Input); m != "" {
			span.SetAttributes(attribute.String("reelq.model", m))
		}
		if a, ok := j.attempts(); ok {
			// Retryable failures of this run so far: 0 on the first try.
			span.SetAttributes(attribute.Int("reelq.retry", a))
		}
	}
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

func endNothing(error) {}

// inputModel is the model an input names ("model", or "video_model"),
// if any.
func inputModel(input json.RawMessage) string {
	var v struct {
		Model      string `json:"model"`
		VideoModel string `json:"video_model"`
	}
	if json.Unmarshal(input, &v) != nil {
		return ""
	}
	if v.Model != "" {
		return v.Model
	}
	return v.VideoModel
}

// stepSpan starts a span named name under ctx's span, for a part of a
// delivery (archiving, publishing the result).
func (e *engine) stepSpan(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	return e.w.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attribute.String("reelq.provider", e.name)))
}
