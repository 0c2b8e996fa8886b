package reelqtest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/callback"
	"github.com/reelq/reelq/internal/webhook"
)

// CallbackSecret keys the test callback URLs.
const CallbackSecret = "reelqtest-callback-secret-0123456789abcdef"

// Callbacks is the inbound callback endpoint of a test, on real HTTP, as
// cmd/worker serves it: fal's signatures checked with the simulator's
// key set, Replicate's with the simulator account's secret, Samsar and
// Vimmerse by the URL's MAC only; wakes published on the Env's
// connection.
type Callbacks struct {
	Minter *callback.Minter
	// URL is the endpoint's base URL; ReplicateSecret the simulated
	// account's webhook secret.
	URL             string
	ReplicateSecret string
}

// StartCallbacks serves the callback endpoint until the test ends. With
// down set, nothing listens at the minted URLs (an endpoint that is
// down: the simulator's callbacks fail).
func (e *Env) StartCallbacks(down bool) *Callbacks {
	e.T.Helper()
	sec := e.replicateSecret()
	reps, err := webhook.NewSecrets(sec)
	if err != nil {
		e.T.Fatal(err)
	}
	fal := &webhook.Fal{JWKSURL: e.SimURL + "/fal/.well-known/jwks.json"}
	h := (&callback.Handler{
		Providers: map[string]callback.Provider{
			"fal": {Verify: fal.Verify},
			"replicate": {Verify: func(_ context.Context, h http.Header, body []byte, now time.Time) error {
				return reps.Verify(h, body, now)
			}},
			"samsar":   {},
			"vimmerse": {},
		},
		Phase: callback.StatePhase(e.States),
		Wake:  callback.Publish(e.NC),
		// Every request comes from loopback: no per-source limit here
		// (internal/callback tests it).
		Rate: 1e9, Burst: 1 << 30,
	})
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	if h.Minter, err = callback.NewMinter(base, CallbackSecret); err != nil {
		e.T.Fatal(err)
	}
	srv.Config.Handler = h.Init()
	if down {
		srv.Listener.Close() // the port stays unused: callbacks find no one
	} else {
		srv.Start()
		e.T.Cleanup(srv.Close)
	}
	return &Callbacks{Minter: h.Minter, URL: base, ReplicateSecret: sec}
}

// replicateSecret asks the simulator for the account's webhook secret,
// as an operator asks Replicate (GET /v1/webhooks/default/secret).
func (e *Env) replicateSecret() string {
	e.T.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.BaseURL("replicate")+"/webhooks/default/secret", nil)
	req.Header.Set("Authorization", "Bearer "+APIKey("replicate"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.T.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Key string `json:"key"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || !strings.HasPrefix(out.Key, "whsec_") {
		e.T.Fatalf("replicate webhook secret: status %d, %v", resp.StatusCode, err)
	}
	return out.Key
}
