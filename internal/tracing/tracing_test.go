package tracing_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/reelq/reelq/internal/leaktest"
	"github.com/reelq/reelq/internal/tracing"
)

// The exporter's goroutines stop with the provider.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

// Without OTEL_* variables, or with them saying none, tracing is off: no
// provider (the worker's tracer is then a no-op).
func TestOffByDefault(t *testing.T) {
	for _, kv := range []map[string]string{
		{},
		{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
		{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"},
	} {
		tp, stop, err := tracing.Setup(context.Background(), env(kv), "reelq-worker", "test")
		if err != nil || tp != nil {
			t.Errorf("%v: provider %v, error %v; want off", kv, tp, err)
		}
		_ = stop(context.Background())
	}
}

// An exporter or protocol reelq does not ship fails at start, naming the
// variable.
func TestUnsupportedExporterNamesTheVariable(t *testing.T) {
	for kv, want := range map[*map[string]string]string{
		{"OTEL_TRACES_EXPORTER": "zipkin"}:                                      "OTEL_TRACES_EXPORTER=zipkin",
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}: "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
	} {
		_, _, err := tracing.Setup(context.Background(), env(*kv), "reelq-worker", "test")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: error %v, want one naming %s", *kv, err, want)
		}
	}
}

// OTEL_EXPORTER_OTLP_ENDPOINT alone turns tracing on: a span reaches the
// endpoint's /v1/traces as OTLP/HTTP protobuf, with the service's name.
func TestSpansGoToTheOTLPEndpoint(t *testing.T) {
	got := make(chan []byte, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" {
			got <- b
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	tp, stop, err := tracing.Setup(context.Background(), os.Getenv, "reelq-worker", "test")
	if err != nil || tp == nil {
		t.Fatalf("provider %v, error %v; want on", tp, err)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "reelq.test")
	span.End()
	if err := stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !strings.Contains(string(b), "reelq.test") || !strings.Contains(string(b), "reelq-worker") {
			t.Errorf("the export does not carry the span and the service name: %q", b)
		}
	default:
		t.Fatal("no OTLP export reached /v1/traces")
	}
}
