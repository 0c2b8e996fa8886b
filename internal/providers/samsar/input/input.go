// Package input is Samsar's job input, HTTP-free: the typed Input
// (re-exported as reelq.SamsarInput), the options its rules depend on,
// its validation and its cost estimate. The adapter (package samsar)
// sends what Parse returns.
package input

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/providers/kind"
)

// Name is the provider's name in subjects and configuration.
const Name = "samsar"

// Documented limits of the create_movie endpoint (seed, March 2025).
const (
	MaxPromptChars   = 500
	MaxDuration      = 120
	CreditsPerSecond = 10
)

// Model keys accepted by create_movie (seed). They change often, so
// Options can replace them.
var (
	DefaultImageModels = []string{"FLUX1.1PRO", "IMAGEN3"}
	DefaultVideoModels = []string{"LUMA", "KLINGIMGTOVIDPRO", "PIXVERSEI2V", "WAN2.1", "VEOI2V"}
	AspectRatios       = []string{"16:9", "9:16"}
)

// Options are the provider options the input rules depend on, read from
// SAMSAR_IMAGE_MODELS and SAMSAR_VIDEO_MODELS (comma-separated).
type Options struct {
	ImageModels []string `env:"IMAGE_MODELS" help:"image model keys a job may name (replaces the documented list)"`
	VideoModels []string `env:"VIDEO_MODELS" help:"video model keys a job may name (replaces the documented list)"`
}

func (o Options) withDefaults() Options {
	if len(o.ImageModels) == 0 {
		o.ImageModels = DefaultImageModels
	}
	if len(o.VideoModels) == 0 {
		o.VideoModels = DefaultVideoModels
	}
	return o
}

// Input is a movie for Samsar (POST /v1/video/create_movie). It costs 10
// credits per second of Duration.
type Input struct {
	// Prompt describes the movie: required, at most 500 characters.
	Prompt string `json:"prompt"`
	// ImageModel is required: FLUX1.1PRO or IMAGEN3 (SAMSAR_IMAGE_MODELS
	// on the workers replaces the list).
	ImageModel string `json:"image_model"`
	// VideoModel is required: LUMA, KLINGIMGTOVIDPRO, PIXVERSEI2V, WAN2.1
	// or VEOI2V (SAMSAR_VIDEO_MODELS replaces the list).
	VideoModel string `json:"video_model"`
	// Duration is the movie's length in seconds: required, above 0, at
	// most 120.
	Duration float64 `json:"duration,omitempty"`
	// AspectRatio is 16:9 or 9:16; empty leaves it to Samsar.
	AspectRatio string `json:"aspect_ratio,omitempty"`
	// Tone and VideoModelSubType exist in later versions of Samsar's API
	// and are passed through when set.
	Tone              string `json:"tone,omitempty"`
	VideoModelSubType string `json:"video_model_sub_type,omitempty"`
	// WebhookURL is an http(s) URL Samsar calls when the movie is done
	// (reelq polls either way). A job written by hand may spell it
	// webhook_url.
	WebhookURL string `json:"webhookUrl,omitempty"`
}

// Provider names the provider that runs the input.
func (Input) Provider() string { return Name }

// Validate checks the input with the rules of a worker running Samsar with
// its default options, without a server. The error wraps
// reelq.ErrInvalidJob and names the field at fault.
func (in Input) Validate() error { return kind.ValidateTyped(Kind, in) }

// wire is a job's input as written: duration must be present, and the
// webhook may be spelt webhook_url.
type wire struct {
	Input
	Duration    *float64 `json:"duration"`
	WebhookURL2 string   `json:"webhook_url,omitempty"`
}

// Parse decodes and checks a job's input under o. The error names every
// rule the input breaks, not only the first.
func Parse(raw json.RawMessage, o Options) (Input, error) {
	o = o.withDefaults()
	var w wire
	if err := kind.StrictDecode(raw, &w); err != nil {
		return Input{}, kind.Invalid(Name, "input: %v", err)
	}
	in := w.Input
	bad := kind.Problems{Provider: Name}
	switch n := utf8.RuneCountInString(in.Prompt); {
	case strings.TrimSpace(in.Prompt) == "":
		bad.Add("input.prompt is required")
	case n > MaxPromptChars:
		bad.Add("input.prompt is %d characters; the limit is %d", n, MaxPromptChars)
	}
	oneOf(&bad, "image_model", in.ImageModel, o.ImageModels)
	oneOf(&bad, "video_model", in.VideoModel, o.VideoModels)
	switch {
	case w.Duration == nil:
		bad.Add("input.duration is required (seconds, at most %d)", MaxDuration)
	case *w.Duration <= 0:
		bad.Add("input.duration must be positive, got %g", *w.Duration)
	case *w.Duration > MaxDuration:
		bad.Add("input.duration is %g s; the limit is %d s", *w.Duration, MaxDuration)
	default:
		in.Duration = *w.Duration
	}
	if in.AspectRatio != "" && !slices.Contains(AspectRatios, in.AspectRatio) {
		bad.Add("input.aspect_ratio %q is not one of %s", in.AspectRatio, strings.Join(AspectRatios, ", "))
	}
	if in.WebhookURL == "" {
		in.WebhookURL = w.WebhookURL2
	}
	if in.WebhookURL != "" {
		if u, err := url.Parse(in.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad.Add("input.webhookUrl %q is not an http(s) URL", in.WebhookURL)
		}
	}
	return in, bad.Err()
}

func oneOf(bad *kind.Problems, field, v string, allowed []string) {
	switch {
	case v == "":
		bad.Add("input.%s is required (one of %s)", field, strings.Join(allowed, ", "))
	case !slices.Contains(allowed, v):
		bad.Add("input.%s %q is not one of %s", field, v, strings.Join(allowed, ", "))
	}
}

// Price is 10 credits per generated second, taken in micros.
func Price(in Input, _ Options) kind.Cost {
	amount := money.FromFloat(in.Duration) * CreditsPerSecond
	return kind.Cost{Amount: amount.Float(), Unit: "credits", Basis: fmt.Sprintf("%d credits/s x %g s", CreditsPerSecond, in.Duration)}
}

//go:embed schema.json
var schema []byte

// Kind is Samsar as the public package knows it.
var Kind = kind.New(kind.Kind{Name: Name, Title: "Samsar", Unit: "credits", Schema: schema}, Parse, Price)
