package main

import (
	"context"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), []string{"--version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "providersim ") {
		t.Errorf("--version printed %q", out.String())
	}
}

// TestBadOutputBroken checks that an unknown -output-broken value is
// refused before the server starts.
func TestBadOutputBroken(t *testing.T) {
	var out strings.Builder
	err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-output-broken", "garbled"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), `output_broken "garbled"`) {
		t.Errorf("run: %v", err)
	}
}
