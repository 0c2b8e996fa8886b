package buildinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// releaseRepo is a throwaway git repository holding scripts/release.sh and
// the given changelog, committed on main.
func releaseRepo(t *testing.T, changelog string) string {
	t.Helper()
	dir := t.TempDir()
	script, err := os.ReadFile(filepath.Join("..", "..", "scripts", "release.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scripts", "release.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "CHANGELOG.md"), []byte(changelog), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "init", "-q", "-b", "main")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "first")
	return dir
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// release runs the script in dir with checks as RELEASE_CHECKS.
func release(t *testing.T, dir, version, checks string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", "scripts/release.sh", version)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RELEASE_CHECKS="+checks, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

const changelog = `# Changelog

## [Unreleased]

## [0.3.0] - 2026-05-01

### Added

- The thing.

## [0.2.0] - 2026-04-01

### Fixed

- The other thing.
`

// scripts/release.sh tags only a version the changelog describes, after
// the checks pass, with that section as the tag's message; it never pushes.
func TestReleaseTagsOnlyAChangelogVersionThatPassesTheChecks(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is required")
	}
	dir := releaseRepo(t, changelog)
	tags := func() string { return strings.TrimSpace(git(t, dir, "tag", "--list")) }

	for _, tc := range []struct{ version, checks, why string }{
		{"0.3.0", "true", "is not vMAJOR.MINOR.PATCH"},
		{"v0.4.0", "true", `has no "## [0.4.0] - YYYY-MM-DD" section`},
		{"v0.3.0", "exit 1", "the checks failed; nothing was tagged"},
		{"v0.3.0", "touch generated.txt", "the checks changed the working tree"},
	} {
		out, err := release(t, dir, tc.version, tc.checks)
		if err == nil || !strings.Contains(out, tc.why) {
			t.Errorf("release %s with checks %q: %v, want a refusal saying %q:\n%s", tc.version, tc.checks, err, tc.why, out)
		}
		if tags() != "" {
			t.Fatalf("a refused release left tags: %s", tags())
		}
		_ = os.Remove(filepath.Join(dir, "generated.txt"))
	}

	marker := filepath.Join(t.TempDir(), "checked")
	out, err := release(t, dir, "v0.3.0", "touch "+marker)
	if err != nil {
		t.Fatalf("release v0.3.0: %v\n%s", err, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("the checks did not run")
	}
	if !strings.Contains(out, "git push origin v0.3.0") {
		t.Errorf("the script does not say how to publish the tag:\n%s", out)
	}
	if tags() != "v0.3.0" {
		t.Fatalf("tags %q, want v0.3.0", tags())
	}
	msg := git(t, dir, "tag", "-l", "--format=%(contents)", "v0.3.0")
	if !strings.Contains(msg, "reelq v0.3.0") || !strings.Contains(msg, "- The thing.") || strings.Contains(msg, "The other thing") {
		t.Errorf("tag message is not the 0.3.0 section:\n%s", msg)
	}
	if got := git(t, dir, "describe", "--tags", "--always", "--dirty"); strings.TrimSpace(got) != "v0.3.0" {
		t.Errorf("git describe (make build's VERSION) = %q, want v0.3.0", got)
	}

	// Again: the tag exists. A dirty tree is refused too.
	if out, err := release(t, dir, "v0.3.0", "true"); err == nil || !strings.Contains(out, "tag v0.3.0 exists already") {
		t.Errorf("second release: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "CHANGELOG.md"), []byte(changelog+"\nedited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := release(t, dir, "v0.2.0", "true"); err == nil || !strings.Contains(out, "the working tree has changes") {
		t.Errorf("dirty tree: %v\n%s", err, out)
	}
}

// The repository's own changelog keeps the Keep a Changelog shape the
// script reads: an Unreleased section, and dated version sections.
func TestChangelogHasAnUnreleasedSection(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\n## [Unreleased]\n") {
		t.Error("CHANGELOG.md has no ## [Unreleased] section")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "## [") && l != "## [Unreleased]" && !strings.Contains(l, "] - 20") {
			t.Errorf("CHANGELOG.md heading %q is not \"## [X.Y.Z] - YYYY-MM-DD\"", l)
		}
	}
}
