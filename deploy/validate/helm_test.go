package validate

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// natsValues is the part of the official NATS chart's values (nats-io/k8s,
// helm/charts/nats 1.x) that nats-values.yaml sets. Decoding is strict: a
// key outside this subset fails, so each new key is checked against the
// chart's values.yaml before it is added here.
type natsValues struct {
	Config struct {
		Cluster struct {
			Enabled  bool `json:"enabled"`
			Replicas int  `json:"replicas"`
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
	} `json:"podTemplate"`
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

func normalizeString(t *testing.T, v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
