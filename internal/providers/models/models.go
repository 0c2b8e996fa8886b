// Package models is the HTTP-free half that model hubs (fal.ai,
// Replicate) share: a job names a model and gives that model's input
// object, which is checked against the model's JSON Schema and priced from
// a table, before any paid call.
//
// A Catalog holds the schemas and prices a provider's input package ships
// (embedded, pinned snapshots) plus those an operator adds without code: a
// directory of schema files, one per model, named by the model id
// (<dir>/fal-ai/veo3.json is the schema of fal-ai/veo3), and a price file
// in the embedded table's format. A file is either a JSON Schema of the
// input object or the hub's OpenAPI document for the model, whose input
// schema is found in it (components.schemas.Input, or the schema of the
// first POST's JSON request body).
//
// Schemas are checked with github.com/santhosh-tekuri/jsonschema/v6, which
// imports no HTTP client; references are resolved inside a file only
// (nothing is loaded from disk or the network while compiling).
package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Unknown-model policies (the <P>_UNKNOWN_MODELS option).
const (
	// Refuse rejects a job naming a model without a schema: the default.
	Refuse = "refuse"
	// Pass sends such a job's input unchecked (the hub checks it, and a
	// 422 fails the job as invalid_request).
	Pass = "pass"
)

// Catalog is the models one provider knows: their input schemas and prices.
type Catalog struct {
	provider string
	schemas  map[string]*jsonschema.Schema
	prices   map[string]Price
	pass     bool
}

// Load builds the catalog of provider from the schemas under embedded
// (files <model id>.json) and the price table prices (JSON, see Price),
// extended by the operator's schema directory dir and price file
// priceFile (either may be ""), with the unknown-model policy unknown
// (Refuse or Pass; "" is Refuse). An operator's file replaces the embedded
// one of the same model. Errors name the file and the variable at fault.
func Load(provider string, embedded fs.FS, prices []byte, dir, priceFile, unknown string) (*Catalog, error) {
	c := &Catalog{provider: provider, schemas: map[string]*jsonschema.Schema{}, prices: map[string]Price{}}
	switch unknown {
	case "", Refuse:
	case Pass:
		c.pass = true
	default:
		return nil, fmt.Errorf("%s_UNKNOWN_MODELS is %q; want %s or %s", upper(provider), unknown, Refuse, Pass)
	}
	if err := c.addSchemas(embedded, "embedded"); err != nil {
		return nil, err
	}
	if err := c.addPrices(prices, "embedded price table"); err != nil {
		return nil, err
	}
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%s_SCHEMA_DIR %s is not a readable directory", upper(provider), dir)
		}
		if err := c.addSchemas(os.DirFS(dir), upper(provider)+"_SCHEMA_DIR "+dir); err != nil {
			return nil, err
		}
	}
	if priceFile != "" {
		b, err := os.ReadFile(priceFile)
		if err != nil {
			return nil, fmt.Errorf("%s_PRICE_FILE: %w", upper(provider), err)
		}
		if err := c.addPrices(b, upper(provider)+"_PRICE_FILE "+priceFile); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// addSchemas compiles every *.json file under fsys as the schema of the
// model its path names.
func (c *Catalog) addSchemas(fsys fs.FS, where string) error {
	if fsys == nil {
		return nil
	}
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if d.IsDir() || path.Ext(p) != ".json" {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		sch, err := compile(p, b)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", where, p, err)
		}
		c.schemas[strings.TrimSuffix(p, ".json")] = sch
		return nil
	})
}

// compile compiles one schema file: a JSON Schema (draft 2020-12 unless
// it says otherwise) or an OpenAPI document (its schemas read as draft 4,
// which OpenAPI 3.0's schema objects follow).
func compile(name string, b []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	loc := "reelq:///" + name
	ptr := ""
	comp := jsonschema.NewCompiler()
	comp.UseLoader(jsonschema.SchemeURLLoader{}) // resolve nothing outside the file
	if m, ok := doc.(map[string]any); ok && m["openapi"] != nil {
		comp.DefaultDraft(jsonschema.Draft4)
		if ptr, err = openAPIInput(m); err != nil {
			return nil, err
		}
	}
	if err := comp.AddResource(loc, doc); err != nil {
		return nil, err
	}
	return comp.Compile(loc + "#" + ptr)
}

