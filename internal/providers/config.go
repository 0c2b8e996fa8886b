package providers

import (
	"net/http"
	"time"
)

// Config is what every adapter needs to reach its API.
type Config struct {
	// BaseURL is the API root, e.g. https://api.samsar.one. Empty means the
	// provider's public endpoint.
	BaseURL string
	// APIKey authenticates every call. It never appears in errors or logs,
	// and it is only ever sent to BaseURL's host (see [Config.Client]).
	APIKey string
	// HTTPClient sends the requests; nil means a client with RequestTimeout.
	// Adapters never use it directly but through [Config.Client], which
	// keeps its Timeout and Transport (the worker's rate limiter).
	HTTPClient *http.Client
	// RequestTimeout bounds one HTTP call when HTTPClient is nil; zero means 60s.
	RequestTimeout time.Duration
	// AllowInsecure permits a plain http:// BaseURL to a host that is not
	// loopback (a simulator on another machine or container). Without it
	// registry.New refuses such a URL, and the key is never sent over
	// plain http except to a loopback address. The worker sets it from
	// P_ALLOW_INSECURE_HTTP=true.
	AllowInsecure bool
}

// Client returns the HTTP client an adapter uses for its API at base (the
// adapter's resolved base URL, cfg.Base(default)). It is a copy of
// cfg.HTTPClient (or a new client with RequestTimeout) with the same
// Timeout, Jar and Transport, plus two guards:
//
//   - Redirects are followed only for GET and HEAD, and only to base's own
//     scheme and host. A submit (any other method) never follows one, so a
//     307/308 cannot re-send a paid POST, and no redirect ever carries a
//     key to another host. An unfollowed redirect reaches the adapter as
//     the 3xx response itself (see [Caller.Do]).
//   - The transport refuses any request that carries the API key (in any
//     header or the URL) or an Authorization, X-Api-Key, Proxy-Authorization
//     or Cookie header to a host other than base's, or to base's host over
//     plain http when that host is not loopback and AllowInsecure is unset.
//     net/http itself strips only Authorization and cookies on a cross-host
//     redirect; providers that take the key as X-Api-Key would leak it.
func (cfg Config) Client(base string) *http.Client {
	var c http.Client
	if cfg.HTTPClient != nil {
		c = *cfg.HTTPClient
	} else {
		t := cfg.RequestTimeout
		if t <= 0 {
			t = 60 * time.Second
		}
		c.Timeout = t
	}
	g := newGuard(base, cfg.APIKey, cfg.AllowInsecure, c.Transport)
	c.Transport = g
	c.CheckRedirect = g.checkRedirect
	return &c
}

// Base returns cfg.BaseURL, or def if it is empty, without a trailing slash.
func (cfg Config) Base(def string) string {
	b := cfg.BaseURL
	if b == "" {
		b = def
	}
	for len(b) > 0 && b[len(b)-1] == '/' {
		b = b[:len(b)-1]
	}
	return b
}
