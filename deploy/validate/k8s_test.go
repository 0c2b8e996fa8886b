package validate

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// providers are reelq's providers: the durable consumer names on JOBS and
// the P_ prefixes of their variables.
// BEGIN generated: providers (go generate ./internal/providers/all)
var providers = []string{"camb", "fal", "replicate", "samsar", "segmind", "vimmerse"}

// END generated: providers

// object is one YAML document of a manifest file.
type object struct {
	file string
	doc  []byte
	meta struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
}

func (o *object) String() string {
	return fmt.Sprintf("%s: %s %s/%s", o.file, o.meta.Kind, o.meta.Metadata.Namespace, o.meta.Metadata.Name)
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// loadManifests reads every YAML document under deploy/k8s.
func loadManifests(t *testing.T) []*object {
	t.Helper()
	files, err := filepath.Glob("../k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in ../k8s: %v", err)
	}
	var out []*object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range docSep.Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			o := &object{file: filepath.Base(f), doc: []byte(doc)}
			if err := yaml.Unmarshal(o.doc, &o.meta); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, o)
		}
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// strict decodes doc into v, rejecting unknown and duplicate fields — what
// `kubectl apply --validate=strict` does with the server's schema.
func strict(doc []byte, v any) error {
	return yaml.UnmarshalStrict(doc, v)
}

// Every manifest is a known kind that decodes strictly into its
// k8s.io/api type (so a misspelt or misplaced field fails), has a valid
// name in the reelq namespace, and the workload's references are
// consistent: the ConfigMap and Secrets it uses exist and hold the keys it
// mounts, every secret variable points at a mounted file, probes hit the
// worker's HTTP port, and the variables are the ones the configuration documents.
func TestKubernetesManifests(t *testing.T) {
	objs := loadManifests(t)
	var (
		deploy     *appsv1.Deployment
		forwarder  *appsv1.Deployment
		dash       *appsv1.Deployment
		configMaps = map[string]*corev1.ConfigMap{}
		secrets    = map[string]*corev1.Secret{}
		services   []*corev1.Service
		pdbs       []*policyv1.PodDisruptionBudget
		scaled     []*scaledObject
		policies   []*networkingv1.NetworkPolicy
	)
	for _, o := range objs {
		if errs := validation.IsDNS1123Subdomain(o.meta.Metadata.Name); len(errs) > 0 {
			t.Errorf("%s: name: %v", o, errs)
		}
		switch {
		case o.meta.Kind == "NetworkPolicy":
			if o.meta.Metadata.Namespace != "nats" {
				t.Errorf("%s: namespace %q, want nats (it guards the NATS servers)", o, o.meta.Metadata.Namespace)
			}
		case o.meta.Kind != "Namespace" && o.meta.Metadata.Namespace != "reelq":
			t.Errorf("%s: namespace %q, want reelq", o, o.meta.Metadata.Namespace)
		}
		var err error
		switch gvk := o.meta.APIVersion + "/" + o.meta.Kind; gvk {
		case "v1/Namespace":
			err = strict(o.doc, &corev1.Namespace{})
		case "v1/ConfigMap":
			var cm corev1.ConfigMap
			err = strict(o.doc, &cm)
			configMaps[cm.Name] = &cm
		case "v1/Secret":
			var s corev1.Secret
			err = strict(o.doc, &s)
			secrets[s.Name] = &s
		case "v1/Service":
			var s corev1.Service
			err = strict(o.doc, &s)
			services = append(services, &s)
		case "apps/v1/Deployment":
			d := &appsv1.Deployment{}
			err = strict(o.doc, d)
			switch d.Name {
			case "reelq-forwarder":
				forwarder = d
			case "reelq-dashboard":
				dash = d
			default:
				deploy = d
			}
		case "policy/v1/PodDisruptionBudget":
			var p policyv1.PodDisruptionBudget
			err = strict(o.doc, &p)
			pdbs = append(pdbs, &p)
		case "networking.k8s.io/v1/NetworkPolicy":
			var np networkingv1.NetworkPolicy
			err = strict(o.doc, &np)
			policies = append(policies, &np)
		case "keda.sh/v1alpha1/ScaledObject":
			var so scaledObject
			err = strict(o.doc, &so)
			scaled = append(scaled, &so)
		default:
			t.Errorf("%s: unexpected kind %s", o, gvk)
		}
		if err != nil {
			t.Errorf("%s: %v", o, err)
		}
	}
	if deploy == nil {
		t.Fatal("no worker Deployment")
	}
	checkWorkerDeployment(t, deploy, configMaps, secrets)
	if forwarder == nil {
		t.Fatal("no forwarder Deployment")
	}
	checkForwarderDeployment(t, forwarder, configMaps)
	if dash == nil {
		t.Fatal("no dashboard Deployment")
	}
	checkDashboardDeployment(t, dash, configMaps, secrets)
	for _, s := range services {
		if !selects(s.Spec.Selector, deploy.Spec.Template.Labels) && !selects(s.Spec.Selector, dash.Spec.Template.Labels) {
			t.Errorf("Service %s selects %v, neither the worker pods %v nor the dashboard's", s.Name, s.Spec.Selector, deploy.Spec.Template.Labels)
		}
	}
	for _, p := range pdbs {
		if p.Spec.Selector == nil || !selects(p.Spec.Selector.MatchLabels, deploy.Spec.Template.Labels) {
			t.Errorf("PodDisruptionBudget %s does not select the worker pods", p.Name)
		}
	}
	if len(scaled) != 1 {
		t.Fatalf("%d ScaledObjects, want 1", len(scaled))
	}
	checkScaledObject(t, scaled[0], deploy)
	if len(policies) != 1 {
		t.Fatalf("%d NetworkPolicies, want 1 (the NATS servers')", len(policies))
	}
	checkNATSPolicy(t, policies[0])
}

