package registry

import (
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"

	"github.com/reelq/reelq/internal/providers/camb"
	"github.com/reelq/reelq/internal/providers/samsar"
	"github.com/reelq/reelq/internal/providers/segmind"
	"github.com/reelq/reelq/internal/providers/vimmerse"
)

// OptionsType is one adapter's Options struct and the prefix its fields
// are read from the environment with (the constructors above parse it the
// same way).
type OptionsType struct {
	Provider string       // the registry name, e.g. "samsar"
	Prefix   string       // e.g. "SAMSAR_"
	Type     reflect.Type // the adapter's Options struct type
}

// optionTypes lists every adapter's Options type. A new adapter adds its
// line here as well as to constructors; internal/config's tests check that
// both know the same providers.
var optionTypes = map[string]reflect.Type{
	samsar.Name:   reflect.TypeFor[samsar.Options](),
	segmind.Name:  reflect.TypeFor[segmind.Options](),
	vimmerse.Name: reflect.TypeFor[vimmerse.Options](),
	camb.Name:     reflect.TypeFor[camb.Options](),
}

// OptionTypes returns every adapter's Options type with its prefix, in
// the order of Names.
func OptionTypes() []OptionsType {
	out := make([]OptionsType, 0, len(optionTypes))
	for _, n := range Names() {
		if t, ok := optionTypes[n]; ok {
			out = append(out, OptionsType{Provider: n, Prefix: strings.ToUpper(n) + "_", Type: t})
		}
	}
	return out
}

// OptionVars returns the names of every adapter option variable (e.g.
// SAMSAR_VIDEO_MODELS), found by reflection over the Options structs'
// env tags (with envPrefix nesting), so a field added to an Options struct
// is known without further changes.
func OptionVars() []string {
	var out []string
	for _, o := range OptionTypes() {
		params, err := env.GetFieldParamsWithOptions(reflect.New(o.Type).Interface(), env.Options{Prefix: o.Prefix})
		if err != nil {
			continue // an unsupported tag option; parse reports it when the adapter is built
		}
		for _, p := range params {
			out = append(out, p.Key)
		}
	}
	return out
}
