// Package buildinfo reports the version of the running binary: the one
// stamped at link time (-ldflags -X, as the Makefile and deploy/Dockerfile
// do from `git describe`), else the one go build records from the VCS
// (a tag, or a pseudo-version), else "(devel)".
package buildinfo

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// Stamped at link time:
//
//	go build -ldflags "-X github.com/reelq/reelq/internal/buildinfo.version=v0.3.0 \
//	  -X github.com/reelq/reelq/internal/buildinfo.revision=$(git rev-parse HEAD)"
//
// A build without them (go install, go run, a source tree without .git)
// falls back on what go build recorded.
var version, revision string

// Info is what a binary knows about its build: the labels of the
// reelq_build_info metric, the worker's start log and the dashboard's
// footer.
type Info struct {
	// Version is a release tag (v0.3.0), a git describe
	// (v0.3.0-4-gabc1234-dirty), a pseudo-version, or "(devel)".
	Version string
	// Revision is the VCS commit (12 hex digits) with "+dirty" for a
	// build from a modified tree, or "" when unknown.
	Revision string
	// GoVersion is the Go release that built the binary.
	GoVersion string
}

// Get returns the running binary's build information.
func Get() Info {
	return from(debug.ReadBuildInfo())
}

func from(bi *debug.BuildInfo, ok bool) Info {
	in := Info{Version: version, Revision: short(revision)}
	if ok {
		in.GoVersion = bi.GoVersion
		if in.Version == "" && bi.Main.Version != "" {
			in.Version = bi.Main.Version
		}
		if in.Revision == "" {
			var rev, dirty string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					if s.Value == "true" {
						dirty = "+dirty"
					}
				}
			}
			if rev != "" {
				in.Revision = short(rev) + dirty
			}
		}
	}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	return in
}

func short(rev string) string {
	if len(rev) > 12 && !strings.ContainsAny(rev[:12], "+-") {
		return rev[:12]
	}
	return rev
}

// String renders the version, then the revision when the version does
// not already name it, then the Go release: "v0.3.0 1a2b3c4d5e6f
// go1.26.0".
func (in Info) String() string {
	s := in.Version
	rev := strings.TrimSuffix(in.Revision, "+dirty")
	if rev != "" && !strings.Contains(s, rev[:min(7, len(rev))]) {
		s += " " + in.Revision
	}
	if in.GoVersion != "" {
		s += " " + in.GoVersion
	}
	return s
}

// Version is Get().String().
func Version() string { return Get().String() }

// Print writes "<name> <version>" on a line of its own: what every
// command answers to --version and to `version`.
func Print(w io.Writer, name string) {
	fmt.Fprintln(w, name, Version())
}