// checkNATSPolicy: the NATS pods admit monitoring (8222) only from KEDA's
// namespace and themselves, routes (6222) only from themselves, and
// clients (4222) from anywhere in the cluster; no other port.
func checkNATSPolicy(t *testing.T, np *networkingv1.NetworkPolicy) {
	t.Helper()
	nats := map[string]string{"app.kubernetes.io/name": "nats"}
	if !selects(np.Spec.PodSelector.MatchLabels, nats) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("NetworkPolicy %s does not govern ingress to the NATS pods", np.Name)
	}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 || len(rule.From) == 0 {
			t.Errorf("NetworkPolicy %s: a rule admits every port or every peer", np.Name)
			continue
		}
		for _, p := range rule.Ports {
			port := p.Port.String()
			for _, from := range rule.From {
				ns, pods := from.NamespaceSelector, from.PodSelector
				ok := false
				switch port {
				case "4222":
					ok = true
				case "6222":
					ok = ns == nil && pods != nil && selects(pods.MatchLabels, nats)
				case "8222":
					ok = (ns == nil && pods != nil && selects(pods.MatchLabels, nats)) ||
						(pods == nil && ns != nil && ns.MatchLabels["kubernetes.io/metadata.name"] == "keda" && len(ns.MatchLabels) == 1)
				}
				if !ok {
					t.Errorf("NetworkPolicy %s admits port %s from %+v", np.Name, port, from)
				}
			}
		}
	}
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// contractVar reports whether name is a configuration variable
// internal/config defines (docs/configuration.md lists them).
func contractVar(name string) bool {
	vars, err := workerVars()
	return err == nil && vars[name]
}

// podEnv is a container's environment: its ConfigMaps' data (which must
// be in cms) and its variables, none of them from a Secret.
func podEnv(t *testing.T, what string, c corev1.Container, cms map[string]*corev1.ConfigMap) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			t.Errorf("%s: envFrom %+v: only ConfigMaps expected (secrets come from files)", what, ef)
			continue
		}
		cm, ok := cms[ef.ConfigMapRef.Name]
		if !ok {
			t.Errorf("%s: envFrom ConfigMap %s is not in the manifests", what, ef.ConfigMapRef.Name)
			continue
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("%s: env %s comes from a Secret: mount it and use the _FILE variable", what, e.Name)
		}
		env[e.Name] = e.Value
	}
	return env
}

// checkSecretFiles: every *_FILE variable is a key of a Secret mounted
// read-only. With secrets nil the Secrets are not in the manifests (a
// chart's existingSecret): only the mounts are checked, and the names of
// the Secrets and keys used are returned.
func checkSecretFiles(t *testing.T, what string, pod corev1.PodSpec, c corev1.Container, env map[string]string, secrets map[string]*corev1.Secret) map[string][]string {
	t.Helper()
	mounts := map[string]*corev1.SecretVolumeSource{} // mount path -> secret
	vols := map[string]*corev1.Volume{}
	for i := range pod.Volumes {
		vols[pod.Volumes[i].Name] = &pod.Volumes[i]
	}
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Errorf("%s: volume mount %s: no such volume", what, m.Name)
			continue
		}
		if v.Secret != nil {
			if !m.ReadOnly {
				t.Errorf("%s: secret volume %s mounted read-write", what, m.Name)
			}
			mounts[m.MountPath] = v.Secret
		}
	}
	used := map[string][]string{}
	for name, path := range env {
		if !strings.HasSuffix(name, "_FILE") {
			continue
		}
		dir, key := filepath.Dir(path), filepath.Base(path)
		src, ok := mounts[dir]
		if !ok {
			t.Errorf("%s: %s=%s: no Secret mounted at %s", what, name, path, dir)
			continue
		}
		if len(src.Items) > 0 { // projected keys: the file is an item's path
			found := false
			for _, it := range src.Items {
				if it.Path == key {
					key, found = it.Key, true
				}
			}
			if !found {
				t.Errorf("%s: %s=%s: Secret %s projects no %s", what, name, path, src.SecretName, filepath.Base(path))
				continue
			}
		}
		used[src.SecretName] = append(used[src.SecretName], key)
		if secrets == nil {
			continue
		}
		s, ok := secrets[src.SecretName]
		if !ok {
			t.Errorf("%s: %s: Secret %s is not in the manifests", what, name, src.SecretName)
			continue
		}
		if _, ok := s.StringData[key]; !ok {
			if _, ok := s.Data[key]; !ok {
				t.Errorf("%s: %s: Secret %s has no key %s", what, name, src.SecretName, key)
			}
		}
	}
	return used
}

