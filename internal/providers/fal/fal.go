// Package fal is the reelq adapter for fal.ai's queue API
// (https://queue.fal.run): POST /{model} with the model's input as the
// body, then GET the status URL the answer gives until COMPLETED, then GET
// the response URL, which carries the model's output or its error (fal
// has no failure status: a failed request is COMPLETED too).
//
// Status, response and cancel URLs use the model's owner/app without the
// subpath; the adapter stores the ones the submit answer gives (when they
// are on the base URL's host, where the key may go) and derives them from
// the task id, <owner>/<app>/requests/<request_id>, otherwise.
package fal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/fal/input"
	"github.com/reelq/reelq/internal/providers/kind"
)

// Name is the provider's name in subjects and configuration.
const Name = input.Name

// DefaultBaseURL is fal's queue host.
const DefaultBaseURL = "https://queue.fal.run"

// DefaultOutputLifetime is how long fal is asked to keep a job's output
// files (X-Fal-Object-Lifecycle-Preference): long enough for the archive
// to copy them even after a worker outage.
const DefaultOutputLifetime = 7 * 24 * time.Hour

// Options tune the adapter beyond the shared providers.Config. The
// options of the input rules (FAL_SCHEMA_DIR, ...) are input.Options.
type Options struct {
	OutputLifetime time.Duration `env:"OUTPUT_LIFETIME" helpDefault:"168h" help:"how long fal keeps a job's output files (sent as X-Fal-Object-Lifecycle-Preference); must outlast the archive"`
	// JWKSURL is where fal's webhook keys are fetched (FAL_CALLBACKS).
	JWKSURL string `env:"JWKS_URL" help:"where fal publishes the keys its webhooks are signed with (with FAL_CALLBACKS=true)" helpDefault:"https://rest.alpha.fal.ai/.well-known/jwks.json"`
	// Input are the options of the input rules.
	Input input.Options `env:"-"`
}

// Client talks to one fal account.
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

