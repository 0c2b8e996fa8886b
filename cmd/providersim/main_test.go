package main

import (
	"context"
	"strings"
	"testing"

	"github.com/reelq/reelq/internal/buildinfo"
)

func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		var out strings.Builder
		if err := run(context.Background(), []string{arg}, &out, &out); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		if out.String() != "providersim "+buildinfo.Version()+"\n" {
			t.Errorf("%s printed %q", arg, out.String())
		}
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
