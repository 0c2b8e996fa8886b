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
	// APIKey authenticates every call. It never appears in errors or logs.
	APIKey string
	// HTTPClient sends the requests; nil means a client with RequestTimeout.
	HTTPClient *http.Client
	// RequestTimeout bounds one HTTP call when HTTPClient is nil; zero means 60s.
	RequestTimeout time.Duration
}

// Client returns cfg.HTTPClient or a new client with the configured timeout.
func (cfg Config) Client() *http.Client {
	if cfg.HTTPClient != nil {
		return cfg.HTTPClient
	}
	t := cfg.RequestTimeout
	if t <= 0 {
		t = 60 * time.Second
	}
	return &http.Client{Timeout: t}
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
