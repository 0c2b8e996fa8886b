package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Every file derived from the list of providers is what the generator
// writes from the Specs: run go generate ./... after changing a Spec, the
// list, a provider's doc.md or input documentation, or a configuration
// variable.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := generate(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(root, f.path))
		if err != nil {
			t.Errorf("%s: %v (run go generate ./...)", f.path, err)
			continue
		}
		if !bytes.Equal(got, f.data) {
			t.Errorf("%s is not current: run go generate ./...", f.path)
		}
	}
}

// A region whose markers are gone is an error, not a silent skip.
func TestFillNeedsItsMarkers(t *testing.T) {
	old := []byte("a\n# BEGIN generated: x (note)\nold\n# END generated: x\nb\n")
	got, err := fill(old, "#", map[string]string{"x": "new\n"})
	if err != nil || string(got) != "a\n# BEGIN generated: x (note)\nnew\n# END generated: x\nb\n" {
		t.Fatalf("fill = %q, %v", got, err)
	}
	if _, err := fill([]byte("a\n"), "#", map[string]string{"x": ""}); err == nil {
		t.Error("a missing region was not reported")
	}
}
