// Command gen writes every file derived from the list of providers
// (internal/providers/all.Specs): the public package's typed inputs and
// provider list (providers_gen.go), docs/configuration.md, the provider
// sections and tables of docs/providers.md, the provider enums of the JSON
// Schemas in docs/schema, and the provider lines of the deploy files.
// Hand-written files keep their own text outside marked regions
// ("BEGIN generated: NAME" ... "END generated: NAME" in a comment), and
// gen rewrites only what is inside them.
//
// Run it with go generate ./... (the directive is in package all); a test
// (TestGeneratedFilesAreCurrent) fails when a file is not what gen writes.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/reelq/reelq/internal/providers/all"
)

func main() {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	files, err := generate(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	for _, f := range files {
		old, _ := os.ReadFile(filepath.Join(root, f.path))
		if bytes.Equal(old, f.data) {
			continue
		}
		if err := os.WriteFile(filepath.Join(root, f.path), f.data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		fmt.Println("gen: wrote", f.path)
	}
}

// file is one generated file's path (from the module root) and content.
type file struct {
	path string
	data []byte
}

// generate returns every generated file, reading the hand-written parts
// of those with marked regions from root.
func generate(root string) ([]file, error) {
	var out []file
	add := func(path string, data []byte, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, file{path, data})
		return nil
	}
	rootGo, err := rootFile(root)
	if err := add("providers_gen.go", rootGo, err); err != nil {
		return nil, err
	}
	if err := add("docs/configuration.md", configurationDoc(), nil); err != nil {
		return nil, err
	}
	for _, r := range regionFiles() {
		old, err := os.ReadFile(filepath.Join(root, r.path))
		if err != nil {
			return nil, err
		}
		data, err := fill(old, r.comment, r.regions)
		if err := add(r.path, data, err); err != nil {
			return nil, err
		}
	}
	for _, s := range all.Specs {
		// The compose demo's key files (the simulator takes any key).
		if err := add("deploy/compose-secrets/"+s.Name()+"_api_key", []byte("sim-"+s.Name()+"-key\n"), nil); err != nil {
			return nil, err
		}
	}
	for _, p := range []string{"docs/schema/job.schema.json", "docs/schema/result.schema.json"} {
		old, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return nil, err
		}
		data, err := schemaEnums(old)
		if err := add(p, data, err); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// moduleRoot is the nearest directory up from the working directory
// holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
