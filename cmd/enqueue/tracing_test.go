package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
)

// With OTEL_EXPORTER_OTLP_ENDPOINT set, enqueue exports its reelq.enqueue
// spans over OTLP/HTTP under service.name reelq-enqueue, flushed before it
// exits; an exporter it does not ship is a usage error naming the
// variable.
func TestEnqueueExportsSpansOverOTLP(t *testing.T) {
	got := make(chan []byte, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			got <- b
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	// The OTLP exporter reads its variables from the process environment.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) }) // Setup installs it globally
	c := newCLI(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	enqueue := func(env ...string) (int, string) {
		var out, errb bytes.Buffer
		err := run(ctx, []string{"--provider", "samsar", "--id", "traced-1", "--input", `{"prompt":"traced","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`},
			append([]string{"NATS_URL=" + c.url}, env...), strings.NewReader(""), &out, &errb)
		return exitCode(err), out.String() + errb.String() + errorText(err)
	}
	if code, out := enqueue("OTEL_EXPORTER_OTLP_ENDPOINT=" + srv.URL); code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	var all []byte
	for len(got) > 0 {
		all = append(all, <-got...)
	}
	if len(all) == 0 {
		t.Fatal("no OTLP export reached /v1/traces before enqueue returned")
	}
	for _, want := range []string{"reelq.enqueue", "reelq-enqueue", "traced-1"} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("the export does not carry %q: %q", want, all)
		}
	}

	code, out := enqueue("OTEL_TRACES_EXPORTER=zipkin")
	if code != exitUsage || !strings.Contains(out, "OTEL_TRACES_EXPORTER=zipkin") {
		t.Errorf("OTEL_TRACES_EXPORTER=zipkin: exit %d, want %d naming the variable: %s", code, exitUsage, out)
	}
}
