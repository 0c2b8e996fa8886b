package all_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A sixth provider is one folder and one line in the list: the test copies
// the module, adds the throwaway provider zz (testdata/sixth/zz: a tiny
// adapter, its input, its simulated API, its doc and its tests) as
// internal/providers/zz, adds zz.Spec to Specs, runs the generator, and
// checks that no file but the folder, all.go and the generator's output
// changed. Then, in the copy, zz passes the conformance suite and its jobs
// run through the real worker against its simulator: enqueued through the
// public client (reelq.ZzInput, generated), rate-limited, paid once, one
// result each (TestThroughTheWorker), and the generated files are current.
func TestAThrowawayProviderNeedsOneFolderAndOneLine(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	copyTree(t, root, dst)
	copyTree(t, filepath.Join(root, "internal/providers/all/testdata/sixth/zz"), filepath.Join(dst, "internal/providers/zz"))
	list := filepath.Join(dst, "internal/providers/all/all.go")
	src, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	// The import, and the line of the list.
	edited := strings.Replace(string(src), "import (\n", "import (\n\t\"github.com/reelq/reelq/internal/providers/zz\"\n", 1)
	edited = regexp.MustCompile(`(var Specs = \[\]providers\.Spec\{[^}]*)\}`).ReplaceAllString(edited, "${1}, zz.Spec}")
	if strings.Count(edited, "zz") != 2 {
		t.Fatal("all.go's list is not where the test expects it")
	}
	if err := os.WriteFile(list, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}

	out := goCmd(t, dst, "generate", "./internal/providers/all")
	wrote := map[string]bool{}
	for line := range strings.Lines(out) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "gen: wrote "); ok {
			wrote[p] = true
		}
	}
	if !wrote["providers_gen.go"] || !wrote["docs/providers.md"] || !wrote["deploy/nats/auth.conf"] || !wrote["deploy/compose-secrets/zz_api_key"] {
		t.Fatalf("the generator did not write the public list, the docs and the deploy files:\n%s", out)
	}
	for _, p := range changed(t, root, dst) {
		if !wrote[p] && p != "internal/providers/all/all.go" && !strings.HasPrefix(p, "internal/providers/zz/") {
			t.Errorf("%s changed, but neither the generator nor the list wrote it", p)
		}
	}
	goCmd(t, dst, "test", "-count=1", "./internal/providers/zz/...", "./internal/providers/all/gen/")
}

// copyTree copies the files under src to dst, leaving out .git, builds
// and data.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			if rel != "." && (d.Name() == ".git" || d.Name() == "bin" || d.Name() == "data" || rel == "internal/providers/all/testdata") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		info, err := d.Info()
		if err != nil || !info.Mode().IsRegular() || info.Size() > 8<<20 {
			return err // a binary built in place, a socket
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// changed lists the files of dst that are new or differ from root's.
func changed(t *testing.T, root, dst string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		a, _ := os.ReadFile(filepath.Join(root, rel))
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// goCmd runs the go command in dir and returns its output.
func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
