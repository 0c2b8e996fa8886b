package buildinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestInfoFromBuild(t *testing.T) {
	t.Parallel()
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}}
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want Info
		str  string
	}{
		{"vcs", vcs("0123456789abcdef0123", "false"), Info{"(devel)", "0123456789ab", "go1.26.0"}, "(devel) 0123456789ab go1.26.0"},
		{"dirty", vcs("0123456789abcdef0123", "true"), Info{"(devel)", "0123456789ab+dirty", "go1.26.0"}, "(devel) 0123456789ab+dirty go1.26.0"},
		{"tag", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.3.0"}}, Info{"v0.3.0", "", "go1.26.0"}, "v0.3.0 go1.26.0"},
		{"pseudo", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.0.0-20260101000000-0123456789ab"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}}},
			Info{"v0.0.0-20260101000000-0123456789ab", "0123456789ab", "go1.26.0"}, "v0.0.0-20260101000000-0123456789ab go1.26.0"},
	} {
		got := from(tc.bi, true)
		if got != tc.want || got.String() != tc.str {
			t.Errorf("%s: %+v %q, want %+v %q", tc.name, got, got.String(), tc.want, tc.str)
		}
	}
	if got := from(nil, false); got.Version != "(devel)" {
		t.Errorf("no build info: %+v", got)
	}
}

// `make build` stamps VERSION and REVISION into the binaries (the
// Dockerfile passes the same -X flags from its build args): a binary built
// from a tree without .git, as the image's is, says the version it was
// given instead of "(devel)", to --version and to `version`.
func TestMakeBuildStampsTheVersion(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is required (.ci/run installs it)")
	}
	bin := t.TempDir()
	const rev = "0123456789abcdef0123456789abcdef01234567"
	cmd := exec.Command("make", "-s", "build", "BIN="+bin, "CMDS=./cmd/providersim", "VERSION=v9.8.7", "REVISION="+rev)
	cmd.Dir = filepath.Join("..", "..")
	// -buildvcs=false: no VCS information, as in the image's build.
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(filepath.Join(bin, "providersim"), arg).CombinedOutput()
		if err != nil {
			t.Fatalf("providersim %s: %v\n%s", arg, err, out)
		}
		if got := string(out); !strings.HasPrefix(got, "providersim v9.8.7 0123456789ab go1.") {
			t.Errorf("providersim %s = %q, want providersim v9.8.7 0123456789ab go1...", arg, got)
		}
	}
}

// make test says how long it takes and that make test-short exists.
func TestMakeTestSaysItsDurationAndTheShortTarget(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("make", "-n", "-C", filepath.Join("..", ".."), "test").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n test: %v\n%s", err, out)
	}
	for _, want := range []string{"make test-short", "on 2 cores", "nproc"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make test does not print %q:\n%s", want, out)
		}
	}
}
