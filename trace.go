package reelq

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/reelq/reelq/internal/wire"
)

// TracerName is the instrumentation scope of reelq's spans.
const TracerName = "github.com/reelq/reelq"

// w3c reads and writes the traceparent header, which the message contract
// names, whatever propagator the program installed.
var w3c = propagation.TraceContext{}

// tracer is Options.TracerProvider's tracer, or the global provider's (a
// no-op until the program installs one).
func (c *Client) tracer() trace.Tracer {
	if c.opts.TracerProvider != nil {
		return c.opts.TracerProvider.Tracer(TracerName)
	}
	return otel.Tracer(TracerName)
}

// injectTrace sets h's traceparent from ctx's span, when it has one.
func injectTrace(ctx context.Context, h map[string][]string) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		w3c.Inject(ctx, propagation.HeaderCarrier(h))
		// HeaderCarrier canonicalises the key; the contract's is lower case.
		if v, ok := h["Traceparent"]; ok {
			delete(h, "Traceparent")
			h[wire.HeaderTraceparent] = v
		}
		delete(h, "Tracestate")
	}
}

// ContextWithTraceparent returns ctx with the W3C trace context tp (a
// traceparent value, as in Result.Traceparent) as its remote parent, so
// spans started from it join the job's trace. An empty or malformed tp
// returns ctx.
func ContextWithTraceparent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return w3c.Extract(ctx, propagation.MapCarrier{wire.HeaderTraceparent: tp})
}

// jobAttrs are the attributes of a job's spans.
func jobAttrs(subject, id, provider, batch string) []attribute.KeyValue {
	a := []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.destination.name", subject),
		attribute.String("reelq.job.id", id),
		attribute.String("reelq.provider", provider),
	}
	if batch != "" {
		a = append(a, attribute.String("reelq.batch", batch))
	}
	return a
}

// endSpan ends span, with err as its status.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
