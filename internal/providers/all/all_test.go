package all_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/all"
)

// TestBaseURLMustBeHTTPS checks the https rule: plain http only to
// loopback, unless AllowInsecure, and the error names the variable.
func TestBaseURLMustBeHTTPS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		base     string
		insecure bool
		ok       bool
	}{
		{"", false, true},
		{"https://api.samsar.one", false, true},
		{"http://127.0.0.1:8089", false, true},
		{"http://127.3.2.1", false, true},
		{"http://localhost:8089/", false, true},
		{"http://[::1]:8089", false, true},
		{"http://providersim:8089", false, false},
		{"http://10.0.0.7:8089", false, false},
		{"http://api.samsar.one", false, false},
		{"http://providersim:8089", true, true},
		{"ftp://api.samsar.one", true, false},
		{"https://user:pw@api.samsar.one", false, false},
		{"api.samsar.one", false, false},
	} {
		for _, name := range all.Names() {
			_, err := build(name, providers.Config{BaseURL: tc.base, AllowInsecure: tc.insecure}, nil)
			if (err == nil) != tc.ok {
				t.Errorf("%s base %q insecure=%v: err %v, want ok=%v", name, tc.base, tc.insecure, err, tc.ok)
			}
			prefix := strings.ToUpper(name) + "_"
			if err != nil && !strings.Contains(err.Error(), prefix+"BASE_URL") {
				t.Errorf("error %q does not name %sBASE_URL", err, prefix)
			}
			if err != nil && strings.HasPrefix(tc.base, "http://") && !strings.Contains(err.Error(), prefix+"ALLOW_INSECURE_HTTP=true") {
				t.Errorf("error %q does not name %sALLOW_INSECURE_HTTP", err, prefix)
			}
			if err != nil && strings.Contains(err.Error(), "pw@") {
				t.Errorf("error %q shows the URL's password", err)
			}
		}
	}
}

// TestCreditsPathOption checks that SAMSAR_CREDITS_PATH and
// SEGMIND_CREDITS_PATH move the balance call, through the Options env
// tags, and that the default path is then not called.
func TestCreditsPathOption(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"samsar":  `{"remainingCredits": 12}`,
		"segmind": `{"credits": 12, "free-credits": 0}`,
	} {
		var (
			mu    sync.Mutex
			paths []string
		)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			paths = append(paths, r.URL.Path)
			mu.Unlock()
			if r.URL.Path != "/v9/balance" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte(body))
		}))
		env := map[string]string{strings.ToUpper(name) + "_CREDITS_PATH": "/v9/balance"}
		p, err := build(name, providers.Config{BaseURL: srv.URL, APIKey: "k"}, env)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.(providers.CreditChecker).CheckCredits(context.Background()); err != nil {
			t.Errorf("%s: CheckCredits: %v (paths %v)", name, err, paths)
		}
		p, _ = build(name, providers.Config{BaseURL: srv.URL, APIKey: "k"}, nil)
		err = p.(providers.CreditChecker).CheckCredits(context.Background())
		if !errors.Is(err, providers.ErrNotFound) || errors.Is(err, providers.ErrCreditsExhausted) {
			t.Errorf("%s: CheckCredits at the default path of a server without it: %v, want not found", name, err)
		}
		srv.Close()
	}
}

// build builds the named provider's adapter, as the worker does.
func build(name string, cfg providers.Config, environ map[string]string) (providers.Provider, error) {
	s, ok := all.Lookup(name)
	if !ok {
		return nil, errors.New("unknown provider " + name)
	}
	return s.Build(cfg, environ)
}
