// Package segmind is the reelq adapter for Segmind PixelFlow workflows
// (https://api.segmind.com): POST /workflows/{workflow_id} with the
// workflow's inputs as a flat JSON object, then poll the returned poll_url
// (GET /workflows/request/{request_id}) until the run is COMPLETED or FAILED.
//
// Segmind's docs and SDK disagree on the auth header, so both
// "Authorization: Bearer" and "x-api-key" are sent. HTTP 406 means
// "insufficient credits" only when the body says so; the same status is
// used for a wrong Content-Type. A 429 carries no Retry-After; the wait is
// read from x-rate-limit-reset-at-utc.
package segmind

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/segmind/input"
)

// Name is the provider's name in subjects and configuration.
const Name = input.Name

// DefaultBaseURL is Segmind's public API root.
const DefaultBaseURL = "https://api.segmind.com"

const (
	// ResetHeader is the header that says when a 429's window resets.
	ResetHeader = "x-rate-limit-reset-at-utc"
	// MaxRetryAfter bounds a wait read from ResetHeader, so a bogus far
	// future value cannot stall the provider.
	MaxRetryAfter = time.Hour
	// DefaultCreditsPath is the documented balance endpoint.
	DefaultCreditsPath = "/v1/get-user-credits"
)

// Options tune the adapter beyond the shared providers.Config.
// Each field can be set from the environment (SEGMIND_WORKFLOW_ID, ...).
// The options of the input rules (SEGMIND_WORKFLOW_ID, ...) are
// input.Options.
type Options struct {
	// CreditsPath is the balance endpoint under the base URL; default
	// DefaultCreditsPath.
	CreditsPath string `env:"CREDITS_PATH" help:"the balance endpoint under the base URL"`
	// Input are the options of the input rules.
	Input input.Options `env:"-"`
}

// Client talks to one Segmind account.
type Client struct {
	base    string
	key     string
	opts    Options
	poll    *providers.Caller // polls
	submit  *providers.Caller // create: a 404 means the workflow does not exist
	credits *providers.Caller // balance: a failure says nothing about the balance
}

var (
	_ providers.Provider      = (*Client)(nil)
	_ providers.CreditChecker = (*Client)(nil)
)

// New returns a Segmind client.
func New(cfg providers.Config, opts Options) *Client {
	if opts.CreditsPath == "" {
		opts.CreditsPath = DefaultCreditsPath
	}
	c := &Client{base: cfg.Base(DefaultBaseURL), key: cfg.APIKey, opts: opts}
	hc := cfg.Client(c.base)
	caller := func(op string) *providers.Caller {
		return &providers.Caller{
			Provider:   Name,
			Client:     hc,
			Classify:   func(status int, body []byte) error { return classify(op, status, body) },
			Message:    message,
			RetryAfter: retryAfter,
			Secrets:    []string{cfg.APIKey},
		}
	}
	c.poll, c.submit, c.credits = caller("poll"), caller("submit"), caller("credits")
	return c
}

// Name implements providers.Provider.
func (c *Client) Name() string { return Name }

// Validate implements providers.Provider. The input is the workflow's
// flat JSON object of named inputs ({} for workflows without parameters),
// optionally with a workflow_id.
func (c *Client) Validate(raw json.RawMessage) error {
	_, err := input.Parse(raw, c.opts.Input)
	return err
}

// Estimate implements providers.Provider: the workflow's list price per run.
func (c *Client) Estimate(raw json.RawMessage) providers.Cost {
	in, _ := input.Parse(raw, c.opts.Input)
	return input.Price(in, c.opts.Input)
}

