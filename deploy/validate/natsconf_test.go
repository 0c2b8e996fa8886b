package validate

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
)

// users are the NATS users of deploy/nats/auth.conf and the variables
// their passwords come from.
var users = map[string]string{
	"admin":    "REELQ_NATS_ADMIN_PASSWORD",
	"worker":   "REELQ_NATS_WORKER_PASSWORD",
	"producer": "REELQ_NATS_PRODUCER_PASSWORD",
	"results":  "REELQ_NATS_RESULTS_PASSWORD",
}

func setPasswords(t *testing.T) {
	for user, v := range users {
		t.Setenv(v, "pw-"+user)
	}
}

// The shipped server configs load with nats-server's own loader (the
// authorization include, the password variables, every option) and say
// what the deployment relies on: JetStream with sync_interval always,
// the four users with permissions, and for cluster.conf a named cluster
// routing to all three compose nodes, with the server name left to the
// command line.
func TestNATSServerConfigs(t *testing.T) {
	setPasswords(t)
	for _, file := range []string{"../nats/nats-server.conf", "../nats/cluster.conf"} {
		opts, err := server.ProcessConfigFile(file)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if !opts.JetStream || !opts.SyncAlways || opts.StoreDir == "" {
			t.Errorf("%s: jetstream %v sync_interval always %v store_dir %q", file, opts.JetStream, opts.SyncAlways, opts.StoreDir)
		}
		if opts.HTTPPort != 8222 {
			t.Errorf("%s: monitoring port %d, want 8222 (probes, KEDA)", file, opts.HTTPPort)
		}
		if opts.MaxPayload < 4<<20 {
			t.Errorf("%s: max_payload %d, want >= 4MB (the embedded server's)", file, opts.MaxPayload)
		}
		got := map[string]bool{}
		for _, u := range opts.Users {
			got[u.Username] = true
			if u.Password != "pw-"+u.Username {
				t.Errorf("%s: user %s does not take its password from %s", file, u.Username, users[u.Username])
			}
			if u.Username != "admin" && (u.Permissions == nil || u.Permissions.Publish == nil || len(u.Permissions.Publish.Allow) == 0) {
				t.Errorf("%s: user %s has no publish allow list", file, u.Username)
			}
		}
		for u := range users {
			if !got[u] {
				t.Errorf("%s: no user %s", file, u)
			}
		}
		if strings.HasSuffix(file, "cluster.conf") {
			if opts.Cluster.Name != "reelq" || opts.Cluster.Port != 6222 || len(opts.Routes) != 3 {
				t.Errorf("%s: cluster %q port %d routes %v", file, opts.Cluster.Name, opts.Cluster.Port, opts.Routes)
			}
			for i, r := range opts.Routes {
				if want := []string{"nats-1", "nats-2", "nats-3"}[i]; r.Hostname() != want {
					t.Errorf("%s: route %d is %s, want %s", file, i, r, want)
				}
			}
			if opts.ServerName != "" {
				t.Errorf("%s: server_name %q is fixed; every node needs its own (--name)", file, opts.ServerName)
			}
		}
	}
}

// authRoles parses auth.conf with the server's parser and returns its
// role maps (ADMIN, WORKER, ...) and each user's permissions.
func authRoles(t *testing.T) (roles map[string]any, userPerms map[string]any) {
	t.Helper()
	setPasswords(t)
	m, err := conf.ParseFile("../nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	auth, ok := m["authorization"].(map[string]any)
	if !ok {
		t.Fatal("auth.conf: no authorization block")
	}
	roles, userPerms = map[string]any{}, map[string]any{}
	for k, v := range auth {
		if k != "users" {
			roles[k] = normalize(t, v)
		}
	}
	for _, u := range auth["users"].([]any) {
		um := u.(map[string]any)
		userPerms[um["user"].(string)] = normalize(t, um["permissions"])
	}
	return roles, userPerms
}

// normalize turns parsed config values into plain JSON values.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Each user's permissions are one of the named roles (so the Helm values,
// which reference roles by name, can mirror them).
func TestAuthRolesNamed(t *testing.T) {
	roles, perms := authRoles(t)
	for user, p := range perms {
		found := false
		for _, r := range roles {
			if reflect.DeepEqual(r, p) {
				found = true
			}
		}
		if !found {
			t.Errorf("user %s has permissions that are no named role", user)
		}
	}
}
