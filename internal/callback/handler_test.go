package callback

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/webhook"
)

const testSecret = "callback-secret-0123456789abcdef0123456789"

// rig is an endpoint on real HTTP with a fal key set on loopback, a
// Replicate secret, and job states in a map; it records the wakes.
type rig struct {
	t       *testing.T
	srv     *httptest.Server
	minter  *Minter
	falKey  ed25519.PrivateKey
	repl    *webhook.Secrets
	mu      sync.Mutex
	wakes   []string
	phases  map[string]reelq.Phase // job id -> phase (provider: the id's prefix before '-')
	handler *Handler
}

func newRig(t *testing.T, tune func(*Handler)) *rig {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(webhook.JWKS(pub)) }))
	t.Cleanup(keys.Close)
	repl, err := webhook.NewSecrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMinter("http://127.0.0.1:1/base", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, minter: m, falKey: priv, repl: repl, phases: map[string]reelq.Phase{}}
	fal := &webhook.Fal{JWKSURL: keys.URL, Client: keys.Client()}
	h := &Handler{
		Minter: m,
		Providers: map[string]Provider{
			"fal": {Verify: fal.Verify},
			"replicate": {Verify: func(_ context.Context, h http.Header, body []byte, now time.Time) error {
				return repl.Verify(h, body, now)
			}},
			"samsar": {},
		},
		Phase: func(_ context.Context, id string) (string, reelq.Phase, bool, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			ph, ok := r.phases[id]
			prov, _, _ := strings.Cut(id, "-")
			return prov, ph, ok, nil
		},
		Wake: func(provider, id string) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.wakes = append(r.wakes, provider+"/"+id)
			return nil
		},
	}
	if tune != nil {
		tune(h)
	}
	r.handler = h.Init()
	r.srv = httptest.NewServer(h)
	t.Cleanup(r.srv.Close)
	return r
}

// post sends body to path with headers h and returns the status.
func (r *rig) post(path string, h http.Header, body []byte) int {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL+path, bytes.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// path is the path of job id's callback URL at provider.
func (r *rig) path(provider, id string) string {
	return strings.TrimPrefix(r.minter.URL(provider, id), "http://127.0.0.1:1/base")
}

func (r *rig) wakeCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.wakes)
}

func (r *rig) falHeaders(ts time.Time, body []byte) http.Header {
	h := http.Header{}
	webhook.SetFalHeaders(h, r.falKey, "req-1", "user-1", ts, body)
	return h
}

func (r *rig) replHeaders(ts time.Time, body []byte) http.Header {
	h := http.Header{}
	r.repl.SetHeaders(h, "msg_1", ts, body)
	return h
}

// Every refusal rule: the answer, and no wake.
func TestRefusedCallbacksWakeNothing(t *testing.T) {
	r := newRig(t, nil)
	r.phases["fal-1"] = reelq.PhaseSubmitted
	r.phases["replicate-1"] = reelq.PhaseSubmitted
	r.phases["samsar-1"] = reelq.PhaseSubmitted
	body := []byte(`{"status":"OK"}`)
	now := time.Now()
	old := now.Add(-6 * time.Minute)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	forgedFal := http.Header{}
	webhook.SetFalHeaders(forgedFal, otherPriv, "req-1", "user-1", now, body)
	forgedRepl, _ := webhook.NewSecrets("whsec_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	fr := http.Header{}
	forgedRepl.SetHeaders(fr, "msg_1", now, body)
	badMAC := r.path("fal", "fal-1")
	badMAC = badMAC[:len(badMAC)-1] + string("AB"[(strings.IndexByte("AB", badMAC[len(badMAC)-1])+1)%2])
	for _, tc := range []struct {
		name string
		path string
		h    http.Header
		body []byte
		want int
	}{
		{"forged MAC", badMAC, r.falHeaders(now, body), body, 401},
		{"MAC of another job", strings.Replace(r.path("fal", "fal-2"), "fal-2", "fal-1", 1), r.falHeaders(now, body), body, 401},
		{"MAC of another provider", strings.Replace(r.path("samsar", "samsar-1"), "/samsar/", "/fal/", 1), r.falHeaders(now, body), body, 401},
		{"no MAC", "/hooks/fal/fal-1", r.falHeaders(now, body), body, 404},
		{"fal unsigned", r.path("fal", "fal-1"), nil, body, 401},
		{"fal signed by another key", r.path("fal", "fal-1"), forgedFal, body, 401},
		{"fal body changed", r.path("fal", "fal-1"), r.falHeaders(now, body), []byte(`{"status":"ERROR"}`), 401},
		{"fal replayed (6 min old)", r.path("fal", "fal-1"), r.falHeaders(old, body), body, 401},
		{"replicate unsigned", r.path("replicate", "replicate-1"), nil, body, 401},
		{"replicate signed with another secret", r.path("replicate", "replicate-1"), fr, body, 401},
		{"replicate replayed (6 min old)", r.path("replicate", "replicate-1"), r.replHeaders(old, body), body, 401},
		{"unknown job", r.path("fal", "fal-9"), r.falHeaders(now, body), body, 404},
		{"job of another provider", r.path("replicate", "fal-1"), r.replHeaders(now, body), body, 404},
		{"provider without callbacks", r.path("vimmerse", "vimmerse-1"), nil, body, 404},
		{"other route", "/metrics", nil, nil, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.wakeCount()
			if got := r.post(tc.path, tc.h, tc.body); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
			if n := r.wakeCount() - before; n != 0 {
				t.Errorf("%d wakes, want 0", n)
			}
		})
	}
}

