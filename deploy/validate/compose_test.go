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
	"time"

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
// streams and their provider keys as secrets, the dashboard as its own
// identity, and the simulator.
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
		for _, v := range []string{"REELQ_NATS_ADMIN_PASSWORD", "REELQ_NATS_WORKER_PASSWORD", "REELQ_NATS_PRODUCER_PASSWORD",
			"REELQ_NATS_RESULTS_PASSWORD", "REELQ_NATS_OPERATOR_PASSWORD", "REELQ_NATS_DASHBOARD_PASSWORD", "REELQ_NATS_FORWARDER_PASSWORD", "REELQ_NATS_ROUTE_PASSWORD"} {
			if val := s.Environment[v]; val == nil || *val == "" {
				t.Errorf("%s: %s unset (auth.conf and cluster.conf need it)", name, v)
			}
		}
		// The route URLs carry the route password (cluster.conf).
		pw := s.Environment["REELQ_NATS_ROUTE_PASSWORD"]
		for i := 1; i <= 3; i++ {
			v := s.Environment[fmt.Sprintf("REELQ_NATS_ROUTE_%d", i)]
			if v == nil || pw == nil || *v != fmt.Sprintf("nats-route://route:%s@nats-%d:6222", *pw, i) {
				t.Errorf("%s: REELQ_NATS_ROUTE_%d %v does not carry the route password to nats-%d", name, i, v, i)
			}
		}
		// Monitoring has no authentication: never published.
		for _, p := range s.Ports {
			if p.Target == 8222 || p.Target == 6222 {
				t.Errorf("%s publishes port %d", name, p.Target)
			}
			if p.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %d on %q, want 127.0.0.1 only", name, p.Target, p.HostIP)
			}
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < 40*time.Second+graceMargin {
			t.Errorf("%s: stop_grace_period %v shorter than lame duck (10s + 30s) plus %s", name, s.StopGracePeriod, graceMargin)
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
	if env("NATS_USER") != "worker" || env("NATS_PASSWORD") == "" || env("NATS_INBOX_PREFIX") != "_INBOX_worker" {
		t.Errorf("worker does not log in as the worker user with the _INBOX_worker reply prefix")
	}
	wenv := map[string]string{}
	for k, v := range w.Environment {
		if v != nil {
			wenv[k] = *v
		}
	}
	if w.StopGracePeriod == nil {
		t.Error("worker: no stop_grace_period")
	} else {
		for _, err := range checkShutdown(wenv, time.Duration(*w.StopGracePeriod)) {
			t.Errorf("compose worker: %v", err)
		}
	}
	// Plain http to a host that is not loopback needs the explicit opt-in.
	for _, prov := range providers {
		base := env(strings.ToUpper(prov) + "_BASE_URL")
		if strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "http://127.") && !strings.HasPrefix(base, "http://localhost") &&
			env(strings.ToUpper(prov)+"_ALLOW_INSECURE_HTTP") != "true" {
			t.Errorf("worker %s_BASE_URL %s is plain http off loopback without %s_ALLOW_INSECURE_HTTP=true: the worker refuses it",
				strings.ToUpper(prov), base, strings.ToUpper(prov))
		}
	}
	// The CLI runs as the operator, with its own replies and consumer names.
	if e, err := p.GetService("enqueue"); err != nil {
		t.Error(err)
	} else {
		get := func(k string) string {
			if v := e.Environment[k]; v != nil {
				return *v
			}
			return ""
		}
		if get("NATS_USER") != "operator" || get("NATS_INBOX_PREFIX") != "_INBOX_operator" || get("REELQ_CONSUMER_PREFIX") != "operator" {
			t.Errorf("enqueue: user %q, reply prefix %q, consumer prefix %q: want operator, _INBOX_operator, operator",
				get("NATS_USER"), get("NATS_INBOX_PREFIX"), get("REELQ_CONSUMER_PREFIX"))
		}
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
	if d, err := p.GetService("dashboard"); err != nil {
		t.Error(err)
	} else {
		denv := map[string]string{}
		for k, v := range d.Environment {
			if v != nil {
				denv[k] = *v
			}
		}
		checkDashboardEnv(t, "compose dashboard", denv)
		if len(d.Entrypoint) != 1 || d.Entrypoint[0] != "/usr/local/bin/dashboard" {
			t.Errorf("compose dashboard: entrypoint %v, want /usr/local/bin/dashboard", d.Entrypoint)
		}
		for _, port := range d.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("compose dashboard publishes port %d on %q, want 127.0.0.1 only", port.Target, port.HostIP)
			}
		}
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
