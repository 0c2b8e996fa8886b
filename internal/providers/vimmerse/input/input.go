// Package input is Vimmerse's job input, HTTP-free: the typed Input
// (re-exported as reelq.VimmerseInput), the options its rules depend on,
// its validation and its cost estimate. The adapter (package vimmerse)
// sends what Parse returns.
package input

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/providers/kind"
)

// Name is the provider's name in subjects and configuration.
const Name = "vimmerse"

const (
	// DefaultTemplate is the template of a job that names none.
	DefaultTemplate = "overlay_gray_5443"
	// DefaultCredits is the estimate for templates without a published price.
	DefaultCredits money.Micros = 100 * money.Scale
	// TagPrefix starts the job tag the adapter appends to every title.
	TagPrefix = "[reelq:"
)

// VisibilityStatuses are the documented visibility_status values:
// private, unlisted, public.
var VisibilityStatuses = []string{"0", "1", "2"}

// TemplateCredits are the published credit prices per template (the v2
// template catalog); other templates are estimated with DefaultCredits.
var TemplateCredits = map[string]money.Micros{
	"each_createsong_0226":   10 * money.Scale,
	"each_explodedloop_0226": 100 * money.Scale,
	"each_funnydance_0226":   200 * money.Scale,
	"each_moonwalk_0226":     150 * money.Scale,
	"each_ugcproduct_0226":   320 * money.Scale,
}

var templateRe = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,100}$`)

// Options are the provider options the input rules depend on.
type Options struct {
	// DefaultTemplate is used when the input has no template_id.
	DefaultTemplate string `env:"DEFAULT_TEMPLATE" help:"the template of a job that names none"`
	// DefaultCredits estimates templates without a known price.
	DefaultCredits money.Micros `env:"DEFAULT_CREDITS" help:"cost estimate of a template without a published price, in credits"`
	// TemplateCredits adds or overrides prices, e.g. "vim_arctic:120,vim_ces_show:80".
	TemplateCredits map[string]money.Micros `env:"TEMPLATE_CREDITS" help:"template prices in credits, e.g. vim_arctic:120,vim_ces_show:80 (added to the published ones)"`
}

// Input is a Vimmerse workflow (POST /workflow): a template applied to
// images. It costs the template's credits (e.g. each_ugcproduct_0226 320;
// 100, an estimate, for templates without a published price).
type Input struct {
	// TemplateID picks the template (letters, digits, '_', '-', '.');
	// empty means the workers' VIMMERSE_DEFAULT_TEMPLATE (by default
	// overlay_gray_5443).
	TemplateID string `json:"template_id,omitempty"`
	// Options are the template's options, e.g. {"prompt": "...",
	// "motion_type": "Auto", "background_urls": "https://..."}. A job
	// written by hand may give them as a JSON string holding the object.
	Options map[string]any `json:"options,omitempty"`
	// ImageURLs are http(s) URLs of the images the template uses.
	ImageURLs []string `json:"image_urls,omitempty"`
	// Title names the workflow; reelq appends " [reelq:<job id>]" (so it
	// must not contain "[reelq:" itself). Default "reelq job".
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	// VisibilityStatus is "0" (private), "1" (unlisted, the default) or
	// "2" (public).
	VisibilityStatus string `json:"visibility_status,omitempty"`
	// WebhookURL is an http(s) URL Vimmerse calls when done, if the
	// template supports it.
	WebhookURL string `json:"webhook_url,omitempty"`
}

// Provider names the provider that runs the input.
func (Input) Provider() string { return Name }

// Validate checks the input with the rules of a worker running Vimmerse
// with its default options, without a server. The error wraps
// reelq.ErrInvalidJob and names the field at fault.
func (in Input) Validate() error { return kind.ValidateTyped(Kind, in) }

// wire is a job's input as written: options may be a JSON string holding
// the object.
type wire struct {
	Input
	Options json.RawMessage `json:"options,omitempty"`
}

// Parse decodes and checks a job's input under o. The Input it returns
// has its defaults applied (template, visibility "1"), and each of its
// Options is the job's JSON value as written (a json.RawMessage). The
// error names every rule the input breaks, not only the first.
func Parse(raw json.RawMessage, o Options) (Input, error) {
	var w wire
	if err := kind.StrictDecode(raw, &w); err != nil {
		return Input{}, kind.Invalid(Name, "input: %v", err)
	}
	in := w.Input
	if in.TemplateID == "" {
		in.TemplateID = o.DefaultTemplate
	}
	if in.TemplateID == "" {
		in.TemplateID = DefaultTemplate
	}
	bad := kind.Problems{Provider: Name}
	if !templateRe.MatchString(in.TemplateID) {
		bad.Add("input.template_id %q is not a template id", in.TemplateID)
	}
	if opts, err := objectOptions(w.Options); err != nil {
		bad.Add("input.options must be a JSON object of template options: %v", err)
	} else {
		in.Options = opts
	}
	for i, u := range in.ImageURLs {
		if !httpURL(u) {
			bad.Add("input.image_urls[%d] %q is not an http(s) URL", i, u)
		}
	}
	if in.VisibilityStatus == "" {
		in.VisibilityStatus = "1"
	}
	if !slices.Contains(VisibilityStatuses, in.VisibilityStatus) {
		bad.Add("input.visibility_status %q is not one of \"0\" (private), \"1\" (unlisted), \"2\" (public)", in.VisibilityStatus)
	}
	if in.WebhookURL != "" && !httpURL(in.WebhookURL) {
		bad.Add("input.webhook_url %q is not an http(s) URL", in.WebhookURL)
	}
	if strings.Contains(in.Title, TagPrefix) {
		bad.Add("input.title must not contain %q: reelq adds that tag itself", TagPrefix)
	}
	return in, bad.Err()
}

// objectOptions returns options as a map of raw values ({} if absent),
// unwrapping a JSON string that holds an object.
func objectOptions(raw json.RawMessage) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	out := map[string]any{}
	if len(raw) == 0 || string(raw) == "null" {
		return out, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		raw = bytes.TrimSpace([]byte(s))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, errors.New("not an object")
	}
	for k, v := range m {
		out[k] = v
	}
	return out, nil
}

// Price is the template's credit price: a configured one, a published
// one, or o.DefaultCredits.
func Price(in Input, o Options) kind.Cost {
	if p, ok := o.TemplateCredits[in.TemplateID]; ok {
		return kind.Cost{Amount: p.Float(), Unit: "credits", Basis: "configured price of template " + in.TemplateID}
	}
	if p, ok := TemplateCredits[in.TemplateID]; ok {
		return kind.Cost{Amount: p.Float(), Unit: "credits", Basis: "published price of template " + in.TemplateID}
	}
	d := o.DefaultCredits
	if d <= 0 {
		d = DefaultCredits
	}
	return kind.Cost{Amount: d.Float(), Unit: "credits", Basis: fmt.Sprintf("estimate: no published price for template %s", in.TemplateID)}
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

//go:embed schema.json
var schema []byte

// Kind is Vimmerse as the public package knows it.
var Kind = kind.New(kind.Kind{Name: Name, Title: "Vimmerse", Unit: "credits", Cancelable: true, Schema: schema}, Parse, Price)
