package providers_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/reelq/reelq/internal/providers"
)

const secret = "sk-test-3f9a2c71e0"

// countingTransport counts the requests that reach the real transport
// underneath, as the worker's rate limiter would see them.
type countingTransport struct {
	n    atomic.Int32
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// TestClientKeepsCallerClient checks that Config.Client keeps the
// caller's timeout and transport (the worker's rate limiting) and does
// not change the caller's client.
func TestClientKeepsCallerClient(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer srv.Close()
	ct := &countingTransport{next: http.DefaultTransport}
	orig := &http.Client{Timeout: 7 * time.Second, Transport: ct}
	c := providers.Config{HTTPClient: orig, APIKey: secret}.Client(srv.URL)
	if c == orig || c.Timeout != 7*time.Second {
		t.Fatalf("Client() = %p timeout %v; want a copy with the caller's timeout", c, c.Timeout)
	}
	if orig.CheckRedirect != nil || orig.Transport != ct {
		t.Error("Client() modified the caller's client")
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/x", nil)
	req.Header.Set("X-Api-Key", secret)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct.n.Load() != 1 {
		t.Errorf("the caller's transport saw %d requests, want 1", ct.n.Load())
	}
	if d := (providers.Config{}).Client("https://api.example").Timeout; d != 60*time.Second {
		t.Errorf("default timeout %v, want 60s", d)
	}
}

// TestGuardRefusesOtherHosts checks that a request carrying the key, or
// any credential header, never leaves for a host other than the base
// URL's, while the base host gets it.
func TestGuardRefusesOtherHosts(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	defer other.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer api.Close()
	c := providers.Config{APIKey: secret}.Client(api.URL)
	for name, set := range map[string]func(r *http.Request){
		"x-api-key":     func(r *http.Request) { r.Header.Set("x-api-key", secret) },
		"authorization": func(r *http.Request) { r.Header.Set("Authorization", "Bearer other") },
		"cookie":        func(r *http.Request) { r.Header.Set("Cookie", "s=1") },
		"key in header": func(r *http.Request) { r.Header.Set("X-Custom", "k="+secret) },
		"key in query":  func(r *http.Request) { r.URL.RawQuery = "api_key=" + secret },
	} {
		req, _ := http.NewRequest(http.MethodPost, other.URL+"/steal", strings.NewReader("{}"))
		set(req)
		caller := &providers.Caller{Provider: "p", Client: c, Secrets: []string{secret}}
		_, err := caller.Do(context.Background(), "submit", req)
		if !errors.Is(err, providers.ErrCredentialsRefused) {
			t.Errorf("%s to another host: err %v, want ErrCredentialsRefused", name, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error leaks the key: %v", name, err)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, other.URL+"/public", nil)
	if resp, err := c.Do(req); err != nil {
		t.Errorf("a request without credentials to another host: %v", err)
	} else {
		resp.Body.Close()
	}
	if hits.Load() != 1 {
		t.Errorf("other host got %d requests, want only the one without credentials", hits.Load())
	}
	req, _ = http.NewRequest(http.MethodGet, api.URL+"/ok", nil)
	req.Header.Set("x-api-key", secret)
	if resp, err := c.Do(req); err != nil {
		t.Errorf("the base host: %v", err)
	} else {
		resp.Body.Close()
	}
}

// TestGuardPlainHTTP checks that the key goes over plain http only to a
// loopback host, unless AllowInsecure. A transport that dials the test
// server whatever the name makes "api.example.test" reachable.
func TestGuardPlainHTTP(t *testing.T) {
	t.Parallel()
	var hosts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hosts = append(hosts, r.Host) }))
	defer srv.Close()
	dial := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}}
	defer dial.CloseIdleConnections()
	const base = "http://api.example.test"
	for _, insecure := range []bool{false, true} {
		c := providers.Config{APIKey: secret, HTTPClient: &http.Client{Transport: dial}, AllowInsecure: insecure}.Client(base)
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/x", nil)
		req.Header.Set("x-api-key", secret)
		resp, err := c.Do(req)
		if insecure {
			if err != nil {
				t.Errorf("AllowInsecure: %v", err)
			} else {
				resp.Body.Close()
			}
		} else if !errors.Is(err, providers.ErrCredentialsRefused) {
			t.Errorf("plain http to a non-loopback host: err %v, want ErrCredentialsRefused", err)
		}
	}
	if len(hosts) != 1 || hosts[0] != "api.example.test" {
		t.Errorf("server saw %v, want one request (the AllowInsecure one)", hosts)
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]bool{
		"localhost": true, "LOCALHOST.": true, "127.0.0.1": true, "127.8.9.10": true, "::1": true, "[::1]": true,
		"10.0.0.1": false, "192.168.1.2": false, "example.com": false, "localhost.example.com": false, "": false, "0.0.0.0": false,
	} {
		if got := providers.IsLoopback(h); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestCheckOutputURL(t *testing.T) {
	t.Parallel()
	for u, ok := range map[string]bool{
		"https://cdn.samsar.one/videos/vid_1.mp4":          true,
		"http://127.0.0.1:8089/outputs/camb/t/story.wav":   true,
		"https://storage.example/a.flac?X-Amz-Signature=z": true,
		"":                                  false,
		"javascript:alert(1)":               false,
		"JavaScript:alert(1)":               false,
		"file:///etc/passwd":                false,
		"data:text/html,<script>x</script>": false,
		"https://user:pass@cdn.example/x":   false,
		"https://user@cdn.example/x":        false,
		"https:///x.mp4":                    false,
		"https:x.mp4":                       false,
		"//cdn.example/x.mp4":               false,
		"/outputs/x.mp4":                    false,
		"ftp://cdn.example/x.mp4":           false,
		"https://cdn.example/a b.mp4":       false,
		"https://cdn.example/a\n.mp4":       false,
		"https://cdn.example/" + strings.Repeat("a", providers.MaxOutputURLLen): false,
	} {
		if err := providers.CheckOutputURL(u); (err == nil) != ok {
			t.Errorf("CheckOutputURL(%q) = %v, want ok=%v", u, err, ok)
		}
	}
}

func TestVet(t *testing.T) {
	t.Parallel()
	good := providers.Output{Name: "video", URL: "https://cdn.example/v.mp4"}
	bad := providers.Output{Name: "audio", URL: "https://admin:hunter2@cdn.example/a.wav?sig=abc"}
	st := providers.Vet("p", providers.Status{State: providers.Succeeded, Outputs: []providers.Output{good, bad}})
	if st.State != providers.Failed || st.Outputs != nil || !errors.Is(st.Err, providers.ErrTaskFailed) {
		t.Fatalf("Vet = %+v, want a failed task without outputs", st)
	}
	if msg := st.Err.Error(); !strings.Contains(msg, `"audio"`) || strings.Contains(msg, "hunter2") || strings.Contains(msg, "sig=abc") {
		t.Errorf("message %q should name the output, without its user info or query", msg)
	}
	if st := providers.Vet("p", providers.Status{State: providers.Succeeded, Outputs: []providers.Output{good}}); st.State != providers.Succeeded {
		t.Errorf("Vet(good) = %+v", st)
	}
}

func TestClassifyForbidden(t *testing.T) {
	t.Parallel()
	for msg, want := range map[string]error{
		"Invalid API key": providers.ErrAuth,
		"Missing Authorization or x-api-key in header":         providers.ErrAuth,
		"Unauthorized. API key is invalid or may have expired": providers.ErrAuth,
		"Not authenticated":                               providers.ErrAuth,
		"Invalid credential type":                         providers.ErrAuth,
		"Forbidden":                                       providers.ErrForbidden,
		"API key lacks story access":                      providers.ErrForbidden,
		"This session belongs to another user.":           providers.ErrForbidden,
		"FORBIDDEN: template vim_arctic is not available": providers.ErrForbidden,
		"": providers.ErrForbidden,
	} {
		if got := providers.ClassifyForbidden(msg); got != want {
			t.Errorf("ClassifyForbidden(%q) = %v, want %v", msg, got, want)
		}
	}
}

func TestUsableID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{"4f7471d8ac431cffe0468dc487b5d354": true, "vid_123": true, "a b": false, "": false, "x\n": false, strings.Repeat("a", 257): false} {
		if got := providers.UsableID(id); got != want {
			t.Errorf("UsableID(%q) = %v, want %v", id, got, want)
		}
	}
}

// Bound keeps a provider's answer storable: texts clipped (control
// characters and invalid UTF-8 gone), at most MaxOutputs outputs, the
// error's class kept.
func TestBound(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("\x1b[31mfail\x1b[0m\r\n\xff", 200_000)
	st := providers.Status{State: providers.Failed, Raw: huge, JobRef: huge,
		Err: &providers.Error{Provider: "p", Op: "poll", Class: providers.ErrTaskFailed, Message: huge}}
	for i := range 1000 {
		st.Outputs = append(st.Outputs, providers.Output{URL: "https://cdn.example/" + strings.Repeat("x", i%50), Name: huge, ContentType: huge})
	}
	b := providers.Bound(st)
	if len(b.Outputs) != providers.MaxOutputs || b.Outputs[0].URL != st.Outputs[0].URL {
		t.Errorf("%d outputs kept (first %q), want the first %d", len(b.Outputs), b.Outputs[0].URL, providers.MaxOutputs)
	}
	texts := []string{b.Raw, b.JobRef, b.Outputs[0].Name, b.Outputs[0].ContentType, b.Err.Error()}
	for _, s := range texts {
		if len(s) > providers.MaxStatusText+100 || strings.ContainsAny(s, "\x1b\r\n") || !utf8.ValidString(s) {
			t.Errorf("text of %d bytes %.60q: want it clipped, without control characters, valid UTF-8", len(s), s)
		}
	}
	if !errors.Is(b.Err, providers.ErrTaskFailed) || providers.Code(b.Err) != "provider_failed" {
		t.Errorf("error %v lost its class", b.Err)
	}
	// Another error type keeps its classes behind the clipped text.
	wrapped := providers.Bound(providers.Status{Err: fmt.Errorf("%w: %s", providers.ErrTaskFailed, huge)}).Err
	if len(wrapped.Error()) > providers.MaxStatusText+100 || !errors.Is(wrapped, providers.ErrTaskFailed) {
		t.Errorf("wrapped error of %d bytes, class kept %v", len(wrapped.Error()), errors.Is(wrapped, providers.ErrTaskFailed))
	}
}

// An output is checked as media of the class its provider declared; one
// declared as no media (text, an archive) is not checked at all.
func TestExpectByType(t *testing.T) {
	for ct, want := range map[string][]string{
		"video/mp4": {"video/*"}, "audio/wav; codecs=1": {"audio/*"}, "image/png": {"image/*"},
		"application/json": {"application/json"}, "": nil, "application/octet-stream": nil,
	} {
		e, ok := providers.ExpectByType(providers.Output{ContentType: ct})
		if !ok || !slices.Equal(e.Types, want) {
			t.Errorf("%q: %v, %v; want %v, checked", ct, e.Types, ok, want)
		}
	}
	for _, ct := range []string{"text/plain", "application/zip"} {
		if _, ok := providers.ExpectByType(providers.Output{ContentType: ct}); ok {
			t.Errorf("%q: checked as media", ct)
		}
	}
}
