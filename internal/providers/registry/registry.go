// Package registry knows every provider adapter by name and builds them
// from configuration. It is the only package that imports all adapters.
package registry

import (
	"fmt"
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
// options (e.g. SAMSAR_VIDEO_MODELS); nil means none.
func New(name string, cfg providers.Config, environ map[string]string) (providers.Provider, error) {
	c, ok := constructors[name]
	if !ok {
		return nil, fmt.Errorf("unknown provider %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return c(cfg, environ)
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
