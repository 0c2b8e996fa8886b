package validate

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// The chart reelq ships (deploy/helm/reelq) and the values CI renders it
// with: every provider and every part on.
const (
	chartDir       = "../helm/reelq"
	chartCIValues  = "../helm/reelq/ci/all-values.yaml"
	helmInstallCmd = "go install helm.sh/helm/v4/cmd/helm@v4.3.2"
)

// helmBin is the helm command: on PATH, or where `go install` puts it.
// Under CI=true a missing helm fails (.ci/run installs it); elsewhere the
// chart tests skip saying how to install it.
func helmBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		if p := filepath.Join(home, "go", "bin", "helm"); isExec(p) {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("helm is not installed (CI installs it: %s)", helmInstallCmd)
	}
	t.Skipf("helm is not installed: %s", helmInstallCmd)
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// helm runs helm with args and returns its standard output; a failure is
// returned with its standard error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// No repository or plugin set-up of the user's leaks in, and none is
	// written.
	dir := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+dir, "HELM_CONFIG_HOME="+dir, "HELM_DATA_HOME="+dir)
	if err := cmd.Run(); err != nil {
		return out.String(), &helmError{err: err, stderr: errb.String()}
	}
	return out.String(), nil
}

type helmError struct {
	err    error
	stderr string
}

