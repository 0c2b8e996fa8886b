// Package kind is the HTTP-free half of the provider contract: what a
// job for one provider is (its name, its typed input, the rules that
// check and price that input, the input's JSON Schema), the error classes
// every adapter shares, and the wording of an invalid job. The public
// package reelq imports it, and each provider's input package
// (internal/providers/<name>/input) builds its Kind with it; neither
// imports an HTTP client, an adapter or the simulator.
//
// Everything else about a provider (its adapter, limits, timings, recovery,
// simulator routes) is in its providers.Spec, which carries the Kind.
package kind

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"

	"github.com/reelq/reelq/internal/money"
)

// Cost is an estimate of what a job costs at the provider.
type Cost struct {
	Amount float64 `json:"amount"`
	// Unit is "usd" or "credits".
	Unit string `json:"unit"`
	// Basis explains the estimate, e.g. "10 credits/s x 30 s".
	Basis string `json:"basis,omitempty"`
}

// Rules check and price one provider's input as a deployment configured
// with some provider options does.
type Rules interface {
	// Validate checks input against the provider's documented rules
	// without any network call. The error wraps ErrInvalidInput and names
	// the offending field.
	Validate(input json.RawMessage) error
	// Estimate returns the expected cost of input; it is only called with
	// input that passed Validate.
	Estimate(input json.RawMessage) Cost
}

// Kind is what the public package knows of a provider.
type Kind struct {
	// Name is the provider's name in subjects, configuration, job
	// requests and results: lower-case letters and digits.
	Name string
	// Title is the provider's name for people ("Camb.ai").
	Title string
	// Unit is the unit its costs are estimated in: "usd" or "credits".
	Unit string
	// Cancelable says the provider's API can stop a running task (the
	// adapter implements providers.Canceler; a conformance test checks
	// the two agree).
	Cancelable bool
	// Schema is the JSON Schema of the input (draft 2020-12).
	Schema []byte
	// Input is the typed input, the Go type producers build jobs with (the
	// public package re-exports it as reelq.<Title>Input).
	Input reflect.Type
	// Options is the struct type of the provider options the rules depend
	// on, read from the environment under Prefix (nil: none).
	Options reflect.Type
	// rules builds the rules from the environment.
	rules func(environ map[string]string) (Rules, error)
}

// Prefix is the prefix of every environment variable of the provider:
// its name in capitals and an underscore (SAMSAR_).
func (k Kind) Prefix() string { return strings.ToUpper(k.Name) + "_" }

// Rules returns the provider's rules under the options environ sets
// (under Prefix); nil environ means the defaults.
func (k Kind) Rules(environ map[string]string) (Rules, error) { return k.rules(environ) }

// Parse is an input package's typed check: it decodes raw, checks it under
// o and returns the input with its defaults applied.
type Parse[I, O any] func(raw json.RawMessage, o O) (I, error)

// Price estimates a parsed input's cost under o.
type Price[I, O any] func(in I, o O) Cost

// New returns k with the rules parse and price define, and k.Input and
// k.Options set from I and O. Options with a Check() error method are
// checked once when the rules are built.
func New[I, O any](k Kind, parse Parse[I, O], price Price[I, O]) Kind {
	k.Input = reflect.TypeFor[I]()
	k.Options = reflect.TypeFor[O]()
	prefix := k.Prefix()
	k.rules = func(environ map[string]string) (Rules, error) {
		var o O
		if err := ParseOptions(&o, prefix, environ); err != nil {
			return nil, err
		}
		if c, ok := any(o).(interface{ Check() error }); ok {
			// Options that load something (a directory of schemas) say
			// what is wrong once, here, rather than on every job.
			if err := c.Check(); err != nil {
				return nil, err
			}
		}
		return rules[I, O]{parse: parse, price: price, o: o}, nil
	}
	return k
}

type rules[I, O any] struct {
	parse Parse[I, O]
	price Price[I, O]
	o     O
}

func (r rules[I, O]) Validate(raw json.RawMessage) error {
	_, err := r.parse(raw, r.o)
	return err
}

func (r rules[I, O]) Estimate(raw json.RawMessage) Cost {
	in, _ := r.parse(raw, r.o)
	return r.price(in, r.o)
}

// ParseOptions reads the options struct dst points to from environ, each
// field from the variable its env tag names under prefix
// (`env:"VIDEO_MODELS"` under SAMSAR_ reads SAMSAR_VIDEO_MODELS). nil
// environ reads nothing: every field keeps its zero value, which the
// provider takes for its default. An amount (money.Micros, alone or as a
// map's values) is read exactly, as money.Parse reads it.
func ParseOptions(dst any, prefix string, environ map[string]string) error {
	if environ == nil {
		environ = map[string]string{}
	}
	err := env.ParseWithOptions(dst, env.Options{Prefix: prefix, Environment: environ, FuncMap: amounts})
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	// Name the variable, not the Go field: "SEGMIND_PRICE_PER_RUN: invalid
	// value "1e3": not a decimal amount".
	t := reflect.TypeOf(dst).Elem()
	errs := make([]error, len(agg.Errors))
	for i, e := range agg.Errors {
		errs[i] = e
		var pe env.ParseError
		if errors.As(e, &pe) {
			if sf, ok := t.FieldByName(pe.Name); ok {
				name, _, _ := strings.Cut(sf.Tag.Get("env"), ",")
				errs[i] = fmt.Errorf("%s%s: invalid value %q: %w", prefix, name, environ[prefix+name], pe.Err)
			}
		}
	}
	return errors.Join(errs...)
}

// amounts parses money.Micros where caarlos0/env does not look for
// encoding.TextUnmarshaler: a map's values.
var amounts = map[reflect.Type]env.ParserFunc{
	reflect.TypeFor[money.Micros](): func(v string) (any, error) { return money.Parse(v) },
}

// StrictDecode decodes a job input, rejecting unknown fields so that a
// misspelt field is an error rather than a silently missing value.
func StrictDecode(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return errors.New("missing")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// EncodeJSON is json.Marshal without HTML escaping (a prompt's "<" stays
// "<", as a person wrote it).
func EncodeJSON(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
