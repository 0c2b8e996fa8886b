package validate

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerfile is deploy/Dockerfile split into instructions (continuation
// lines joined, comments dropped), by stage.
type dockerStage struct {
	from  string
	instr []string
}

func parseDockerfile(t *testing.T) (args map[string]string, stages []*dockerStage) {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	args = map[string]string{}
	var cur string
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		cur += l
		if strings.TrimSpace(cur) != "" {
			lines = append(lines, strings.Join(strings.Fields(cur), " "))
		}
		cur = ""
	}
	for _, l := range lines {
		word, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(word) {
		case "ARG":
			if len(stages) == 0 {
				k, v, _ := strings.Cut(rest, "=")
				args[k] = v
			}
		case "FROM":
			stages = append(stages, &dockerStage{from: rest})
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].instr = append(stages[len(stages)-1].instr, l)
		}
	}
	return args, stages
}

// deploy/Dockerfile is a multi-stage build on the Go version go.mod asks
// for, producing static (CGO_ENABLED=0) worker, enqueue and providersim,
// into a distroless/static (or scratch) image that runs as a non-root user.
func TestDockerfile(t *testing.T) {
	args, stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVer == nil || args["GO_VERSION"] != string(goVer[1]) {
		t.Errorf("ARG GO_VERSION=%s, go.mod says go %s", args["GO_VERSION"], goVer[1])
	}
	build := stages[0]
	if !strings.HasPrefix(build.from, "golang:${GO_VERSION}") {
		t.Errorf("build stage FROM %s, want golang:${GO_VERSION}", build.from)
	}
	all := strings.Join(build.instr, "\n")
	for _, c := range commands(t) {
		if !strings.Contains(all, "./cmd/"+c) {
			t.Errorf("build stage does not build ./cmd/%s", c)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath",
		// .git is not in the context: the version comes in as build args.
		"ARG VERSION", "ARG REVISION", "internal/buildinfo.version=${VERSION}", "internal/buildinfo.revision=${REVISION}"} {
		if !strings.Contains(all, want) {
			t.Errorf("build stage does not mention %s", want)
		}
	}
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
		t.Errorf("runtime image %s, want distroless/static or scratch", final.from)
	}
	user := ""
	var entry string
	copied := map[string]bool{}
	for _, in := range final.instr {
		word, rest, _ := strings.Cut(in, " ")
		switch word {
		case "USER":
			user = rest
		case "ENTRYPOINT":
			entry = rest
		case "COPY":
			if f := strings.Fields(rest); len(f) > 1 && f[len(f)-1] == "/usr/local/bin/" {
				for _, src := range f[:len(f)-1] {
					copied[filepath.Base(src)] = true
				}
			}
		}
	}
	for _, c := range commands(t) {
		if !copied[c] {
			t.Errorf("runtime image lacks /usr/local/bin/%s", c)
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("runtime USER %q, want a non-root user", user)
	}
	if !strings.Contains(entry, "/usr/local/bin/worker") {
		t.Errorf("ENTRYPOINT %s, want the worker", entry)
	}
	ignore, err := os.ReadFile("../Dockerfile.dockerignore")
	if err != nil || !strings.Contains(string(ignore), ".git") {
		t.Errorf("Dockerfile.dockerignore missing or not excluding .git: %v", err)
	}
}

// commands are the binaries the image ships: every directory of cmd/.
func commands(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("../../cmd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatal("no commands under cmd/")
	}
	return out
}

// The binaries build as the Dockerfile builds them, and are static: no ELF
// interpreter and no shared libraries, so they run on distroless/static or
// scratch. It compiles the commands with CGO_ENABLED=0, which shares
// little with a normal build cache (about a minute on 2 cores when cold), so
// it runs only with REELQ_STATIC_CHECK=1 (deploy/validate.sh --static).
func TestStaticBinaries(t *testing.T) {
	if os.Getenv("REELQ_STATIC_CHECK") != "1" {
		t.Skip("set REELQ_STATIC_CHECK=1 (deploy/validate.sh --static)")
	}
	out := t.TempDir()
	args := []string{"build", "-trimpath", "-o", out + "/"}
	for _, c := range commands(t) {
		args = append(args, "./cmd/"+c)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	for _, name := range commands(t) {
		f, err := elf.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has an ELF interpreter: not static", name)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", name, libs)
		}
		f.Close()
	}
}
