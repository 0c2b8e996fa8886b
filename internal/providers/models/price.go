package models

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/providers/kind"
)

// printer words schema violations.
var printer = message.NewPrinter(language.English)

// Price is one model's row of a price table. A table is a JSON object
// from model id to Price:
//
//	{"fal-ai/veo3": {"usd": "0.75", "per": "second", "seconds": "duration", "default_seconds": 8}}
type Price struct {
	// USD is the price of one unit, read exactly ("0.07").
	USD money.Micros `json:"usd"`
	// Per is the unit: "second" (of generated video) or "run".
	Per string `json:"per"`
	// Seconds names the input field that holds the video's length, for a
	// per-second price: a number, or a string of digits with an optional
	// "s" ("5", "8s").
	Seconds string `json:"seconds,omitempty"`
	// DefaultSeconds is the length when the input leaves Seconds out (the
	// model's default).
	DefaultSeconds float64 `json:"default_seconds,omitempty"`
	// Source says where the price was read, for people.
	Source string `json:"source,omitempty"`
}

func (c *Catalog) addPrices(b []byte, where string) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	var t map[string]Price
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	for m, p := range t {
		switch {
		case p.USD <= 0:
			return fmt.Errorf("%s: %s: usd must be a positive amount", where, m)
		case p.Per == "second" && p.Seconds == "":
			return fmt.Errorf("%s: %s: a per-second price needs \"seconds\", the input field of the video's length", where, m)
		case p.Per != "second" && p.Per != "run":
			return fmt.Errorf("%s: %s: per is %q; want second or run", where, m, p.Per)
		}
		c.prices[m] = p
	}
	return nil
}

// Estimate prices input for model from the table: the per-run price, or
// the per-second price times the length the input asks for. A model
// without a price, or an input whose length cannot be read, is unpriced:
// a Cost without a unit, whose Basis says why.
func (c *Catalog) Estimate(model string, input map[string]any) kind.Cost {
	p, ok := c.prices[model]
	if !ok {
		return kind.Cost{Basis: "unpriced: " + model + " is not in the " + c.provider + " price table"}
	}
	if p.Per == "run" {
		return kind.Cost{Amount: p.USD.Float(), Unit: "usd", Basis: "$" + p.USD.String() + " per run of " + model}
	}
	secs, ok := seconds(input, p.Seconds, p.DefaultSeconds)
	if !ok {
		return kind.Cost{Basis: "unpriced: the length of " + model + "'s video (input." + p.Seconds + ") cannot be read"}
	}
	amount := money.Micros(math.Round(float64(p.USD) * secs))
	return kind.Cost{Amount: amount.Float(), Unit: "usd", Basis: fmt.Sprintf("$%s/s x %g s of %s", p.USD, secs, model)}
}

// seconds reads the video length field of input: 5, "5" or "8s"; def
// when absent.
func seconds(input map[string]any, field string, def float64) (float64, bool) {
	var s string
	switch v := input[field].(type) {
	case nil:
		return def, def > 0
	case json.Number:
		s = v.String()
	case float64:
		s = strconv.FormatFloat(v, 'g', -1, 64)
	case int:
		s = strconv.Itoa(v)
	case string:
		s = strings.TrimSuffix(strings.TrimSpace(v), "s")
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}