func checkWorkerDeployment(t *testing.T, d *appsv1.Deployment, cms map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret) {
	t.Helper()
	if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", d.Spec.Selector, d.Spec.Template.Labels)
	}
	pod := d.Spec.Template.Spec
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("pod does not require runAsNonRoot")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container is not read-only without privilege escalation")
	}
	env := podEnv(t, "worker", c, cms)
	for name := range env {
		if !contractVar(name) {
			t.Errorf("variable %s is not part of reelq's configuration", name)
		}
		if strings.HasSuffix(name, "_API_KEY") || name == "NATS_PASSWORD" || name == "NATS_TOKEN" {
			t.Errorf("secret %s set as a plain variable", name)
		}
	}
	for _, want := range []string{"NATS_URL", "NATS_USER", "NATS_PASSWORD_FILE", "WORKER_HTTP_ADDR", "REELQ_WORKER_ID"} {
		if _, ok := env[want]; !ok {
			t.Errorf("worker environment lacks %s", want)
		}
	}
	if env["NATS_USER"] != "worker" || env["NATS_INBOX_PREFIX"] != "_INBOX_worker" {
		t.Errorf("worker logs in as %q with reply prefix %q, want worker and _INBOX_worker (the only replies it may read)", env["NATS_USER"], env["NATS_INBOX_PREFIX"])
	}
	if env["REELQ_STREAM_REPLICAS"] != "3" {
		t.Errorf("REELQ_STREAM_REPLICAS = %q, want 3 (R3 streams on the three-node cluster)", env["REELQ_STREAM_REPLICAS"])
	}
	if env["LOG_FORMAT"] != "json" {
		t.Errorf("LOG_FORMAT = %q, want json", env["LOG_FORMAT"])
	}
	checkSecretFiles(t, "worker", pod, c, env, secrets)
	for _, p := range providers {
		if _, ok := env[strings.ToUpper(p)+"_API_KEY_FILE"]; !ok {
			t.Errorf("no %s_API_KEY_FILE", strings.ToUpper(p))
		}
	}
	// Probes on the worker's HTTP port.
	addr := env["WORKER_HTTP_ADDR"]
	port := addr[strings.LastIndex(addr, ":")+1:]
	var named bool
	for _, p := range c.Ports {
		if fmt.Sprint(p.ContainerPort) == port && p.Name == "http" {
			named = true
		}
	}
	if !named {
		t.Errorf("no container port named http on %s (WORKER_HTTP_ADDR %s)", port, addr)
	}
	for name, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		want := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[name]
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", name)
			continue
		}
		if probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %s on %s, want %s on http", name, probe.HTTPGet.Path, probe.HTTPGet.Port.String(), want)
		}
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil {
		t.Error("no terminationGracePeriodSeconds")
	} else {
		for _, err := range checkShutdown(env, time.Duration(*g)*time.Second) {
			t.Errorf("Kubernetes worker: %v", err)
		}
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Error("no memory limit")
	}
}

