// Package input is Replicate's job input, HTTP-free: the typed Input
// (re-exported as reelq.ReplicateInput), the options its rules depend on,
// its validation against the model's JSON Schema and its cost estimate
// from the price table. The adapter (package replicate) sends what Parse
// returns.
package input

import (
	"embed"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/providers/models"
)

// Name is the provider's name in subjects and configuration.
const Name = "replicate"

// Options are the provider options the input rules depend on.
type Options struct {
	SchemaDir     string `env:"SCHEMA_DIR" help:"directory of more model input schemas, one file per model, named by its id (DIR/google/veo-3.json): a JSON Schema, or the model's openapi_schema"`
	PriceFile     string `env:"PRICE_FILE" help:"JSON price table that extends the shipped one, by model id: {\"MODEL\": {\"usd\": \"0.07\", \"per\": \"second\", \"seconds\": \"duration\"}} (per: second or run)"`
	UnknownModels string `env:"UNKNOWN_MODELS" helpDefault:"refuse" help:"a model without a schema: refuse the job, or pass its input unchecked to Replicate"`
}

// Check loads the catalog the options name, so a bad directory or price
// file is reported once, when the rules are built.
func (o Options) Check() error {
	_, err := o.Catalog()
	return err
}

//go:embed models
var shipped embed.FS

//go:embed prices.json
var prices []byte

// Catalog is the models the options know: the shipped schemas and prices
// and the operator's. It is loaded once per set of options.
func (o Options) Catalog() (*models.Catalog, error) {
	return models.Cached(Name, shipped, prices, o.SchemaDir, o.PriceFile, o.UnknownModels)
}

// Input is a prediction on Replicate: POST /v1/models/{model}/predictions
// for Model, POST /v1/predictions for Version. Input is the
// model's own input object, checked against the model's JSON Schema
// before any paid call. It costs the model's price from the price table
// (per second of video or per run); a model without a price is unpriced.
type Input struct {
	// Model is an official model, owner/name ("google/veo-3"). Set Model,
	// Version, or both (then Version is a bare version id of Model).
	Model string `json:"model,omitempty"`
	// Version is a model version: its 64 hex digit id, or owner/name:id.
	Version string `json:"version,omitempty"`
	// Input is the model's input object ({"prompt": "...", "duration": 5}).
	Input map[string]any `json:"input"`
}

// Provider names the provider that runs the input.
func (Input) Provider() string { return Name }

// Validate checks the input with the rules of a worker running Replicate
// with its default options (the shipped schemas), without a server. The
// error wraps reelq.ErrInvalidJob and names the field at fault.
func (in Input) Validate() error { return kind.ValidateTyped(Kind, in) }

var (
	modelRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$`)
	versionRe = regexp.MustCompile(`^([a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*:)?[0-9a-f]{64}$`)
)

type wire struct {
	Model   string          `json:"model"`
	Version string          `json:"version"`
	Input   json.RawMessage `json:"input"`
}

// Key is the catalog entry (schema and price) of a job: owner/name, or
// owner/name/<version id> when that version has its own schema.
func Key(in Input, cat *models.Catalog) string {
	model, id := in.Model, in.Version
	if m, v, ok := strings.Cut(id, ":"); ok {
		model, id = m, v
	}
	if model == "" {
		if m := cat.Find("/" + id); m != "" {
			return m
		}
		return id
	}
	if id != "" && cat.Known(model+"/"+id) {
		return model + "/" + id
	}
	return model
}

// Parse decodes and checks a job's input under o: a model or version
// Replicate can be called with, known to the catalog (or
// REPLICATE_UNKNOWN_MODELS=pass), and an input object its schema accepts.
// The error names every rule broken. Numbers in the returned Input are
// json.Number, so they are sent as written.
func Parse(raw json.RawMessage, o Options) (Input, error) {
	cat, err := o.Catalog()
	if err != nil {
		return Input{}, kind.Invalid(Name, "%v", err)
	}
	var w wire
	if err := kind.StrictDecode(raw, &w); err != nil {
		return Input{}, kind.Invalid(Name, "input: %v", err)
	}
	in := Input{Model: w.Model, Version: w.Version}
	bad := kind.Problems{Provider: Name}
	switch {
	case w.Model == "" && w.Version == "":
		bad.Add("input.model or input.version is required (owner/name, or a version id)")
	case w.Version != "" && !versionRe.MatchString(w.Version):
		bad.Add("input.version %q is not a version id (64 hex digits, or owner/name:<64 hex digits>)", w.Version)
	case w.Model != "" && !modelRe.MatchString(w.Model):
		bad.Add("input.model %q is not a model id (owner/name, e.g. google/veo-3)", w.Model)
	case w.Model != "" && strings.Contains(w.Version, ":") && !strings.HasPrefix(w.Version, w.Model+":"):
		bad.Add("input.version %q is not a version of input.model %q", w.Version, w.Model)
	default:
		key := Key(in, cat)
		models.CheckKnown(&bad, cat, "input.model", key)
		in.Input = models.CheckObject(&bad, cat, "input.input", key, w.Input)
		return in, bad.Err()
	}
	in.Input = models.CheckObject(&bad, cat, "input.input", "", w.Input)
	return in, bad.Err()
}

// Price is the model's price from the table, or unpriced.
func Price(in Input, o Options) kind.Cost {
	cat, err := o.Catalog()
	if err != nil {
		return kind.Cost{}
	}
	key := Key(in, cat)
	if m, _, ok := strings.Cut(key, ":"); ok {
		key = m
	}
	c := cat.Estimate(key, in.Input)
	if c.Unit == "" && strings.Count(key, "/") == 2 {
		c = cat.Estimate(key[:strings.LastIndex(key, "/")], in.Input) // a version priced as its model
	}
	return c
}

//go:embed schema.json
var schema []byte

// Kind is Replicate as the public package knows it.
var Kind = kind.New(kind.Kind{Name: Name, Title: "Replicate", Unit: "usd", Cancelable: true, Schema: schema}, Parse, Price)
