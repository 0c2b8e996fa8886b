package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
	"github.com/reelq/reelq/internal/worker"
)

// One job, traced end to end with the SDK's in-memory exporter: the
// producer's span is the parent of the job's reelq.enqueue span, whose
// context the job carries as its traceparent; the worker's delivery span
// (reelq.job) is its child, and the provider calls (submit, poll, with
// provider, model, retry and HTTP status), the archive and the result
// publish are the delivery's children; the result event carries the
// delivery span's context (header and body), so the result consumer's
// span (reelq.result.receive) is the delivery's child: producer → worker
// → result consumer, one chain of parents.
func TestOneJobTracedFromEnqueueToResultConsumer(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond)}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := reelq.NewClient(ctx, env.NC, reelq.Options{ProviderEnv: map[string]string{}, By: "test", TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}, Archive: true,
		Config: worker.Config{TracerProvider: tp}})

	job := reelqtest.SamsarJob("traced")
	job.Batch = "traces"
	pctx, produce := tp.Tracer("test").Start(ctx, "test.produce")
	if _, err := client.Enqueue(pctx, job); err != nil {
		t.Fatal(err)
	}
	produce.End()
	var body string // the result's Traceparent
	for d, err := range client.Results(ctx, reelq.ResultsOptions{Name: "traced", Provider: "samsar"}) {
		if err != nil {
			t.Fatal(err)
		}
		body = d.Result.Traceparent
		_, handle := tp.Tracer("test").Start(d.Context(ctx), "test.handle")
		handle.End()
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		break
	}
	// The delivery's span ends when the worker acks the job, which may
	// come after the consumer saw the result.
	waitfor.Until(t, time.Minute, "the delivery's span to end", func() error {
		if len(spansNamed(exp, "reelq.job")) == 0 {
			return fmt.Errorf("no reelq.job span yet")
		}
		return nil
	})

	root := produce.SpanContext()
	one := func(name string) tracetest.SpanStub {
		t.Helper()
		s := spansNamed(exp, name)
		if len(s) != 1 {
			t.Fatalf("%d %s spans, want 1 (spans: %v)", len(s), name, names(exp))
		}
		return s[0]
	}
	enq, run, receive, publish := one("reelq.enqueue"), one("reelq.job"), one("reelq.result.receive"), one("reelq.result.publish")
	submit, archive, handle := one("reelq.provider.submit"), one("reelq.archive"), one("test.handle")
	polls := spansNamed(exp, "reelq.provider.poll")
	if len(polls) == 0 {
		t.Fatalf("no reelq.provider.poll span (spans: %v)", names(exp))
	}
	for _, s := range append([]tracetest.SpanStub{enq, run, receive, publish, submit, archive, handle}, polls...) {
		if s.SpanContext.TraceID() != root.TraceID() {
			t.Errorf("%s is in trace %s, want the producer's %s", s.Name, s.SpanContext.TraceID(), root.TraceID())
		}
	}
	parent := func(child, of tracetest.SpanStub) {
		t.Helper()
		if child.Parent.SpanID() != of.SpanContext.SpanID() {
			t.Errorf("%s's parent is %s, want %s", child.Name, child.Parent.SpanID(), of.Name)
		}
	}
	if enq.Parent.SpanID() != root.SpanID() {
		t.Errorf("reelq.enqueue's parent is %s, want the producer's span", enq.Parent.SpanID())
	}
	parent(run, enq)
	parent(submit, run)
	parent(archive, run)
	parent(publish, run)
	parent(receive, run)
	if got := trace.SpanContextFromContext(reelq.ContextWithTraceparent(ctx, body)).SpanID(); got != run.SpanContext.SpanID() {
		t.Errorf("the result's traceparent %q names span %s, want reelq.job's %s", body, got, run.SpanContext.SpanID())
	}
	parent(handle, receive)
	for _, p := range polls {
		parent(p, run)
	}
	kinds := map[string]trace.SpanKind{"reelq.enqueue": trace.SpanKindProducer, "reelq.job": trace.SpanKindConsumer,
		"reelq.provider.submit": trace.SpanKindClient, "reelq.result.publish": trace.SpanKindProducer, "reelq.result.receive": trace.SpanKindConsumer}
	for _, s := range []tracetest.SpanStub{enq, run, submit, publish, receive} {
		if s.SpanKind != kinds[s.Name] {
			t.Errorf("%s is of kind %s, want %s", s.Name, s.SpanKind, kinds[s.Name])
		}
	}
	want := func(s tracetest.SpanStub, kv ...attribute.KeyValue) {
		t.Helper()
		got := map[attribute.Key]attribute.Value{}
		for _, a := range s.Attributes {
			got[a.Key] = a.Value
		}
		for _, w := range kv {
			if v, ok := got[w.Key]; !ok || v != w.Value {
				t.Errorf("%s: %s = %v, want %v", s.Name, w.Key, v.String(), w.Value.String())
			}
		}
	}
	want(enq, attribute.String("reelq.job.id", job.ID), attribute.String("reelq.provider", "samsar"), attribute.String("reelq.batch", "traces"),
		attribute.String("messaging.destination.name", wire.JobSubject("samsar", "", job.ID)), attribute.String("reelq.enqueue.status", "published"))
	want(run, attribute.String("reelq.job.id", job.ID), attribute.String("reelq.provider", "samsar"), attribute.String("reelq.batch", "traces"),
		attribute.Int64("reelq.delivery", 1), attribute.Int("reelq.run", 1), attribute.String("reelq.outcome", "ack"))
	want(submit, attribute.String("reelq.provider", "samsar"), attribute.String("reelq.model", "LUMA"), attribute.Int("reelq.retry", 0),
		attribute.Int("http.response.status_code", 200))
	want(polls[len(polls)-1], attribute.String("reelq.provider", "samsar"), attribute.Int("http.response.status_code", 200))
	want(publish, attribute.String("reelq.status", reelq.StatusSucceeded), attribute.Bool("reelq.already_published", false))
	want(receive, attribute.String("reelq.job.id", job.ID), attribute.String("reelq.status", reelq.StatusSucceeded))
}

func spansNamed(exp *tracetest.InMemoryExporter, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func names(exp *tracetest.InMemoryExporter) []string {
	var out []string
	for _, s := range exp.GetSpans() {
		out = append(out, s.Name)
	}
	return out
}
