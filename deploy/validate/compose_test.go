package validate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads deploy/compose.yaml the way `docker compose config`
// does: schema validation against the Compose specification (embedded in
// compose-go, so offline), interpolation, normalisation and consistency
// checks (undefined networks, volumes, secrets, dependencies).
func loadCompose(t *testing.T, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	abs, err := filepath.Abs("../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []types.ConfigFile{{Filename: abs, Content: b}},
		Environment: env,
	}, func(o *loader.Options) {
		o.SetProjectName("reelq", true)
		o.Profiles = profiles
	})
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return p
}

var natsImage = regexp.MustCompile(`^nats:(\d+)\.(\d+)`)

// natsImageOK checks image is the official nats image at 2.14 or newer,
// pinned to at least a minor version.
func natsImageOK(image string) error {
	m := natsImage.FindStringSubmatch(image)
	if m == nil {
		return fmt.Errorf("image %q is not nats:<major>.<minor>", image)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major < 2 || (major == 2 && minor < 14) {
		return fmt.Errorf("image %s: want nats-server 2.14 or newer", image)
	}
	return nil
}

// compose.yaml is a valid Compose file with a three-node NATS cluster
// (nats >= 2.14, each node with its own stable name and volume, the shipped
// cluster.conf), three worker replicas pointed at all three servers with R3
// streams and their provider keys as secrets, and the simulator.
func TestComposeFile(t *testing.T) {
	p := loadCompose(t, map[string]string{}, "tools")
	nats := 0
	names := map[string]bool{}
	for _, name := range []string{"nats-1", "nats-2", "nats-3"} {
		s, err := p.GetService(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		nats++
		if err := natsImageOK(s.Image); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		cmd := strings.Join(s.Command, " ")
		if !strings.Contains(cmd, "/etc/nats/cluster.conf") {
			t.Errorf("%s: command %q does not load cluster.conf", name, cmd)
		}
		if i := slices.Index(s.Command, "--name"); i < 0 || i+1 >= len(s.Command) {
			t.Errorf("%s: no --name (a JetStream cluster needs stable, unique server names)", name)
		} else {
			names[s.Command[i+1]] = true
		}
		var data, conf bool
		for _, v := range s.Volumes {
			switch {
			case v.Target == "/data" && v.Type == types.VolumeTypeVolume:
				data = true
			case v.Target == "/etc/nats" && v.ReadOnly:
				conf = true
				if fi, err := os.Stat(filepath.Join(v.Source, "cluster.conf")); err != nil || fi.IsDir() {
					t.Errorf("%s: %s/cluster.conf missing", name, v.Source)
				}
			}
		}
		if !data || !conf {
			t.Errorf("%s: data volume %v, config mount %v: want both", name, data, conf)
		}
		for _, v := range []string{"REELQ_NATS_ADMIN_PASSWORD", "REELQ_NATS_WORKER_PASSWORD", "REELQ_NATS_PRODUCER_PASSWORD", "REELQ_NATS_RESULTS_PASSWORD"} {
			if val := s.Environment[v]; val == nil || *val == "" {
				t.Errorf("%s: %s unset (auth.conf needs it)", name, v)
			}
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s: no healthcheck", name)
		}
	}
	if nats != 3 || len(names) != 3 {
		t.Errorf("%d NATS services with %d distinct names, want 3 and 3", nats, len(names))
	}

	w, err := p.GetService("worker")
	if err != nil {
		t.Fatal(err)
	}
	if w.Deploy == nil || w.Deploy.Replicas == nil || *w.Deploy.Replicas < 3 {
		t.Errorf("worker replicas %v, want 3", w.Deploy)
	}
	env := func(k string) string {
		if v := w.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	urls := strings.Split(env("NATS_URL"), ",")
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		if !slices.Contains(urls, "nats://"+n+":4222") {
			t.Errorf("worker NATS_URL %q lacks %s", env("NATS_URL"), n)
		}
		if _, ok := w.DependsOn[n]; !ok {
			t.Errorf("worker does not wait for %s", n)
		}
	}
	if env("REELQ_STREAM_REPLICAS") != "3" {
		t.Errorf("worker REELQ_STREAM_REPLICAS %q, want 3", env("REELQ_STREAM_REPLICAS"))
	}
	if env("NATS_USER") != "worker" || env("NATS_PASSWORD") == "" {
		t.Errorf("worker does not log in as the worker user")
	}
	if env("WORKER_HTTP_ADDR") == "" {
		t.Error("worker has no WORKER_HTTP_ADDR")
	}
	mounted := map[string]bool{}
	for _, s := range w.Secrets {
		mounted["/run/secrets/"+s.Source] = true
		def, ok := p.Secrets[s.Source]
		if !ok {
			t.Errorf("secret %s undefined", s.Source)
			continue
		}
		if b, err := os.ReadFile(def.File); err != nil || strings.TrimSpace(string(b)) == "" {
			t.Errorf("secret %s: file %s missing or empty", s.Source, def.File)
		}
	}
	for _, prov := range providers {
		k := strings.ToUpper(prov) + "_API_KEY_FILE"
		if !mounted[env(k)] {
			t.Errorf("worker %s=%q is not a mounted secret", k, env(k))
		}
		if strings.HasPrefix(env(strings.ToUpper(prov)+"_BASE_URL"), "http://providersim:") == false {
			t.Errorf("worker %s_BASE_URL %q does not point at the simulator", strings.ToUpper(prov), env(strings.ToUpper(prov)+"_BASE_URL"))
		}
	}
	for name := range w.Environment {
		if !contractVar(name) {
			t.Errorf("worker variable %s is not part of reelq's configuration", name)
		}
	}
	if _, err := p.GetService("providersim"); err != nil {
		t.Error(err)
	}
	if w.Build == nil || w.Build.Dockerfile != "deploy/Dockerfile" {
		t.Errorf("worker build %+v, want deploy/Dockerfile", w.Build)
	} else if _, err := os.Stat(filepath.Join(w.Build.Context, w.Build.Dockerfile)); err != nil {
		t.Errorf("worker build: %v", err)
	}
}

// Passwords given in the environment replace the development defaults.
func TestComposePasswordsFromEnvironment(t *testing.T) {
	p := loadCompose(t, map[string]string{"REELQ_NATS_WORKER_PASSWORD": "from-env"})
	w, err := p.GetService("worker")
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.GetService("nats-2")
	if err != nil {
		t.Fatal(err)
	}
	if v := w.Environment["NATS_PASSWORD"]; v == nil || *v != "from-env" {
		t.Errorf("worker NATS_PASSWORD %v, want from-env", v)
	}
	if v := n.Environment["REELQ_NATS_WORKER_PASSWORD"]; v == nil || *v != "from-env" {
		t.Errorf("nats-2 REELQ_NATS_WORKER_PASSWORD %v, want from-env", v)
	}
}