func (e *helmError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

// render is `helm template reelq deploy/helm/reelq -n reelq` with args.
func render(t *testing.T, args ...string) []*object {
	t.Helper()
	out, err := helm(t, append([]string{"template", "reelq", chartDir, "--namespace", "reelq"}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	objs, err := splitManifests("helm template", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// splitManifests splits a multi-document YAML file into its objects.
func splitManifests(file string, b []byte) ([]*object, error) {
	var out []*object
	for _, doc := range docSep.Split(string(b), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		o := &object{file: file, doc: []byte(doc)}
		if err := yaml.Unmarshal(o.doc, &o.meta); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// rendered are a rendering's objects, decoded strictly by kind.
type rendered struct {
	deployments map[string]*appsv1.Deployment // by app.kubernetes.io/name
	configMaps  map[string]*corev1.ConfigMap  // by name
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	policies    []*networkingv1.NetworkPolicy
	scaled      []*scaledObject
	monitors    []*serviceMonitor
	kinds       []string
}

// serviceMonitor is the part of the Prometheus Operator's
// monitoring.coreos.com/v1 ServiceMonitor the chart uses, decoded strictly
// (a field outside it fails and must be added deliberately).
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func decodeRendered(t *testing.T, objs []*object) *rendered {
	t.Helper()
	r := &rendered{deployments: map[string]*appsv1.Deployment{}, configMaps: map[string]*corev1.ConfigMap{}}
	for _, o := range objs {
		if errs := validation.IsDNS1123Subdomain(o.meta.Metadata.Name); len(errs) > 0 {
			t.Errorf("%s: name: %v", o, errs)
		}
		var err error
		gvk := o.meta.APIVersion + "/" + o.meta.Kind
		r.kinds = append(r.kinds, gvk)
		switch gvk {
		case "v1/ConfigMap":
			var cm corev1.ConfigMap
			err = strict(o.doc, &cm)
			r.configMaps[cm.Name] = &cm
		case "v1/Service":
			var s corev1.Service
			err = strict(o.doc, &s)
			r.services = append(r.services, &s)
		case "apps/v1/Deployment":
			d := &appsv1.Deployment{}
			err = strict(o.doc, d)
			r.deployments[d.Labels["app.kubernetes.io/name"]] = d
		case "policy/v1/PodDisruptionBudget":
			var p policyv1.PodDisruptionBudget
			err = strict(o.doc, &p)
			r.pdbs = append(r.pdbs, &p)
		case "networking.k8s.io/v1/NetworkPolicy":
			var np networkingv1.NetworkPolicy
			err = strict(o.doc, &np)
			r.policies = append(r.policies, &np)
		case "keda.sh/v1alpha1/ScaledObject":
			var so scaledObject
			err = strict(o.doc, &so)
			r.scaled = append(r.scaled, &so)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			var sm serviceMonitor
			err = strict(o.doc, &sm)
			r.monitors = append(r.monitors, &sm)
		default:
			// A Secret above all: the chart takes every secret by
			// reference (existingSecret), never as a value.
			t.Errorf("%s: unexpected kind %s", o, gvk)
		}
		if err != nil {
			t.Errorf("%s: %v", o, err)
		}
	}
	return r
}

// workerVars are the variables the worker reads, from the generated
// docs/configuration.md (written from internal/config's struct tags and
// the providers' Specs, checked current by TestGeneratedFilesAreCurrent),
// with P_ expanded to every provider's prefix.
var workerVars = sync.OnceValues(func() (map[string]bool, error) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		return nil, err
	}
	out := map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\|").FindAllSubmatch(b, -1) {
		name := string(m[1])
		if rest, ok := strings.CutPrefix(name, "P_"); ok {
			for _, p := range providers {
				out[strings.ToUpper(p)+"_"+rest] = true
			}
			continue
		}
		out[name] = true
	}
	return out, nil
})

// `helm lint --strict` passes with the CI values, and with the defaults
// plus one provider (what a first install sets).
func TestChartLints(t *testing.T) {
	for _, args := range [][]string{
		{"--values", chartCIValues},
		{"--set", "providers." + providers[0] + ".existingSecret=k"},
	} {
		if out, err := helm(t, append([]string{"lint", "--strict", chartDir}, args...)...); err != nil {
			t.Errorf("helm lint %v: %v\n%s", args, err, out)
		}
	}
}

// `helm template` with every part on renders only known kinds, each
// decoding strictly into its type, and no Secret; the worker, dashboard
// and forwarder Deployments, the ScaledObject and the NATS NetworkPolicy
// pass the same checks as deploy/k8s (identities, secrets as mounted
// files, probes on /healthz and /readyz, grace periods, one trigger per
// consumer); the image is the one asked for; every worker variable is one
// internal/config reads; the ServiceMonitor selects the metrics Services.
func TestChartRenders(t *testing.T) {
	r := decodeRendered(t, render(t, "--values", chartCIValues, "--set", "image.tag=v9.8.7"))
	w, dash, fwd := r.deployments["reelq-worker"], r.deployments["reelq-dashboard"], r.deployments["reelq-forwarder"]
	if w == nil || dash == nil || fwd == nil {
		t.Fatalf("Deployments %v: want reelq-worker, reelq-dashboard and reelq-forwarder", r.deployments)
	}
	checkWorkerDeployment(t, w, r.configMaps, nil)
	checkDashboardDeployment(t, dash, r.configMaps, nil)
	checkForwarderDeployment(t, fwd, r.configMaps)
	if w.Spec.Replicas != nil {
		t.Errorf("worker replicas %d set with KEDA on: the chart and the HPA would fight", *w.Spec.Replicas)
	}

	vars, err := workerVars()
	if err != nil {
		t.Fatal(err)
	}
	c := w.Spec.Template.Spec.Containers[0]
	for name := range podEnv(t, "chart worker", c, r.configMaps) {
		if !vars[name] {
			t.Errorf("chart worker: variable %s is not one the worker reads (docs/configuration.md)", name)
		}
	}
	// Secrets by reference: the worker mounts exactly the Secrets the
	// values name, one per provider.
	used := checkSecretFiles(t, "chart worker", w.Spec.Template.Spec, c, podEnv(t, "chart worker", c, r.configMaps), nil)
	want := map[string][]string{"reelq-nats-worker": {"password"},
		"reelq-callback-secret": {"secret"}, "reelq-replicate-webhook": {"webhook-secret"}}
	for _, p := range providers {
		want["reelq-"+p] = []string{"api-key"}
	}
	for name, keys := range want {
		if !slices.Equal(used[name], keys) {
			t.Errorf("chart worker: Secret %s keys %v, want %v (all used: %v)", name, used[name], keys, used)
		}
	}
	if len(used) != len(want) {
		t.Errorf("chart worker mounts Secrets %v, want %v", used, want)
	}

	for name, d := range r.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Image != "ghcr.io/reelq/reelq:v9.8.7" {
				t.Errorf("%s: image %s, want ghcr.io/reelq/reelq:v9.8.7 (image.tag)", name, c.Image)
			}
		}
	}
	if len(r.scaled) != 1 {
		t.Fatalf("%d ScaledObjects, want 1", len(r.scaled))
	}
	checkScaledObject(t, r.scaled[0], w)

	var natsPolicy *networkingv1.NetworkPolicy
	for _, np := range r.policies {
		if np.Namespace == "nats" {
			natsPolicy = np
		} else if np.Namespace != "" {
			t.Errorf("NetworkPolicy %s in namespace %s", np.Name, np.Namespace)
		}
	}
	if natsPolicy == nil {
		t.Fatal("no NetworkPolicy for the NATS pods (namespace nats)")
	}
	checkNATSPolicy(t, natsPolicy)
	checkCallbacks(t, r, w)

	for _, s := range r.services {
		ok := false
		for _, d := range r.deployments {
			ok = ok || selects(s.Spec.Selector, d.Spec.Template.Labels)
		}
		if !ok {
			t.Errorf("Service %s selects no pods of the chart", s.Name)
		}
	}
	if len(r.pdbs) != 1 || !selects(r.pdbs[0].Spec.Selector.MatchLabels, w.Spec.Template.Labels) {
		t.Errorf("want one PodDisruptionBudget selecting the workers, got %d", len(r.pdbs))
	}
	if len(r.monitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(r.monitors))
	}
	checkServiceMonitor(t, r.monitors[0], r.services, w, fwd)
}

// checkCallbacks: with worker.callbacks on, the worker serves the callback
// endpoint on the port its container names "callbacks", a Service targets
// that port, and a NetworkPolicy admits it to the worker pods (the metrics
// policy admits only 8080 from Prometheus).
func checkCallbacks(t *testing.T, r *rendered, w *appsv1.Deployment) {
	t.Helper()
	c := w.Spec.Template.Spec.Containers[0]
	env := podEnv(t, "chart worker", c, r.configMaps)
	var port int32
	for _, p := range c.Ports {
		if p.Name == "callbacks" {
			port = p.ContainerPort
		}
	}
	if port == 0 || env["REELQ_CALLBACK_ADDR"] != fmt.Sprintf(":%d", port) {
		t.Fatalf("callbacks: REELQ_CALLBACK_ADDR %q, container port %d", env["REELQ_CALLBACK_ADDR"], port)
	}
	if env["REELQ_CALLBACK_URL"] == "" || env["REELQ_CALLBACK_SECRET_FILE"] == "" || env["REPLICATE_WEBHOOK_SECRET_FILE"] == "" {
		t.Errorf("callbacks: want REELQ_CALLBACK_URL, REELQ_CALLBACK_SECRET_FILE and REPLICATE_WEBHOOK_SECRET_FILE, got %v", env)
	}
	served := false
	for _, s := range r.services {
		for _, p := range s.Spec.Ports {
			served = served || (p.TargetPort.StrVal == "callbacks" && selects(s.Spec.Selector, w.Spec.Template.Labels))
		}
	}
	if !served {
		t.Error("callbacks: no Service targets the workers' callbacks port")
	}
	admitted := false
	for _, np := range r.policies {
		if !selects(np.Spec.PodSelector.MatchLabels, w.Spec.Template.Labels) {
			continue
		}
		for _, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				admitted = admitted || (p.Port != nil && p.Port.IntVal == port)
			}
		}
	}
	if !admitted {
		t.Errorf("callbacks: no NetworkPolicy admits port %d to the workers", port)
	}
}

