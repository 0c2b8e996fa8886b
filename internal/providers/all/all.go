// Package all is the one list of providers reelq supports. Everything
// else is derived from it: at run time (the worker's configuration and
// adapters, enqueue's provider list, the simulator) and by go generate
// (the public package's typed inputs and provider list, the deploy
// files, the docs' provider sections and tables, the schemas' enums).
//
// To add a provider: write its folder (see docs/providers.md, "Adding a
// provider"), add its Spec to Specs, and run go generate ./... .
package all

//go:generate go run ./gen

import (
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/camb"
	"github.com/reelq/reelq/internal/providers/fal"
	"github.com/reelq/reelq/internal/providers/replicate"
	"github.com/reelq/reelq/internal/providers/samsar"
	"github.com/reelq/reelq/internal/providers/segmind"
	"github.com/reelq/reelq/internal/providers/vimmerse"
	"github.com/reelq/reelq/internal/providersim"
)

// Specs lists the providers, in the order they are shown. No init()
// registration: this line is the list.
var Specs = []providers.Spec{camb.Spec, fal.Spec, replicate.Spec, samsar.Spec, segmind.Spec, vimmerse.Spec}

// Names returns the providers' names, in the order of Specs.
func Names() []string {
	out := make([]string, len(Specs))
	for i, s := range Specs {
		out[i] = s.Name()
	}
	return out
}

// Lookup returns the Spec of the provider named name.
func Lookup(name string) (providers.Spec, bool) {
	for _, s := range Specs {
		if s.Name() == name {
			return s, true
		}
	}
	return providers.Spec{}, false
}

// Simulator returns a simulator serving every provider's API, with knobs
// per provider and a deterministic random source.
func Simulator(knobs map[string]providersim.Knobs, seed uint64) *providersim.Server {
	apis := make(map[string]providersim.API, len(Specs))
	for _, s := range Specs {
		api := s.Sim
		api.Expired = s.LinkExpiry.Status
		apis[s.Name()] = api
	}
	return providersim.New(apis, knobs, seed)
}
