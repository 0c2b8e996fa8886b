package validate

import (
	"fmt"
	"maps"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// checkDashboardEnv: the dashboard logs in as its own NATS identity
// (auth.conf's user dashboard, whose replies are _INBOX_dashboard.> and
// whose consumers start with "dashboard"), with a password from the
// environment or a file, and listens beyond loopback (it runs in a
// container or pod) only with the Host names it answers to set, unless it
// is told to require signing in for reading too.
func checkDashboardEnv(t *testing.T, where string, env map[string]string) {
	t.Helper()
	_, users := authRoles(t)
	for _, err := range dashboardEnvProblems(users, env) {
		t.Errorf("%s: %v", where, err)
	}
}

func dashboardEnvProblems(users map[string]any, env map[string]string) []error {
	var errs []error
	if _, ok := users[env["NATS_USER"]]; !ok || env["NATS_USER"] != "dashboard" {
		errs = append(errs, fmt.Errorf("NATS_USER %q, want dashboard (its identity in deploy/nats/auth.conf)", env["NATS_USER"]))
	}
	if env["NATS_INBOX_PREFIX"] != "_INBOX_dashboard" || env["REELQ_CONSUMER_PREFIX"] != "dashboard" {
		errs = append(errs, fmt.Errorf("reply prefix %q, consumer prefix %q: want _INBOX_dashboard and dashboard",
			env["NATS_INBOX_PREFIX"], env["REELQ_CONSUMER_PREFIX"]))
	}
	if env["NATS_PASSWORD"] == "" && env["NATS_PASSWORD_FILE"] == "" {
		errs = append(errs, fmt.Errorf("no NATS_PASSWORD or NATS_PASSWORD_FILE"))
	}
	for k := range env {
		if !dashboardVar(k) {
			errs = append(errs, fmt.Errorf("variable %s is not one the dashboard reads", k))
		}
	}
	host, _, err := net.SplitHostPort(env["DASHBOARD_LISTEN"])
	if err != nil {
		return append(errs, fmt.Errorf("DASHBOARD_LISTEN %q: %v", env["DASHBOARD_LISTEN"], err))
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		errs = append(errs, fmt.Errorf("DASHBOARD_LISTEN %q is loopback: nothing outside the container reaches it", env["DASHBOARD_LISTEN"]))
	}
	if env["DASHBOARD_ALLOWED_HOSTS"] == "" && env["DASHBOARD_AUTH_READ"] != "true" {
		errs = append(errs, fmt.Errorf("listening beyond loopback without DASHBOARD_ALLOWED_HOSTS (DNS rebinding) or DASHBOARD_AUTH_READ"))
	}
	return errs
}

// dashboardVars are the variables cmd/dashboard reads, taken from its
// source (get("NAME", ...) and env["NAME"]); NATS_* come from
// config.LoadNATS, as for the worker.
var dashboardVars = sync.OnceValues(func() (map[string]bool, error) {
	src, err := os.ReadFile("../../cmd/dashboard/main.go")
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?:get\(|env\[)"([A-Z][A-Z0-9_]+)"`).FindAllSubmatch(src, -1) {
		out[string(m[1])] = true
	}
	if !out["DASHBOARD_LISTEN"] {
		return nil, fmt.Errorf("cmd/dashboard/main.go: no DASHBOARD_LISTEN found; has the way it reads variables changed?")
	}
	return out, nil
})

// dashboardVar reports whether cmd/dashboard reads the variable.
func dashboardVar(name string) bool {
	vars, err := dashboardVars()
	if err != nil {
		panic(err)
	}
	return vars[name] || strings.HasPrefix(name, "NATS_") || name == "GOMEMLIMIT" || name == "GOMAXPROCS"
}

// The check fails a dashboard that logs in as another identity or listens
// where nothing reaches it (guards the guard).
func TestDashboardCheckRejects(t *testing.T) {
	_, users := authRoles(t)
	good := map[string]string{"NATS_USER": "dashboard", "NATS_INBOX_PREFIX": "_INBOX_dashboard", "REELQ_CONSUMER_PREFIX": "dashboard",
		"NATS_PASSWORD_FILE": "/p", "DASHBOARD_LISTEN": "0.0.0.0:8090", "DASHBOARD_ALLOWED_HOSTS": "reelq.example"}
	if errs := dashboardEnvProblems(users, good); len(errs) > 0 {
		t.Fatalf("a good environment: %v", errs)
	}
	for name, change := range map[string][2]string{
		"operator":  {"NATS_USER", "operator"},
		"loopback":  {"DASHBOARD_LISTEN", "127.0.0.1:8090"},
		"any host":  {"DASHBOARD_ALLOWED_HOSTS", ""},
		"unknown":   {"DASHBOARD_LISTN", "x"},
		"inbox":     {"NATS_INBOX_PREFIX", "_INBOX"},
		"no secret": {"NATS_PASSWORD_FILE", ""},
	} {
		env := maps.Clone(good)
		env[change[0]] = change[1]
		if change[1] == "" {
			delete(env, change[0])
		}
		if errs := dashboardEnvProblems(users, env); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}

// checkDashboardDeployment: the dashboard runs /usr/local/bin/dashboard as
// its identity (checkDashboardEnv), unprivileged and read-only, its
// password from a mounted Secret (never a variable), with probes on
// /healthz on its listening port.
func checkDashboardDeployment(t *testing.T, d *appsv1.Deployment, cms map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret) {
	t.Helper()
	if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("dashboard selector %v does not match its pod labels", d.Spec.Selector)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("dashboard: %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Command) != 1 || c.Command[0] != "/usr/local/bin/dashboard" {
		t.Errorf("dashboard command %v", c.Command)
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("dashboard pod does not require runAsNonRoot")
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("dashboard container is not read-only without privilege escalation")
	}
	env := podEnv(t, "dashboard", c, cms)
	checkDashboardEnv(t, "Kubernetes dashboard", env)
	checkSecretFiles(t, "dashboard", pod, c, env, secrets)
	_, port, _ := net.SplitHostPort(env["DASHBOARD_LISTEN"])
	named := false
	for _, p := range c.Ports {
		if fmt.Sprint(p.ContainerPort) == port && p.Name == "http" {
			named = true
		}
	}
	if !named {
		t.Errorf("dashboard: no container port named http on %s (DASHBOARD_LISTEN)", port)
	}
	for name, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != "/healthz" || probe.HTTPGet.Port.String() != "http" {
			t.Errorf("dashboard: %s probe %+v, want GET /healthz on http", name, probe)
		}
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Error("dashboard: no memory limit")
	}
}
