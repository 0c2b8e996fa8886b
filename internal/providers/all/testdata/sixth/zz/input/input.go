// Package input is the throwaway provider zz's job input: a prompt and a
// length in seconds, 2 credits a second.
package input

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/providers/kind"
)

// Name is the provider's name.
const Name = "zz"

// Options are the options of the rules (ZZ_CREDITS_PER_SECOND).
type Options struct {
	CreditsPerSecond money.Micros `env:"CREDITS_PER_SECOND" help:"credits one second of clip costs"`
}

// Input is a clip for zz.
type Input struct {
	// Prompt describes the clip: required.
	Prompt string `json:"prompt"`
	// Seconds is the clip's length, 1 to 60.
	Seconds int `json:"seconds"`
}

// Provider names the provider that runs the input.
func (Input) Provider() string { return Name }

// Validate checks the input with the default options.
func (in Input) Validate() error { return kind.ValidateTyped(Kind, in) }

// Parse decodes and checks a job's input, naming every rule it breaks.
func Parse(raw json.RawMessage, _ Options) (Input, error) {
	var in Input
	if err := kind.StrictDecode(raw, &in); err != nil {
		return in, kind.Invalid(Name, "input: %v", err)
	}
	bad := kind.Problems{Provider: Name}
	if strings.TrimSpace(in.Prompt) == "" {
		bad.Add("input.prompt is required")
	}
	if in.Seconds < 1 || in.Seconds > 60 {
		bad.Add("input.seconds is %d; it must be 1 to 60", in.Seconds)
	}
	return in, bad.Err()
}

// Price is CreditsPerSecond (default 2) a second, taken in micros.
func Price(in Input, o Options) kind.Cost {
	if o.CreditsPerSecond <= 0 {
		o.CreditsPerSecond = 2 * money.Scale
	}
	amount := o.CreditsPerSecond * money.Micros(in.Seconds)
	return kind.Cost{Amount: amount.Float(), Unit: "credits", Basis: fmt.Sprintf("%s credits/s x %d s", o.CreditsPerSecond, in.Seconds)}
}

//go:embed schema.json
var schema []byte

// Kind is zz as the public package knows it.
var Kind = kind.New(kind.Kind{Name: Name, Title: "ZZ", Unit: "credits", Schema: schema}, Parse, Price)
