package validate

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
)

// users are the NATS users of deploy/nats/auth.conf and the variables
// their passwords come from.
var users = map[string]string{
	"admin":     "REELQ_NATS_ADMIN_PASSWORD",
	"worker":    "REELQ_NATS_WORKER_PASSWORD",
	"producer":  "REELQ_NATS_PRODUCER_PASSWORD",
	"results":   "REELQ_NATS_RESULTS_PASSWORD",
	"operator":  "REELQ_NATS_OPERATOR_PASSWORD",
	"dashboard": "REELQ_NATS_DASHBOARD_PASSWORD",
	"forwarder": "REELQ_NATS_FORWARDER_PASSWORD",
}

// routePassword is the route user's password in these tests.
const routePassword = "pw-route-0123456789abcdef"

func setPasswords(t *testing.T) {
	for user, v := range users {
		t.Setenv(v, "pw-"+user)
	}
	t.Setenv("REELQ_NATS_ROUTE_PASSWORD", routePassword)
	for i := 1; i <= 3; i++ {
		t.Setenv(fmt.Sprintf("REELQ_NATS_ROUTE_%d", i), fmt.Sprintf("nats-route://route:%s@nats-%d:6222", routePassword, i))
	}
}

// The shipped server configs load with nats-server's own loader (the
// authorization include, the password variables, every option) and say
// what the deployment relies on: JetStream with sync_interval always,
// the five users with permissions, monitoring on loopback only, and for
// cluster.conf a named cluster routing to all three compose nodes with
// authenticated routes (the route user and password on both sides), with
// the server name left to the command line.
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
		if opts.HTTPPort != 8222 || opts.HTTPHost != "127.0.0.1" {
			t.Errorf("%s: monitoring on %s:%d, want 127.0.0.1:8222 (it has no authentication)", file, opts.HTTPHost, opts.HTTPPort)
		}
		if opts.HTTPSPort != 0 || opts.ProfPort != 0 {
			t.Errorf("%s: https monitoring %d or profiling %d enabled", file, opts.HTTPSPort, opts.ProfPort)
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
					t.Errorf("%s: route %d is %s, want %s", file, i, r.Redacted(), want)
				}
				if pw, _ := r.User.Password(); r.User.Username() != opts.Cluster.Username || pw != opts.Cluster.Password {
					t.Errorf("%s: route %d does not carry the route user's credentials", file, i)
				}
			}
			if opts.Cluster.Username != "route" || opts.Cluster.Password != routePassword {
				t.Errorf("%s: cluster authorization user %q (password from REELQ_NATS_ROUTE_PASSWORD: %v): routes must authenticate",
					file, opts.Cluster.Username, opts.Cluster.Password == routePassword)
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

// lineLog is a nats-server logger that signals when a line matching want
// is logged.
type lineLog struct {
	want string
	hit  chan struct{}
	once sync.Once
}

func (l *lineLog) log(format string, v ...any) {
	if strings.Contains(fmt.Sprintf(format, v...), l.want) {
		l.once.Do(func() { close(l.hit) })
	}
}
func (l *lineLog) Noticef(format string, v ...any) { l.log(format, v...) }
func (l *lineLog) Warnf(format string, v ...any)   { l.log(format, v...) }
func (l *lineLog) Fatalf(format string, v ...any)  { l.log(format, v...) }
func (l *lineLog) Errorf(format string, v ...any)  { l.log(format, v...) }
func (l *lineLog) Debugf(format string, v ...any)  { l.log(format, v...) }
func (l *lineLog) Tracef(format string, v ...any)  { l.log(format, v...) }

// clusterNode starts cluster.conf on loopback (random client and route
// ports, no JetStream: the routes are what is tested) routing to routes.
func clusterNode(t *testing.T, name string, log server.Logger, routes ...*url.URL) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile("../nats/cluster.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.ServerName, opts.JetStream, opts.NoSigs = name, false, true
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", -1
	opts.Routes = routes
	opts.LameDuckDuration, opts.LameDuckGracePeriod = 0, 0
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	if log != nil {
		s.SetLogger(log, false, false)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("%s not ready", name)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// The route port of cluster.conf is authenticated on a real server: a node
// with the route user's password joins, one without it is refused.
func TestClusterRoutesAuthenticate(t *testing.T) {
	setPasswords(t)
	a := clusterNode(t, "a", nil)
	good := &url.URL{Scheme: "nats-route", User: url.UserPassword("route", routePassword), Host: a.ClusterAddr().String()}
	b := clusterNode(t, "b", nil, good)
	deadline := time.Now().Add(time.Minute) // a hang guard
	for a.NumRoutes() == 0 || b.NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a node with the route password did not join")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, user := range []*url.Userinfo{nil, url.UserPassword("route", "wrong-password")} {
		refused := &lineLog{want: "authentication error", hit: make(chan struct{})}
		a := clusterNode(t, fmt.Sprintf("a%d", i), refused)
		u := &url.URL{Scheme: "nats-route", User: user, Host: a.ClusterAddr().String()}
		c := clusterNode(t, fmt.Sprintf("c%d", i), nil, u)
		select {
		case <-refused.hit:
		case <-time.After(15 * time.Second):
			t.Errorf("a route from %s was not refused", u.Redacted())
		}
		if a.NumRoutes() != 0 || c.NumRoutes() != 0 {
			t.Errorf("a node routing with %s joined", u.Redacted())
		}
	}
}
