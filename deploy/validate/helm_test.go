package validate

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// natsValues is the part of the official NATS chart's values (nats-io/k8s,
// helm/charts/nats 1.x) that nats-values.yaml sets. Decoding is strict: a
// key outside this subset fails, so each new key is checked against the
// chart's values.yaml before it is added here.
type natsValues struct {
	Config struct {
		Cluster struct {
			Enabled  bool           `json:"enabled"`
			Replicas int            `json:"replicas"`
			Merge    map[string]any `json:"merge"`
		} `json:"cluster"`
		JetStream struct {
			Enabled   bool `json:"enabled"`
			FileStore struct {
				Enabled bool   `json:"enabled"`
				Dir     string `json:"dir"`
				PVC     struct {
					Enabled bool   `json:"enabled"`
					Size    string `json:"size"`
				} `json:"pvc"`
				MaxSize string `json:"maxSize"`
			} `json:"fileStore"`
			MemoryStore struct {
				Enabled bool   `json:"enabled"`
				MaxSize string `json:"maxSize"`
			} `json:"memoryStore"`
			Merge map[string]any `json:"merge"`
		} `json:"jetstream"`
		Monitor struct {
			Enabled bool `json:"enabled"`
			Port    int  `json:"port"`
		} `json:"monitor"`
		Merge map[string]any `json:"merge"`
	} `json:"config"`
	Container struct {
		Image struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"image"`
		Env   map[string]any `json:"env"`
		Merge map[string]any `json:"merge"`
	} `json:"container"`
	PodTemplate struct {
		TopologySpreadConstraints map[string]map[string]any `json:"topologySpreadConstraints"`
		Merge                     struct {
			Spec struct {
				TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds"`
			} `json:"spec"`
		} `json:"merge"`
	} `json:"podTemplate"`
	Service struct {
		Ports struct {
			Monitor struct {
				Enabled bool `json:"enabled"`
			} `json:"monitor"`
		} `json:"ports"`
	} `json:"service"`
	PodDisruptionBudget struct {
		Enabled bool `json:"enabled"`
	} `json:"podDisruptionBudget"`
	NatsBox struct {
		Enabled bool `json:"enabled"`
	} `json:"natsBox"`
}

var chartRaw = regexp.MustCompile(`^<< \$([A-Za-z0-9_]+) >>$`)

// nats-values.yaml asks the official chart for three JetStream servers with
// file storage, sync_interval always, the monitoring port KEDA and the
// probes use, a nats image >= 2.14, and exactly the users and permissions
// of deploy/nats/auth.conf, their passwords from a Secret.
func TestNATSHelmValues(t *testing.T) {
	b, err := os.ReadFile("../helm/nats-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v natsValues
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		t.Fatalf("nats-values.yaml: %v", err)
	}
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("cluster enabled %v replicas %d, want a 3-node cluster", c.Cluster.Enabled, c.Cluster.Replicas)
	}
	if !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled || !c.JetStream.FileStore.PVC.Enabled {
		t.Error("JetStream file storage on a PVC is not enabled")
	}
	if c.JetStream.Merge["sync_interval"] != "always" {
		t.Errorf("jetstream sync_interval %v, want always", c.JetStream.Merge["sync_interval"])
	}
	if !c.Monitor.Enabled || c.Monitor.Port != 8222 {
		t.Errorf("monitor %v port %d, want 8222 (KEDA's natsServerMonitoringEndpoint)", c.Monitor.Enabled, c.Monitor.Port)
	}
	if v.Service.Ports.Monitor.Enabled {
		t.Error("the client Service exposes monitoring (it has no authentication)")
	}
	checkHelmRoutes(t, &v)
	checkHelmGrace(t, &v)
	if err := natsImageOK(v.Container.Image.Repository + ":" + v.Container.Image.Tag); err != nil {
		t.Error(err)
	}

	roles, perms := authRoles(t)
	auth, ok := c.Merge["authorization"].(map[string]any)
	if !ok {
		t.Fatal("config.merge.authorization missing")
	}
	for name, want := range roles {
		if got := normalize(t, auth[name]); !reflect.DeepEqual(got, want) {
			t.Errorf("role %s differs from auth.conf:\n helm: %v\n conf: %v", name, got, want)
		}
	}
	for name := range auth {
		if _, ok := roles[name]; !ok && name != "users" {
			t.Errorf("role %s is not in auth.conf", name)
		}
	}
	list, _ := auth["users"].([]any)
	seen := map[string]bool{}
	for _, u := range list {
		um, _ := u.(map[string]any)
		user, _ := um["user"].(string)
		seen[user] = true
		pw, _ := um["password"].(string)
		if m := chartRaw.FindStringSubmatch(pw); m == nil || m[1] != users[user] {
			t.Errorf("user %s: password %q, want << $%s >>", user, pw, users[user])
		} else if e, ok := v.Container.Env[m[1]].(map[string]any); !ok || !strings.Contains(normalizeString(t, e), "secretKeyRef") {
			t.Errorf("user %s: %s is not set from a Secret in container.env", user, m[1])
		}
		ref, _ := um["permissions"].(string)
		m := chartRaw.FindStringSubmatch(ref)
		if m == nil {
			t.Errorf("user %s: permissions %q, want << $ROLE >>", user, ref)
			continue
		}
		// The chart renders the map with sorted keys: a role must sort
		// before "users" to be defined when the users refer to it.
		if m[1] >= "users" {
			t.Errorf("role %s sorts after users", m[1])
		}
		if !reflect.DeepEqual(roles[m[1]], perms[user]) {
			t.Errorf("user %s has role %s in the Helm values but other permissions in auth.conf", user, m[1])
		}
	}
	for u := range users {
		if !seen[u] {
			t.Errorf("Helm values lack user %s", u)
		}
	}
}