// Submit implements providers.Provider: POST /workflows/{workflow_id}.
// Segmind has no client reference or idempotency key, so a lost response
// cannot be recovered; the job id is not sent.
func (c *Client) Submit(ctx context.Context, req providers.Request) (providers.Task, error) {
	in, err := input.Parse(req.Input, c.opts.Input)
	if err != nil {
		return providers.Task{}, err
	}
	id := in.WorkflowID
	body, err := json.Marshal(in.Inputs)
	if err != nil {
		return providers.Task{}, providers.Invalid(Name, "input: %v", err)
	}
	hr, err := http.NewRequest(http.MethodPost, c.base+"/workflows/"+id, bytes.NewReader(body))
	if err != nil {
		return providers.Task{}, fmt.Errorf("segmind submit: %w", err)
	}
	c.auth(hr)
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.submit.Do(ctx, "submit", hr)
	if err != nil {
		return providers.Task{}, err
	}
	var out struct {
		RequestID json.RawMessage `json:"request_id"`
		PollURL   string          `json:"poll_url"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return providers.Task{}, c.submit.UnknownSubmission(resp, "the answer is not the documented JSON object")
	}
	reqID := providers.Scalar(out.RequestID)
	if reqID == "" {
		// A renamed request_id: the poll_url, if it is ours, still names the request.
		reqID = c.requestFromPollURL(out.PollURL)
	}
	if !providers.UsableID(reqID) {
		return providers.Task{}, c.submit.UnknownSubmission(resp, "no usable request_id in the answer")
	}
	return providers.Task{ID: reqID, PollURL: out.PollURL}, nil
}

// requestFromPollURL returns the request id at the end of a poll_url of
// the documented shape {base}/workflows/request/{id} on the API host, or "".
func (c *Client) requestFromPollURL(pollURL string) string {
	if pollURL == "" || c.pollURL(providers.Task{PollURL: pollURL}) != pollURL {
		return ""
	}
	u, err := url.Parse(pollURL)
	if err != nil {
		return ""
	}
	dir, id := path.Split(u.Path)
	if !strings.HasSuffix(dir, "/workflows/request/") {
		return ""
	}
	return id
}

// Poll implements providers.Provider: GET the task's poll_url.
func (c *Client) Poll(ctx context.Context, task providers.Task) (providers.Status, error) {
	hr, err := http.NewRequest(http.MethodGet, c.pollURL(task), nil)
	if err != nil {
		return providers.Status{}, fmt.Errorf("segmind poll: %w", err)
	}
	c.auth(hr)
	resp, err := c.poll.Do(ctx, "poll", hr)
	if err != nil {
		return providers.Status{}, err
	}
	st, err := ParseStatus(resp.Body)
	if err != nil {
		return providers.Status{}, c.poll.Decode("poll", err)
	}
	return st, nil
}

// pollURL returns the poll_url Segmind gave, if it points at the
// configured API host (the key is sent there), else the documented
// /workflows/request/{id} under the base URL.
func (c *Client) pollURL(task providers.Task) string {
	if task.PollURL != "" {
		pu, err1 := url.Parse(task.PollURL)
		bu, err2 := url.Parse(c.base)
		if err1 == nil && err2 == nil && pu.Scheme == bu.Scheme && pu.Host == bu.Host {
			return task.PollURL
		}
	}
	return c.base + "/workflows/request/" + url.PathEscape(task.ID)
}

// CheckCredits implements providers.CreditChecker with GET
// /v1/get-user-credits (Options.CreditsPath): exhausted when both
// balances are spent. A failing or unreadable balance endpoint is
// retryable (or not found), never exhausted credits.
func (c *Client) CheckCredits(ctx context.Context) error {
	hr, err := http.NewRequest(http.MethodGet, c.base+c.opts.CreditsPath, nil)
	if err != nil {
		return fmt.Errorf("segmind credits: %w", err)
	}
	c.auth(hr)
	resp, err := c.credits.Do(ctx, "credits", hr)
	if err != nil {
		return err
	}
	b, err := ParseCredits(resp.Body)
	if err != nil {
		return c.credits.BalanceDecode("credits", resp, err)
	}
	if b.Credits <= 0 && b.FreeCredits <= 0 {
		return &providers.Error{Provider: Name, Op: "credits", Class: providers.ErrCreditsExhausted,
			Message: fmt.Sprintf("credits %g, free-credits %g", b.Credits, b.FreeCredits)}
	}
	return nil
}

// auth sets both documented auth headers: the API pages use Bearer, the
// official SDK x-api-key.
func (c *Client) auth(r *http.Request) {
	r.Header.Set("Authorization", "Bearer "+c.key)
	r.Header.Set("x-api-key", c.key)
}