// New returns a fal client.
func New(cfg providers.Config, opts Options) *Client {
	if opts.OutputLifetime <= 0 {
		opts.OutputLifetime = DefaultOutputLifetime
	}
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

// Submit implements providers.Provider: POST /{model} with the model's
// input as the body, asking fal to keep the outputs OutputLifetime, and
// with the job's callback URL (if any) as fal_webhook.
func (c *Client) Submit(ctx context.Context, req providers.Request) (providers.Task, error) {
	in, err := input.Parse(req.Input, c.opts.Input)
	if err != nil {
		return providers.Task{}, err
	}
	body, err := kind.EncodeJSON(in.Input)
	if err != nil {
		return providers.Task{}, providers.Invalid(Name, "input.input: %v", err)
	}
	u := c.base + "/" + in.Model
	if req.CallbackURL != "" {
		u += "?fal_webhook=" + url.QueryEscape(req.CallbackURL)
	}
	hr, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return providers.Task{}, fmt.Errorf("fal submit: %w", err)
	}
	c.auth(hr)
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("X-Fal-Object-Lifecycle-Preference", fmt.Sprintf(`{"expiration_duration_seconds": %d}`, int64(c.opts.OutputLifetime/time.Second)))
	resp, err := c.caller.Do(ctx, "submit", hr)
	if err != nil {
		return providers.Task{}, err
	}
	var out struct {
		RequestID   string `json:"request_id"`
		StatusURL   string `json:"status_url"`
		ResponseURL string `json:"response_url"`
		CancelURL   string `json:"cancel_url"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return providers.Task{}, c.caller.UnknownSubmission(resp, "the answer is not the documented JSON object")
	}
	if !providers.UsableID(out.RequestID) || strings.Contains(out.RequestID, "/") {
		return providers.Task{}, c.caller.UnknownSubmission(resp, "no usable request_id in the answer")
	}
	t := providers.Task{ID: input.App(in.Model) + "/requests/" + out.RequestID}
	t.PollURL = c.stored(out.StatusURL)
	t.ResultURL = c.stored(out.ResponseURL)
	t.CancelURL = c.stored(out.CancelURL)
	return t, nil
}

// stored keeps a URL of the submit answer if the key may go there.
func (c *Client) stored(u string) string {
	if u != "" && providers.SameOrigin(c.base, u) {
		return u
	}
	return ""
}

// url is the task's stored URL, or the one its id gives (suffix after
// base/<owner>/<app>/requests/<id>).
func (c *Client) url(stored string, t providers.Task, suffix string) string {
	if stored != "" {
		return stored
	}
	return c.base + "/" + t.ID + suffix
}

// Poll implements providers.Provider: GET the status; once COMPLETED, GET
// the response, whose HTTP status is the model's own.
func (c *Client) Poll(ctx context.Context, t providers.Task) (providers.Status, error) {
	hr, err := http.NewRequest(http.MethodGet, c.url(t.PollURL, t, "/status"), nil)
	if err != nil {
		return providers.Status{}, fmt.Errorf("fal poll: %w", err)
	}
	c.auth(hr)
	resp, err := c.caller.Do(ctx, "poll", hr)
	if err != nil {
		return providers.Status{}, hint(err, t)
	}
	var s struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(resp.Body, &s); err != nil {
		return providers.Status{}, c.caller.Decode("poll", err)
	}
	st := providers.Status{Raw: strings.ToUpper(s.Status), Progress: -1}
	if st.Raw != "COMPLETED" {
		if st.Raw == "" {
			st.Raw = "IN_QUEUE"
		}
		return st, nil
	}
	return c.result(ctx, t)
}

// result fetches a COMPLETED request's response.
func (c *Client) result(ctx context.Context, t providers.Task) (providers.Status, error) {
	hr, err := http.NewRequest(http.MethodGet, c.url(t.ResultURL, t, ""), nil)
	if err != nil {
		return providers.Status{}, fmt.Errorf("fal result: %w", err)
	}
	c.auth(hr)
	resp, err := c.caller.Do(ctx, "result", hr)
	if err != nil {
		return resultError(err)
	}
	outs, err := ParseOutput(resp.Body)
	if err != nil {
		return providers.Status{}, c.caller.Decode("result", err)
	}
	st := providers.Status{Raw: "COMPLETED", Progress: 100, State: providers.Succeeded, Outputs: outs}
	if len(outs) == 0 {
		st.State, st.Outputs = providers.Failed, nil
		st.Err = &providers.Error{Provider: Name, Op: "result", Class: providers.ErrTaskFailed, Message: "the model answered without an output file: " + providers.ClipText(string(resp.Body), 200)}
	}
	return providers.Vet(Name, st), nil
}

// resultError turns a failed response call into the task's outcome: the
// model's error fails the task (a 4xx, a 500, or another 5xx with fal's
// error_type: fal has already retried runner failures; a 422 is invalid
// input, 499 a cancelled request), a 400 without fal's error_type means
// not finished yet, and a rate limit, auth failure, 404 or a gateway's
// 502-504 is the call's, retried by the worker.
func resultError(err error) (providers.Status, error) {
	pe, ok := err.(*providers.Error)
	if !ok {
		return providers.Status{}, err
	}
	switch {
	case pe.StatusCode == http.StatusBadRequest && !strings.Contains(pe.Message, "error_type="):
		// "not completed yet": the status ran ahead of the response.
		return providers.Status{Raw: "COMPLETED", Progress: -1}, nil
	case pe.StatusCode == http.StatusTooManyRequests, pe.StatusCode == http.StatusNotFound, pe.StatusCode == 0,
		pe.Class == providers.ErrAuth, pe.Class == providers.ErrCreditsExhausted:
		return providers.Status{}, err
	case pe.StatusCode > 500 && !strings.Contains(pe.Message, "error_type="):
		// A gateway's 502, 503 or 504 without fal's request-error body.
		return providers.Status{}, err
	}
	class := providers.ErrTaskFailed
	if pe.StatusCode == http.StatusUnprocessableEntity {
		class = providers.ErrInvalidInput
	}
	fail := &providers.Error{Provider: Name, Op: "result", StatusCode: pe.StatusCode, Class: class, Message: pe.Message}
	raw := "ERROR"
	if pe.StatusCode == 499 {
		raw = "CANCELLED"
	}
	return providers.Status{State: providers.Failed, Raw: raw, Progress: -1, Err: fail}, nil
}

// hint adds the task id's form to a 404 for an id that lacks it (an
// operator's resolve --task).
func hint(err error, t providers.Task) error {
	pe, ok := err.(*providers.Error)
	if ok && pe.Class == providers.ErrNotFound && t.PollURL == "" && !strings.Contains(t.ID, "/requests/") {
		pe.Message += " (a fal task is named <owner>/<app>/requests/<request_id>)"
	}
	return err
}

// Cancel implements providers.Canceler: PUT the cancel URL. A request
// that already completed (400 ALREADY_COMPLETED) has nothing to cancel.
func (c *Client) Cancel(ctx context.Context, t providers.Task) error {
	hr, err := http.NewRequest(http.MethodPut, c.url(t.CancelURL, t, "/cancel"), nil)
	if err != nil {
		return fmt.Errorf("fal cancel: %w", err)
	}
	c.auth(hr)
	_, err = c.caller.Do(ctx, "cancel", hr)
	if pe, ok := err.(*providers.Error); ok && pe.StatusCode == http.StatusBadRequest {
		return nil
	}
	return err
}

func (c *Client) auth(r *http.Request) { r.Header.Set("Authorization", "Key "+c.key) }
