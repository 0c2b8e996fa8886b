package dashboard

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
)

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		h                string
		size, start, end int64
		partial, ok      bool
	}{
		{"", 100, 0, 99, false, true},
		{"bytes=0-9", 100, 0, 9, true, true},
		{"bytes=90-", 100, 90, 99, true, true},
		{"bytes=-10", 100, 90, 99, true, true},
		{"bytes=-1000", 100, 0, 99, true, true},
		{"bytes=50-5000", 100, 50, 99, true, true},
		{"bytes=0-1,5-6", 100, 0, 99, false, true}, // several ranges: the whole
		{"items=0-1", 100, 0, 99, false, true},
		{"bytes=100-", 100, 0, 0, false, false},
		{"bytes=9-3", 100, 0, 0, false, false},
		{"bytes=-0", 100, 0, 0, false, false},
		{"bytes=x-", 100, 0, 0, false, false},
		{"bytes=0-", 0, 0, -1, false, true},
	} {
		start, end, partial, ok := parseRange(c.h, c.size)
		if ok != c.ok || (ok && (start != c.start || end != c.end || partial != c.partial)) {
			t.Errorf("%q of %d: %d-%d partial %v ok %v", c.h, c.size, start, end, partial, ok)
		}
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/jobs/a?x=1": "/jobs/a?x=1", "": "/", "//evil.example/x": "/", "/\\evil.example": "/",
		"https://evil.example/": "/", "jobs": "/", "/dlq": "/dlq", "javascript:alert(1)": "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHostAllowed(t *testing.T) {
	loop := &Server{cfg: Config{ListenHost: "127.0.0.1"}}
	for host, want := range map[string]bool{"127.0.0.1:8090": true, "localhost:8090": true, "[::1]:8090": true, "app.localhost": true,
		"evil.example:8090": false, "10.0.0.5:8090": false, "127.0.0.1.evil.example": false} {
		if got := loop.hostAllowed(host); got != want {
			t.Errorf("on loopback, Host %q: %v", host, got)
		}
	}
	open := &Server{cfg: Config{ListenHost: "0.0.0.0"}}
	if !open.hostAllowed("dash.example.com") {
		t.Error("beyond loopback without a list, any Host is answered")
	}
	listed := &Server{cfg: Config{ListenHost: "0.0.0.0", AllowedHosts: []string{"dash.example.com"}}}
	if !listed.hostAllowed("DASH.example.com:443") || listed.hostAllowed("other.example.com") {
		t.Error("the allowed hosts are not the only ones answered")
	}
}

func TestSameOrigin(t *testing.T) {
	for _, c := range []struct {
		origin, site string
		want         bool
	}{
		{"", "", true}, {"http://127.0.0.1:8090", "same-origin", true}, {"", "none", true},
		{"http://evil.example", "", false}, {"", "cross-site", false}, {"", "same-site", false}, {"null", "", false},
	} {
		r := httptest.NewRequest("POST", "http://127.0.0.1:8090/x", nil)
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if c.site != "" {
			r.Header.Set("Sec-Fetch-Site", c.site)
		}
		if got := sameOrigin(r); got != c.want {
			t.Errorf("Origin %q Sec-Fetch-Site %q: %v", c.origin, c.site, got)
		}
	}
}

func TestMediaKind(t *testing.T) {
	for ct, want := range map[string]string{"video/mp4": "video", "audio/wav": "audio", "AUDIO/mpeg; x=1": "audio", "image/png": "image",
		"image/svg+xml": "file", "text/html": "file", "": "file", "application/octet-stream": "file"} {
		if got := mediaKind(ct); got != want {
			t.Errorf("%q: %s, want %s", ct, got, want)
		}
	}
}

// A provider card shows jobs held for an operator, with how to resolve
// them, and no such row when there are none.
func TestProviderCardShowsHeldJobs(t *testing.T) {
	s, err := New(Config{Client: new(reelq.Client), Inspector: new(inspect.Inspector), NC: new(nats.Conn)})
	if err != nil {
		t.Fatal(err)
	}
	render := func(held int) string {
		p := &page{Data: &overviewData{Providers: []providerRow{{
			ProviderStats: inspect.ProviderStats{Provider: "samsar", Queued: map[reelq.Priority]uint64{}, Held: held}, State: "running"}}}}
		html, _, err := s.renderFrag("providers", p)
		if err != nil {
			t.Fatal(err)
		}
		return html
	}
	if html := render(2); !strings.Contains(html, `<span class="held">2</span>`) || !strings.Contains(html, "enqueue resolve JOB --task ID") {
		t.Errorf("2 held jobs not shown:\n%s", html)
	}
	if html := render(0); strings.Contains(html, `class="held"`) {
		t.Errorf("a held row with none held:\n%s", html)
	}
}

// A provider whose rate limiter cannot write its shared state shows a
// warning on its card naming the bucket, the server's error and the
// worker that reported it.
func TestProviderCardShowsLimiterAlarm(t *testing.T) {
	s, err := New(Config{Client: new(reelq.Client), Inspector: new(inspect.Inspector), NC: new(nats.Conn)})
	if err != nil {
		t.Fatal(err)
	}
	row := s.providerRow(inspect.ProviderStats{Provider: "samsar", Queued: map[reelq.Priority]uint64{},
		Limiter: &inspect.LimiterAlarm{Bucket: "reelq_ratelimit", Error: "stream store EOF", Since: time.Now(), By: "w-1"}})
	html, _, err := s.renderFrag("providers", &page{Data: &overviewData{Providers: []providerRow{row}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`class="warn"`, "bucket reelq_ratelimit", "stream store EOF", "w-1"} {
		if !strings.Contains(html, want) {
			t.Errorf("card does not show %q:\n%s", want, html)
		}
	}
}

// The kubelet probes /healthz with the pod's IP as the Host: it answers
// whatever the Host (it tells nothing), while every page keeps the Host
// check (TestHostAllowed).
func TestHealthzAnswersAnyHost(t *testing.T) {
	s, err := New(Config{Client: new(reelq.Client), Inspector: new(inspect.Inspector), NC: new(nats.Conn), ListenHost: "0.0.0.0", AllowedHosts: []string{"dash.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/healthz": 200, "/": 421, "/static/app.css": 421} {
		r := httptest.NewRequest("GET", "http://10.1.2.3:8090"+path, nil)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("GET %s with Host 10.1.2.3:8090: %d, want %d", path, w.Code, want)
		}
	}
}

// Every page's footer names the build (Config.Version, which
// cmd/dashboard takes from internal/buildinfo).
func TestFooterShowsVersion(t *testing.T) {
	s, err := New(Config{Client: new(reelq.Client), Inspector: new(inspect.Inspector), NC: new(nats.Conn), Version: "v9.8.7", NATSServer: "nats://n:4222", Auth: Auth{Token: "0123456789abcdef"}})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "http://127.0.0.1/login", nil)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if body := w.Body.String(); !strings.Contains(body, "reelq dashboard v9.8.7") {
		t.Errorf("GET /login (%d): no version in the footer:\n%s", w.Code, body)
	}
}
