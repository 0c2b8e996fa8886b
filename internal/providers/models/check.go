package models

import (
	"bytes"
	"encoding/json"
	"regexp"

	"github.com/reelq/reelq/internal/providers/kind"
)

// CheckModel records in bad what is wrong with a job's model id (under
// field): missing, not of the hub's form (re, described by form), or
// without a schema while unknown models are refused.
func CheckModel(bad *kind.Problems, c *Catalog, field, model string, re *regexp.Regexp, form string) {
	switch {
	case model == "":
		bad.Add("%s is required (%s)", field, form)
	case !re.MatchString(model):
		bad.Add("%s %q is not a model id (%s)", field, model, form)
	default:
		CheckKnown(bad, c, field, model)
	}
}

// CheckKnown records in bad that model has no schema, unless it has one
// or unknown models pass.
func CheckKnown(bad *kind.Problems, c *Catalog, field, model string) {
	if !c.Known(model) && !c.PassUnknown() {
		bad.Add("%s %q has no input schema on this deployment (known: %s); add <%s_SCHEMA_DIR>/%s.json, or set %s_UNKNOWN_MODELS=pass",
			field, model, list(c.Models()), upper(c.provider), model, upper(c.provider))
	}
}

// CheckObject records in bad what is wrong with the model's input object
// raw (under field): absent, not an object, or against model's schema. It
// returns the object decoded with json.Number values (nil if it is not
// one), so it is sent as written.
func CheckObject(bad *kind.Problems, c *Catalog, field, model string, raw json.RawMessage) map[string]any {
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		bad.Add("%s is required: the model's input object", field)
		return nil
	}
	if err := dec.Decode(&obj); err != nil || obj == nil {
		bad.Add("%s must be a JSON object (the model's input)", field)
		return nil
	}
	for _, m := range c.Check(model, raw, field) {
		bad.Add("%s", m)
	}
	return obj
}

func list(ms []string) string {
	const max = 6
	if len(ms) == 0 {
		return "none"
	}
	s := ""
	for i, m := range ms {
		if i == max {
			return s + ", ..."
		}
		if i > 0 {
			s += ", "
		}
		s += m
	}
	return s
}