// checkServiceMonitor: it selects the workers' and the forwarder's
// metrics Services by a port they name, and scrapes /metrics.
func checkServiceMonitor(t *testing.T, sm *serviceMonitor, services []*corev1.Service, targets ...*appsv1.Deployment) {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatalf("ServiceMonitor selector: %v", err)
	}
	for _, d := range targets {
		found := false
		for _, s := range services {
			if !sel.Matches(labelSet(s.Labels)) || !selects(s.Spec.Selector, d.Spec.Template.Labels) {
				continue
			}
			for _, p := range s.Spec.Ports {
				for _, e := range sm.Spec.Endpoints {
					found = found || (p.Name == e.Port && e.Path == "/metrics")
				}
			}
		}
		if !found {
			t.Errorf("ServiceMonitor scrapes no /metrics of %s", d.Name)
		}
	}
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool   { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) {
	v, ok := l[k]
	return v, ok
}

// The defaults with one provider: only that provider's key, settings and
// triggers, the dashboard on, the forwarder, the ServiceMonitor and any
// Secret off; without KEDA the Deployment has its replica count; without
// any provider the chart refuses to render, naming the value to set.
func TestChartDefaults(t *testing.T) {
	p := providers[len(providers)-1]
	P := strings.ToUpper(p) + "_"
	r := decodeRendered(t, render(t, "--set", "providers."+p+".existingSecret=my-key"))
	if _, ok := r.deployments["reelq-forwarder"]; ok {
		t.Error("the forwarder is on by default")
	}
	if r.deployments["reelq-dashboard"] == nil {
		t.Error("the dashboard is off by default")
	}
	if len(r.monitors) != 0 {
		t.Error("a ServiceMonitor by default (it needs the Prometheus Operator's CRD)")
	}
	w := r.deployments["reelq-worker"]
	if w == nil {
		t.Fatal("no worker Deployment")
	}
	env := podEnv(t, "chart worker", w.Spec.Template.Spec.Containers[0], r.configMaps)
	for name := range env {
		for _, other := range providers {
			if other != p && strings.HasPrefix(name, strings.ToUpper(other)+"_") {
				t.Errorf("variable %s of a provider without a Secret", name)
			}
		}
	}
	if env[P+"API_KEY_FILE"] == "" || env[P+"RATE"] == "" || env[P+"MAX_INFLIGHT"] == "" {
		t.Errorf("%s: no %sAPI_KEY_FILE, RATE or MAX_INFLIGHT", p, P)
	}
	if len(r.scaled) != 1 || len(r.scaled[0].Spec.Triggers) != 3 {
		t.Fatalf("want one ScaledObject with 3 triggers (%s's consumers), got %v", p, r.scaled)
	}
	for _, tr := range r.scaled[0].Spec.Triggers {
		if c := tr.Metadata["consumer"]; c != p && c != p+"-high" && c != p+"-low" {
			t.Errorf("trigger on consumer %s", c)
		}
	}

	r = decodeRendered(t, render(t, "--set", "providers."+p+".existingSecret=my-key", "--set", "keda.enabled=false", "--set", "worker.replicas=4"))
	if len(r.scaled) != 0 {
		t.Error("a ScaledObject with keda.enabled=false")
	}
	if d := r.deployments["reelq-worker"]; d == nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 4 {
		t.Errorf("worker replicas without KEDA: want 4")
	}

	_, err := helm(t, "template", "reelq", chartDir)
	if err == nil || !strings.Contains(err.Error(), "existingSecret") {
		t.Errorf("no provider: %v, want a refusal naming providers.<name>.existingSecret", err)
	}
}