// checkHelmRoutes: the cluster's routes authenticate. The chart writes its
// route URLs without credentials unless the password is in the values in
// clear, so the values replace them: cluster authorization with the route
// user and REELQ_NATS_ROUTE_PASSWORD (from the Secret), and routes from
// REELQ_NATS_ROUTE_URL_0..2, which the container environment builds from
// the password with Kubernetes' $(VAR) expansion (the password variable
// sorts, and so is listed, before them).
func checkHelmRoutes(t *testing.T, v *natsValues) {
	t.Helper()
	m := v.Config.Cluster.Merge
	auth, _ := m["authorization"].(map[string]any)
	if auth["user"] != "route" || auth["password"] != "<< $REELQ_NATS_ROUTE_PASSWORD >>" {
		t.Errorf("cluster authorization %v: want user route, password << $REELQ_NATS_ROUTE_PASSWORD >>", auth)
	}
	if e, ok := v.Container.Env["REELQ_NATS_ROUTE_PASSWORD"].(map[string]any); !ok || !strings.Contains(normalizeString(t, e), "secretKeyRef") {
		t.Error("REELQ_NATS_ROUTE_PASSWORD is not set from a Secret in container.env")
	}
	routes, _ := m["routes"].([]any)
	if len(routes) != v.Config.Cluster.Replicas {
		t.Fatalf("%d routes for %d servers", len(routes), v.Config.Cluster.Replicas)
	}
	for i, r := range routes {
		name := fmt.Sprintf("REELQ_NATS_ROUTE_URL_%d", i)
		if r != "<< $"+name+" >>" {
			t.Errorf("route %d is %v, want << $%s >>", i, r, name)
		}
		want := fmt.Sprintf("nats://route:$(REELQ_NATS_ROUTE_PASSWORD)@nats-%d.nats-headless:6222", i)
		if got, _ := v.Container.Env[name].(string); got != want {
			t.Errorf("container.env %s = %q, want %q", name, got, want)
		}
		if name < "REELQ_NATS_ROUTE_PASSWORD" {
			t.Errorf("%s sorts before REELQ_NATS_ROUTE_PASSWORD: $(...) would not expand", name)
		}
	}
}

// checkHelmGrace: a NATS pod gets lame duck (grace plus duration) and the
// workers' REELQ_SHUTDOWN_TIMEOUT (a node drain evicts both) plus the
// margin before it is killed.
func checkHelmGrace(t *testing.T, v *natsValues) {
	t.Helper()
	g := v.PodTemplate.Merge.Spec.TerminationGracePeriodSeconds
	if g == nil {
		t.Fatal("podTemplate.merge.spec.terminationGracePeriodSeconds unset")
	}
	grace := time.Duration(*g) * time.Second
	lameGrace, err1 := time.ParseDuration(fmt.Sprint(v.Config.Merge["lame_duck_grace_period"]))
	lameDur, err2 := time.ParseDuration(fmt.Sprint(v.Config.Merge["lame_duck_duration"]))
	if err1 != nil || err2 != nil {
		t.Fatalf("lame duck settings: %v %v", err1, err2)
	}
	if grace < lameGrace+lameDur+graceMargin {
		t.Errorf("NATS terminationGracePeriodSeconds %s < lame duck %s + %s + %s", grace, lameGrace, lameDur, graceMargin)
	}
	cm := workerConfigMap(t)
	shutdown, errs := workerShutdown(cm)
	for _, err := range errs {
		t.Error(err)
	}
	if grace < shutdown+graceMargin {
		t.Errorf("NATS terminationGracePeriodSeconds %s < the workers' REELQ_SHUTDOWN_TIMEOUT %s + %s", grace, shutdown, graceMargin)
	}
}

// workerConfigMap is the worker ConfigMap's data.
func workerConfigMap(t *testing.T) map[string]string {
	t.Helper()
	for _, o := range loadManifests(t) {
		if o.meta.Kind == "ConfigMap" && o.meta.Metadata.Name == "reelq-worker" {
			var cm corev1.ConfigMap
			if err := strict(o.doc, &cm); err != nil {
				t.Fatal(err)
			}
			return cm.Data
		}
	}
	t.Fatal("no reelq-worker ConfigMap")
	return nil
}

func normalizeString(t *testing.T, v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