// scaledObject is the part of KEDA's keda.sh/v1alpha1 ScaledObject
// (github.com/kedacore/keda/v2/apis/keda/v1alpha1) the manifest uses,
// mirrored here so the check needs no KEDA dependency; decoding is strict,
// so a field outside this subset fails and must be added deliberately.
type scaledObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig *struct {
				Behavior map[string]any `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

// natsJetStreamMetadata are the nats-jetstream trigger's parameters (KEDA
// docs, scalers/nats-jetstream; pkg/scalers/nats_jetstream_scaler.go).
var natsJetStreamMetadata = map[string]bool{ // name -> required
	"natsServerMonitoringEndpoint": true, "account": true, "stream": true, "consumer": true,
	"lagThreshold": false, "activationLagThreshold": false, "useHttps": false,
}

func checkScaledObject(t *testing.T, so *scaledObject, d *appsv1.Deployment) {
	t.Helper()
	ref := so.Spec.ScaleTargetRef
	if ref.Name != d.Name || (ref.Kind != "" && ref.Kind != "Deployment") {
		t.Errorf("ScaledObject targets %s %s, want Deployment %s", ref.Kind, ref.Name, d.Name)
	}
	min, max := so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount
	if min == nil || max == nil || *min < 1 || *max < *min {
		t.Errorf("replica bounds min %v max %v: want 1 <= min <= max", min, max)
	}
	consumers := map[string]bool{}
	for i, tr := range so.Spec.Triggers {
		if tr.Type != "nats-jetstream" {
			t.Errorf("trigger %d: type %q, want nats-jetstream", i, tr.Type)
			continue
		}
		for k := range tr.Metadata {
			if _, ok := natsJetStreamMetadata[k]; !ok {
				t.Errorf("trigger %d: unknown nats-jetstream parameter %q", i, k)
			}
		}
		for k, required := range natsJetStreamMetadata {
			if required && tr.Metadata[k] == "" {
				t.Errorf("trigger %d: %s is required", i, k)
			}
		}
		for _, k := range []string{"lagThreshold", "activationLagThreshold"} {
			if v, ok := tr.Metadata[k]; ok && !regexp.MustCompile(`^[0-9]+$`).MatchString(v) {
				t.Errorf("trigger %d: %s %q is not an integer", i, k, v)
			}
		}
		if tr.Metadata["stream"] != "JOBS" {
			t.Errorf("trigger %d: stream %q, want JOBS", i, tr.Metadata["stream"])
		}
		if ep := tr.Metadata["natsServerMonitoringEndpoint"]; strings.Contains(ep, "://") || !strings.HasSuffix(ep, ":8222") {
			t.Errorf("trigger %d: natsServerMonitoringEndpoint %q: want host:8222 without a scheme", i, ep)
		}
		consumers[tr.Metadata["consumer"]] = true
	}
	// One trigger per consumer: each provider has three, one per priority.
	var want []string
	for _, p := range providers {
		want = append(want, p, p+"-high", p+"-low")
	}
	for _, c := range want {
		if !consumers[c] {
			t.Errorf("no trigger on the %s consumer", c)
		}
	}
	if len(consumers) != len(want) || len(so.Spec.Triggers) != len(want) {
		t.Errorf("%d triggers on consumers %v, want one on each of %v", len(so.Spec.Triggers), consumers, want)
	}
}

// The strict decoding really rejects mistakes (guards the guard).
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	bad := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	if err := strict(bad, &appsv1.Deployment{}); err == nil {
		t.Error("a misspelt field (replica) was accepted")
	}
	dup := []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {A: b}\ndata: {C: d}\n")
	if err := strict(dup, &corev1.ConfigMap{}); err == nil {
		t.Error("a duplicate field was accepted")
	}
	so := []byte("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: w}\n  maxReplicas: 3\n")
	if err := strict(so, &scaledObject{}); err == nil {
		t.Error("an unknown ScaledObject field was accepted")
	}
}

// checkForwarderDeployment: the forwarder runs as its NATS identity, reads
// its password and signing secret from a mounted Secret (never the
// environment), runs unprivileged, and has time to finish deliveries in
// flight after SIGTERM.
func checkForwarderDeployment(t *testing.T, d *appsv1.Deployment, cms map[string]*corev1.ConfigMap) {
	t.Helper()
	if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("forwarder selector %v does not match its pod labels", d.Spec.Selector)
	}
	cm := cms["reelq-forwarder"]
	if cm == nil || cm.Data["NATS_USER"] != "forwarder" || cm.Data["NATS_INBOX_PREFIX"] != "_INBOX_forwarder" {
		t.Fatalf("ConfigMap reelq-forwarder: %v", cm)
	}
	for k := range cm.Data {
		if strings.Contains(k, "SECRET") || strings.Contains(k, "PASSWORD") {
			t.Errorf("ConfigMap reelq-forwarder holds %s", k)
		}
	}
	c := d.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if !strings.HasPrefix(env["NATS_PASSWORD_FILE"], "/var/run/secrets/") || !strings.HasPrefix(env["FORWARDER_SECRET_FILE"], "/var/run/secrets/") {
		t.Errorf("forwarder secrets not from files: %v", env)
	}
	if len(c.Command) != 1 || c.Command[0] != "/usr/local/bin/forwarder" {
		t.Errorf("forwarder command %v", c.Command)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("forwarder container is not read-only and unprivileged")
	}
	shutdown, err := time.ParseDuration(cm.Data["FORWARDER_SHUTDOWN_TIMEOUT"])
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; err != nil || g == nil || time.Duration(*g)*time.Second < shutdown+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v does not cover FORWARDER_SHUTDOWN_TIMEOUT %q plus 10s", g, cm.Data["FORWARDER_SHUTDOWN_TIMEOUT"])
	}
}
