// Package input is fal.ai's job input, HTTP-free: the typed Input
// (re-exported as reelq.FalInput), the options its rules depend on, its
// validation against the model's JSON Schema and its cost estimate from
// the price table. The adapter (package fal) sends what Parse returns.
package input

import (
	"embed"
	"encoding/json"
	"regexp"

	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/providers/models"
)

// Name is the provider's name in subjects and configuration.
const Name = "fal"

// Options are the provider options the input rules depend on.
type Options struct {
	SchemaDir     string `env:"SCHEMA_DIR" help:"directory of more model input schemas, one file per model, named by its id (DIR/fal-ai/veo3.json): a JSON Schema, or fal's OpenAPI document of the model"`
	PriceFile     string `env:"PRICE_FILE" help:"JSON price table that extends the shipped one, by model id: {\"MODEL\": {\"usd\": \"0.07\", \"per\": \"second\", \"seconds\": \"duration\"}} (per: second or run)"`
	UnknownModels string `env:"UNKNOWN_MODELS" helpDefault:"refuse" help:"a model without a schema: refuse the job, or pass its input unchecked to fal"`
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

// Input is a request to one of fal.ai's models through its queue API
// (POST https://queue.fal.run/{model}). Input is the model's own input
// object, sent unchanged as the body and checked against the model's JSON
// Schema before any paid call. It costs the model's price from the price
// table (per second of video or per run); a model without a price is
// unpriced.
type Input struct {
	// Model is the fal model id: owner/app and an optional subpath
	// ("fal-ai/kling-video/v2.1/master/text-to-video"). A model without a
	// schema is refused unless the workers set FAL_UNKNOWN_MODELS=pass.
	Model string `json:"model"`
	// Input is the model's input object ({"prompt": "...", "duration": "5"}).
	Input map[string]any `json:"input"`
}

// Provider names the provider that runs the input.
func (Input) Provider() string { return Name }

// Validate checks the input with the rules of a worker running fal with
// its default options (the shipped schemas), without a server. The error
// wraps reelq.ErrInvalidJob and names the field at fault.
func (in Input) Validate() error { return kind.ValidateTyped(Kind, in) }

// modelRe is a fal model id: owner/app, then path segments; no "..", no
// query, nothing a URL path would read differently.
var modelRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$`)

// wire is the job's input as written, the model input kept raw so the
// schema sees it as sent.
type wire struct {
	Model string          `json:"model"`
	Input json.RawMessage `json:"input"`
}

// App is model's owner/app, which fal's status, result and cancel URLs
// use without the subpath.
func App(model string) string {
	n := 0
	for i := range len(model) {
		if model[i] == '/' {
			if n++; n == 2 {
				return model[:i]
			}
		}
	}
	return model
}

// Parse decodes and checks a job's input under o: a model id fal can be
// called with, known to the catalog (or FAL_UNKNOWN_MODELS=pass), and an
// input object its schema accepts. The error names every rule broken.
// Numbers in the returned Input are json.Number, so they are sent as
// written.
func Parse(raw json.RawMessage, o Options) (Input, error) {
	cat, err := o.Catalog()
	if err != nil {
		return Input{}, kind.Invalid(Name, "%v", err)
	}
	var w wire
	if err := kind.StrictDecode(raw, &w); err != nil {
		return Input{}, kind.Invalid(Name, "input: %v", err)
	}
	bad := kind.Problems{Provider: Name}
	models.CheckModel(&bad, cat, "input.model", w.Model, modelRe, "owner/app[/path], e.g. fal-ai/veo3")
	obj := models.CheckObject(&bad, cat, "input.input", w.Model, w.Input)
	return Input{Model: w.Model, Input: obj}, bad.Err()
}

// Price is the model's price from the table, or unpriced.
func Price(in Input, o Options) kind.Cost {
	cat, err := o.Catalog()
	if err != nil {
		return kind.Cost{}
	}
	return cat.Estimate(in.Model, in.Input)
}

//go:embed schema.json
var schema []byte

// Kind is fal.ai as the public package knows it.
var Kind = kind.New(kind.Kind{Name: Name, Title: "fal.ai", Unit: "usd", Cancelable: true, Schema: schema}, Parse, Price)
