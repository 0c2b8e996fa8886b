package leaktest

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { VerifyTestMain(m) }

// Every test package of the module checks for leaked goroutines: a new
// package's tests are no exception.
func TestEveryTestPackageChecksLeaks(t *testing.T) {
	root := filepath.Join("..", "..")
	checked := map[string]bool{}
	tested := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || fileExists(filepath.Join(path, "go.mod"))) {
				return filepath.SkipDir // another module (deploy/validate), or not Go
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		dir := filepath.Dir(path)
		tested[dir] = true
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if src := string(b); strings.Contains(src, "VerifyTestMain(") || strings.Contains(src, "leaktest.Find(") {
			checked[dir] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tested) < 20 {
		t.Fatalf("found %d test packages under %s: not the module root?", len(tested), root)
	}
	for dir := range tested {
		if !checked[dir] {
			t.Errorf("%s: its tests do not check for leaked goroutines (add a TestMain calling leaktest.VerifyTestMain)", dir)
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