// A good callback wakes its job once per request; a job past polling is
// answered 200 without a wake.
func TestGoodCallbacksWake(t *testing.T) {
	r := newRig(t, nil)
	r.phases["fal-1"] = reelq.PhaseSubmitted
	r.phases["replicate-1"] = reelq.PhaseSubmitting
	r.phases["samsar-1"] = reelq.PhaseSubmitted
	r.phases["samsar-2"] = reelq.PhaseFinished
	body := []byte(`{"status":"OK"}`)
	now := time.Now()
	for _, tc := range []struct {
		path string
		h    http.Header
		want int
	}{
		{r.path("fal", "fal-1"), r.falHeaders(now, body), 202},
		{r.path("fal", "fal-1"), r.falHeaders(now.Add(-4*time.Minute), body), 202},
		{r.path("replicate", "replicate-1"), r.replHeaders(now, body), 202},
		{r.path("samsar", "samsar-1"), nil, 202},
		{r.path("samsar", "samsar-2"), nil, 200},
	} {
		if got := r.post(tc.path, tc.h, body); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.path, got, tc.want)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	want := []string{"fal/fal-1", "fal/fal-1", "replicate/replicate-1", "samsar/samsar-1"}
	if strings.Join(r.wakes, " ") != strings.Join(want, " ") {
		t.Errorf("wakes %v, want %v", r.wakes, want)
	}
}

// The body limit and the per-source rate.
func TestBodyLimitAndSourceRate(t *testing.T) {
	r := newRig(t, func(h *Handler) { h.MaxBody = 64; h.Rate = 0.001; h.Burst = 3 })
	r.phases["samsar-1"] = reelq.PhaseSubmitted
	if got := r.post(r.path("samsar", "samsar-1"), nil, bytes.Repeat([]byte("x"), 65)); got != http.StatusRequestEntityTooLarge {
		t.Errorf("a 65-byte body: status %d, want 413", got)
	}
	for i := range 2 {
		if got := r.post(r.path("samsar", "samsar-1"), nil, []byte("{}")); got != http.StatusAccepted {
			t.Errorf("request %d: status %d, want 202", i+2, got)
		}
	}
	if got := r.post(r.path("samsar", "samsar-1"), nil, []byte("{}")); got != http.StatusTooManyRequests {
		t.Errorf("request 4 over a burst of 3: status %d, want 429", got)
	}
	if n := r.wakeCount(); n != 2 {
		t.Errorf("%d wakes, want 2", n)
	}
}

func TestMinterRefusesWeakSecretAndBadBase(t *testing.T) {
	if _, err := NewMinter("https://x.example", strings.Repeat("s", MinSecretBytes-1)); err == nil || strings.Contains(err.Error(), "sss") {
		t.Errorf("short secret: %v, want an error that does not echo it", err)
	}
	for _, base := range []string{"ftp://x", "https://x.example/?a=1", "x.example", "https://u:p@x.example"} {
		if _, err := NewMinter(base, testSecret); err == nil {
			t.Errorf("base %q accepted", base)
		}
	}
	m, err := NewMinter("https://x.example/reelq/", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	u := m.URL("fal", "job-1")
	if !strings.HasPrefix(u, "https://x.example/reelq/hooks/fal/job-1/") || len(u[strings.LastIndexByte(u, '/')+1:]) != 43 {
		t.Errorf("URL %q", u)
	}
	if strings.Contains(u, testSecret) {
		t.Error("the URL holds the secret")
	}
}
