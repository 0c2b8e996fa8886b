package reelq_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The client package traces with the OpenTelemetry API and propagators
// only: a producer never links the SDK, an exporter or gRPC (the worker
// does, through internal/tracing).
func TestClientLinksOnlyTheOpenTelemetryAPI(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	api := false
	for _, p := range strings.Fields(string(out)) {
		switch {
		case p == "go.opentelemetry.io/otel/trace":
			api = true
		case strings.HasPrefix(p, "go.opentelemetry.io/otel/sdk"), strings.HasPrefix(p, "go.opentelemetry.io/otel/exporters"),
			strings.HasPrefix(p, "google.golang.org/grpc"), strings.HasPrefix(p, "google.golang.org/protobuf"):
			t.Errorf("the client package links %s", p)
		}
	}
	if !api {
		t.Error("the client package does not link go.opentelemetry.io/otel/trace: is this test still needed?")
	}
}
