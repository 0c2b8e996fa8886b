// Package registry knows every provider adapter by name and builds them
// from configuration. It is the only package that imports all adapters.
package registry

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/caarlos0/env/v11"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/camb"
	"github.com/reelq/reelq/internal/providers/samsar"
	"github.com/reelq/reelq/internal/providers/segmind"
	"github.com/reelq/reelq/internal/providers/vimmerse"
)

// constructor builds an adapter from the shared config and the adapter's
// own options, read from the environment under the provider's prefix.
type constructor func(cfg providers.Config, environ map[string]string) (providers.Provider, error)

var constructors = map[string]constructor{
	samsar.Name: func(cfg providers.Config, environ map[string]string) (providers.Provider, error) {
		var o samsar.Options
		if err := parse(&o, "SAMSAR_", environ); err != nil {
			return nil, err
		}
		return samsar.New(cfg, o), nil
	},
	segmind.Name: func(cfg providers.Config, environ map[string]string) (providers.Provider, error) {
		var o segmind.Options
		if err := parse(&o, "SEGMIND_", environ); err != nil {
			return nil, err
		}
		return segmind.New(cfg, o), nil
	},
	vimmerse.Name: func(cfg providers.Config, environ map[string]string) (providers.Provider, error) {
		var o vimmerse.Options
		if err := parse(&o, "VIMMERSE_", environ); err != nil {
			return nil, err
		}
		return vimmerse.New(cfg, o), nil
	},
	camb.Name: func(cfg providers.Config, environ map[string]string) (providers.Provider, error) {
		var o camb.Options
		if err := parse(&o, "CAMB_", environ); err != nil {
			return nil, err
		}
		return camb.New(cfg, o), nil
	},
}

// Names lists the known providers in a stable order.
func Names() []string {
	names := make([]string, 0, len(constructors))
	for n := range constructors {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Known reports whether name is a provider reelq supports.
func Known(name string) bool {
	_, ok := constructors[name]
	return ok
}

// New builds the adapter for name. environ supplies provider-specific
// options (e.g. SAMSAR_VIDEO_MODELS); nil means none. A base URL must be
// https, or http to a loopback host (127.0.0.0/8, ::1, localhost), unless
// cfg.AllowInsecure is set (P_ALLOW_INSECURE_HTTP=true): the API key
// travels with every call.
func New(name string, cfg providers.Config, environ map[string]string) (providers.Provider, error) {
	c, ok := constructors[name]
	if !ok {
		return nil, fmt.Errorf("unknown provider %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	if err := checkBaseURL(strings.ToUpper(name)+"_", cfg); err != nil {
		return nil, err
	}
	return c(cfg, environ)
}

// checkBaseURL enforces the https rule for cfg.BaseURL; prefix names the
// provider's variables (SAMSAR_) in the error.
func checkBaseURL(prefix string, cfg providers.Config) error {
	if cfg.BaseURL == "" {
		return nil // the provider's public https endpoint
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Hostname() == "" || u.User != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%sBASE_URL %s is not an http(s) URL with a host (and no user info)", prefix, providers.ShowURL(cfg.BaseURL))
	}
	if u.Scheme == "http" && !cfg.AllowInsecure && !providers.IsLoopback(u.Hostname()) {
		return fmt.Errorf("%sBASE_URL %s uses plain http to %s, which is not a loopback host, and would send the API key unencrypted: "+
			"use https, or set %sALLOW_INSECURE_HTTP=true for a simulator on a trusted network", prefix, providers.ShowURL(cfg.BaseURL), u.Hostname(), prefix)
	}
	return nil
}

// Validators returns an adapter per known provider, built without
// credentials, for checking job input offline (enqueue does this before
// publishing anything).
func Validators(environ map[string]string) (map[string]providers.Provider, error) {
	out := map[string]providers.Provider{}
	for _, n := range Names() {
		p, err := New(n, providers.Config{}, environ)
		if err != nil {
			return nil, err
		}
		out[n] = p
	}
	return out, nil
}

func parse(v any, prefix string, environ map[string]string) error {
	if environ == nil {
		environ = map[string]string{}
	}
	if err := env.ParseWithOptions(v, env.Options{Prefix: prefix, Environment: environ}); err != nil {
		return fmt.Errorf("%soptions: %w", prefix, err)
	}
	return nil
}