// openAPIInput finds the input schema in an OpenAPI document: Replicate's
// components.schemas.Input, else the JSON body of the first POST (fal's
// queue document), as a JSON pointer.
func openAPIInput(doc map[string]any) (string, error) {
	if comps, ok := doc["components"].(map[string]any); ok {
		if s, ok := comps["schemas"].(map[string]any); ok && s["Input"] != nil {
			return "/components/schemas/Input", nil
		}
	}
	paths, _ := doc["paths"].(map[string]any)
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		op, _ := paths[k].(map[string]any)
		post, _ := op["post"].(map[string]any)
		body, _ := post["requestBody"].(map[string]any)
		content, _ := body["content"].(map[string]any)
		if _, ok := content["application/json"].(map[string]any)["schema"]; ok {
			return "/paths/" + escape(k) + "/post/requestBody/content/application~1json/schema", nil
		}
	}
	return "", errors.New("an OpenAPI document without components.schemas.Input or a POST with a JSON body")
}

func escape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

// Known reports whether model has a schema.
func (c *Catalog) Known(model string) bool { return c.schemas[model] != nil }

// Find returns the model with a schema whose id ends in suffix, or "".
func (c *Catalog) Find(suffix string) string {
	for _, m := range c.Models() {
		if strings.HasSuffix(m, suffix) {
			return m
		}
	}
	return ""
}

// PassUnknown reports whether a model without a schema is sent unchecked.
func (c *Catalog) PassUnknown() bool { return c.pass }

// Models lists the models with a schema, sorted.
func (c *Catalog) Models() []string {
	out := make([]string, 0, len(c.schemas))
	for m := range c.schemas {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Check checks input (the model's input object, as JSON) against model's
// schema. It returns one message per broken rule, each naming the field
// under field ("input.duration: value must be one of '5', '10'"), and
// nothing for a model without a schema (see Known).
func (c *Catalog) Check(model string, input json.RawMessage, field string) []string {
	sch := c.schemas[model]
	if sch == nil {
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(input))
	if err != nil {
		return []string{field + ": not JSON: " + err.Error()}
	}
	err = sch.Validate(v)
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		if err != nil {
			return []string{field + ": " + err.Error()}
		}
		return nil
	}
	var out []string
	leaves(ve, func(e *jsonschema.ValidationError) {
		loc := field
		for _, t := range e.InstanceLocation {
			loc += "." + t
		}
		out = append(out, loc+": "+e.ErrorKind.LocalizedString(printer))
	})
	slices.Sort(out)
	return slices.Compact(out)
}

// leaves calls f with each innermost error of e.
func leaves(e *jsonschema.ValidationError, f func(*jsonschema.ValidationError)) {
	if len(e.Causes) == 0 {
		f(e)
		return
	}
	for _, c := range e.Causes {
		leaves(c, f)
	}
}

func upper(provider string) string { return strings.ToUpper(provider) }

// cached holds the catalogs Cached loaded, by everything they depend on.
var cached sync.Map // cacheKey -> func() (*Catalog, error)

type cacheKey struct{ provider, dir, priceFile, unknown string }

// Cached is Load, done once per provider and set of options: a provider's
// rules and adapter share one catalog however often they are built.
// shipped is the directory "models" of the provider's embedded files.
func Cached(provider string, shipped fs.FS, prices []byte, dir, priceFile, unknown string) (*Catalog, error) {
	k := cacheKey{provider, dir, priceFile, unknown}
	f, _ := cached.LoadOrStore(k, sync.OnceValues(func() (*Catalog, error) {
		sub, err := fs.Sub(shipped, "models")
		if err != nil {
			return nil, err
		}
		return Load(provider, sub, prices, dir, priceFile, unknown)
	}))
	return f.(func() (*Catalog, error))()
}
