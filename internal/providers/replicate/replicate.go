// Package replicate is the reelq adapter for Replicate's predictions API
// (https://api.replicate.com/v1): POST /models/{owner}/{name}/predictions
// (an official model) or POST /predictions with a version, then GET the
// prediction until it is succeeded, failed, canceled or aborted. A model's
// failure is not an HTTP error but status failed with an error.
//
// Replicate deletes an API prediction's output files after about an
// hour, so its Spec says so (LinkExpiry) and the worker archives at once.
package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/providers/replicate/input"
)

// Name is the provider's name in subjects and configuration.
const Name = input.Name

// DefaultBaseURL is Replicate's API root.
const DefaultBaseURL = "https://api.replicate.com/v1"

// Options tune the adapter beyond the shared providers.Config. The
// options of the input rules (REPLICATE_SCHEMA_DIR, ...) are
// input.Options.
type Options struct {
	// CancelAfter is sent as Cancel-After (Replicate's deadline, "30m"):
	// a prediction not finished by then is canceled, or aborted unbilled
	// if it never started. Empty sends none.
	CancelAfter string `env:"CANCEL_AFTER" help:"deadline sent with each prediction as Cancel-After (e.g. 30m); empty: none"`
	// WebhookSecret checks Replicate's signed webhooks
	// (REPLICATE_CALLBACKS).
	WebhookSecret     string `env:"WEBHOOK_SECRET" help:"the account's webhook signing secret, whsec_... (GET /v1/webhooks/default/secret); required with REPLICATE_CALLBACKS=true"`
	WebhookSecretFile string `env:"WEBHOOK_SECRET_FILE" help:"file holding REPLICATE_WEBHOOK_SECRET"`
	// Input are the options of the input rules.
	Input input.Options `env:"-"`
}

// Client talks to one Replicate account.
type Client struct {
	base   string
	key    string
	opts   Options
	caller *providers.Caller
}

var (
	_ providers.Provider = (*Client)(nil)
	_ providers.Canceler = (*Client)(nil)
)

// New returns a Replicate client.
func New(cfg providers.Config, opts Options) *Client {
	c := &Client{base: cfg.Base(DefaultBaseURL), key: cfg.APIKey, opts: opts}
	c.caller = &providers.Caller{
		Provider: Name,
		Client:   cfg.Client(c.base),
		Classify: classify,
		Message:  message,
		Secrets:  []string{cfg.APIKey},
	}
	return c
}

// Name implements providers.Provider.
func (c *Client) Name() string { return Name }

// Validate implements providers.Provider: the model's schema.
func (c *Client) Validate(raw json.RawMessage) error {
	_, err := input.Parse(raw, c.opts.Input)
	return err
}

// Estimate implements providers.Provider from the price table.
func (c *Client) Estimate(raw json.RawMessage) providers.Cost {
	in, _ := input.Parse(raw, c.opts.Input)
	return input.Price(in, c.opts.Input)
}

// Submit implements providers.Provider: create the prediction, without
// Prefer: wait (reelq polls).
func (c *Client) Submit(ctx context.Context, req providers.Request) (providers.Task, error) {
	in, err := input.Parse(req.Input, c.opts.Input)
	if err != nil {
		return providers.Task{}, err
	}
	body := map[string]any{"input": in.Input}
	if req.CallbackURL != "" {
		// Only the end: the start and the outputs would wake a poll that
		// finds the prediction still running.
		body["webhook"], body["webhook_events_filter"] = req.CallbackURL, []string{"completed"}
	}
	u := c.base + "/predictions"
	if in.Version == "" {
		u = c.base + "/models/" + in.Model + "/predictions"
	} else {
		body["version"] = in.Version
	}
	b, err := kind.EncodeJSON(body)
	if err != nil {
		return providers.Task{}, providers.Invalid(Name, "input.input: %v", err)
	}
	hr, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return providers.Task{}, fmt.Errorf("replicate submit: %w", err)
	}
	c.auth(hr)
	hr.Header.Set("Content-Type", "application/json")
	if c.opts.CancelAfter != "" {
		hr.Header.Set("Cancel-After", c.opts.CancelAfter)
	}
	resp, err := c.caller.Do(ctx, "submit", hr)
	if pe, ok := err.(*providers.Error); ok && pe.StatusCode >= 500 {
		// Replicate's clients retry a create only after a 429: a 5xx may
		// come after the prediction was created.
		pe.Ambiguous = true
	}
	if err != nil {
		return providers.Task{}, err
	}
	var p prediction
	if err := json.Unmarshal(resp.Body, &p); err != nil {
		return providers.Task{}, c.caller.UnknownSubmission(resp, "the answer is not the documented prediction object")
	}
	if !providers.UsableID(p.ID) || strings.ContainsAny(p.ID, "/?#") {
		return providers.Task{}, c.caller.UnknownSubmission(resp, "no usable id in the prediction")
	}
	t := providers.Task{ID: p.ID}
	if providers.SameOrigin(c.base, p.URLs.Get) {
		t.PollURL = p.URLs.Get
	}
	if providers.SameOrigin(c.base, p.URLs.Cancel) {
		t.CancelURL = p.URLs.Cancel
	}
	return t, nil
}

// Poll implements providers.Provider: GET the prediction.
func (c *Client) Poll(ctx context.Context, t providers.Task) (providers.Status, error) {
	u := t.PollURL
	if u == "" {
		u = c.base + "/predictions/" + url.PathEscape(t.ID)
	}
	hr, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return providers.Status{}, fmt.Errorf("replicate poll: %w", err)
	}
	c.auth(hr)
	resp, err := c.caller.Do(ctx, "poll", hr)
	if err != nil {
		return providers.Status{}, err
	}
	st, err := ParsePrediction(resp.Body)
	if err != nil {
		return providers.Status{}, c.caller.Decode("poll", err)
	}
	return st, nil
}

// Cancel implements providers.Canceler: POST the cancel URL. A finished
// prediction is answered unchanged, which is no error.
func (c *Client) Cancel(ctx context.Context, t providers.Task) error {
	u := t.CancelURL
	if u == "" {
		u = c.base + "/predictions/" + url.PathEscape(t.ID) + "/cancel"
	}
	hr, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("replicate cancel: %w", err)
	}
	c.auth(hr)
	_, err = c.caller.Do(ctx, "cancel", hr)
	return err
}

func (c *Client) auth(r *http.Request) { r.Header.Set("Authorization", "Bearer "+c.key) }
