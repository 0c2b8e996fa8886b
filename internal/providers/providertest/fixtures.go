package providertest

import (
	"os"
	"path/filepath"
	"testing"
)

// Fixture returns the contents of testdata/name in the calling package.
func Fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// AddFixtures adds every testdata file matching glob (e.g. "status_*.json")
// to f's seed corpus, so fuzzing starts from real provider responses.
func AddFixtures(f *testing.F, glob string) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", glob))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no fixtures match testdata/%s (%v)", glob, err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}
