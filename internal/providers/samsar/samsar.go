// Package samsar is the reelq adapter for Samsar's movie API
// (https://api.samsar.one): POST /v1/video/create_movie, then poll
// GET /v1/video/status?request_id= until the movie is COMPLETED.
//
// Samsar's API has moved (create_movie became /v1/video/create and
// /v1/video/text_to_video; status moved to /v1/status), so paths and model
// keys are configuration, and responses are read in every documented shape.
package samsar

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/samsar/input"
)

// Name is the provider's name in subjects and configuration.
const Name = input.Name

// DefaultBaseURL is Samsar's public API root.
const DefaultBaseURL = "https://api.samsar.one"

// Paths of the seed's endpoints; Samsar has moved them since, so Options
// can replace them.
const (
	DefaultCreatePath = "/v1/video/create_movie"
	DefaultStatusPath = "/v1/video/status"
	// DefaultCreditsPath is the current server's balance endpoint.
	DefaultCreditsPath = "/v1/credits"
)

// Options tune the adapter beyond the shared providers.Config.
// Each field can be set from the environment (SAMSAR_CREATE_PATH, ...).
// The options of the input rules (SAMSAR_VIDEO_MODELS, ...) are
// input.Options.
type Options struct {
	CreatePath  string `env:"CREATE_PATH" help:"the create endpoint under the base URL (the seed's; later /v1/video/create)"`
	StatusPath  string `env:"STATUS_PATH" help:"the status endpoint under the base URL (the seed's; later /v1/status)"`
	CreditsPath string `env:"CREDITS_PATH" help:"the balance endpoint under the base URL"`
	// Input are the options of the input rules.
	Input input.Options `env:"-"`
}

// Client talks to one Samsar account.
type Client struct {
	base    string
	key     string
	opts    Options
	caller  *providers.Caller
	credits *providers.Caller // balance: a failure says nothing about the balance
}

var (
	_ providers.Provider      = (*Client)(nil)
	_ providers.CreditChecker = (*Client)(nil)
)

// New returns a Samsar client.
func New(cfg providers.Config, opts Options) *Client {
	if opts.CreatePath == "" {
		opts.CreatePath = DefaultCreatePath
	}
	if opts.StatusPath == "" {
		opts.StatusPath = DefaultStatusPath
	}
	if opts.CreditsPath == "" {
		opts.CreditsPath = DefaultCreditsPath
	}
	c := &Client{base: cfg.Base(DefaultBaseURL), key: cfg.APIKey, opts: opts}
	hc := cfg.Client(c.base)
	c.caller = &providers.Caller{
		Provider: Name,
		Client:   hc,
		Classify: classify,
		Message:  message,
		Secrets:  []string{cfg.APIKey},
	}
	c.credits = &providers.Caller{
		Provider: Name,
		Client:   hc,
		Classify: func(status int, body []byte) error { return providers.ClassifyBalance(status, message(body)) },
		Message:  message,
		Secrets:  []string{cfg.APIKey},
	}
	return c
}

// Name implements providers.Provider.
func (c *Client) Name() string { return Name }

// Validate implements providers.Provider with the create_movie rules.
func (c *Client) Validate(raw json.RawMessage) error {
	_, err := input.Parse(raw, c.opts.Input)
	return err
}

// Estimate implements providers.Provider: 10 credits per generated second.
func (c *Client) Estimate(raw json.RawMessage) providers.Cost {
	in, _ := input.Parse(raw, c.opts.Input)
	return input.Price(in, c.opts.Input)
}

type createBody struct {
	Input      createInput `json:"input"`
	WebhookURL string      `json:"webhookUrl,omitempty"`
}

type createInput struct {
	Prompt      string  `json:"prompt"`
	AspectRatio string  `json:"aspect_ratio,omitempty"`
	ImageModel  string  `json:"image_model"`
	VideoModel  string  `json:"video_model"`
	Duration    float64 `json:"duration"`
	Tone        string  `json:"tone,omitempty"`
	SubType     string  `json:"video_model_sub_type,omitempty"`
}

// Submit implements providers.Provider: POST create_movie. The job id goes
// in the Idempotency-Key header, which Samsar's SDK sends; whether the
// server honours it is not documented.
func (c *Client) Submit(ctx context.Context, req providers.Request) (providers.Task, error) {
	in, err := input.Parse(req.Input, c.opts.Input)
	if err != nil {
		return providers.Task{}, err
	}
	body, _ := json.Marshal(createBody{
		Input: createInput{Prompt: in.Prompt, AspectRatio: in.AspectRatio, ImageModel: in.ImageModel, VideoModel: in.VideoModel, Duration: in.Duration, Tone: in.Tone, SubType: in.VideoModelSubType},
		// One URL per movie: the job's own, if its input names one (it
		// keeps working as documented; the job is then found done by
		// polling), else reelq's callback URL.
		WebhookURL: cmp.Or(in.WebhookURL, req.CallbackURL),
	})
	hr, err := http.NewRequest(http.MethodPost, c.base+c.opts.CreatePath, bytes.NewReader(body))
	if err != nil {
		return providers.Task{}, fmt.Errorf("samsar submit: %w", err)
	}
	c.auth(hr)
	hr.Header.Set("Content-Type", "application/json")
	if req.JobID != "" {
		hr.Header.Set("Idempotency-Key", req.JobID)
	}
	resp, err := c.caller.Do(ctx, "submit", hr)
	if err != nil {
		return providers.Task{}, err
	}
	var out struct {
		RequestID json.RawMessage `json:"request_id"`
		SessionID json.RawMessage `json:"session_id"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return providers.Task{}, c.caller.UnknownSubmission(resp, "the answer is not the documented JSON object")
	}
	id := providers.FirstNonEmpty(providers.Scalar(out.RequestID), providers.Scalar(out.SessionID))
	if !providers.UsableID(id) {
		return providers.Task{}, c.caller.UnknownSubmission(resp, "no usable request_id or session_id in the answer")
	}
	return providers.Task{ID: id}, nil
}

// Poll implements providers.Provider: GET status?request_id=.
func (c *Client) Poll(ctx context.Context, task providers.Task) (providers.Status, error) {
	u := c.base + c.opts.StatusPath + "?request_id=" + url.QueryEscape(task.ID)
	hr, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return providers.Status{}, fmt.Errorf("samsar poll: %w", err)
	}
	c.auth(hr)
	resp, err := c.caller.Do(ctx, "poll", hr)
	if err != nil {
		return providers.Status{}, err
	}
	st, err := ParseStatus(resp.Body)
	if err != nil {
		return providers.Status{}, c.caller.Decode("poll", err)
	}
	return st, nil
}

// CheckCredits implements providers.CreditChecker with GET /v1/credits
// (Options.CreditsPath). A failing endpoint, or an answer without a
// numeric remainingCredits, is retryable (or not found): never exhausted
// credits, and never a healthy balance.
func (c *Client) CheckCredits(ctx context.Context) error {
	hr, err := http.NewRequest(http.MethodGet, c.base+c.opts.CreditsPath, nil)
	if err != nil {
		return fmt.Errorf("samsar credits: %w", err)
	}
	c.auth(hr)
	resp, err := c.credits.Do(ctx, "credits", hr)
	if err != nil {
		return err
	}
	var out struct {
		RemainingCredits *float64 `json:"remainingCredits"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return c.credits.BalanceDecode("credits", resp, err)
	}
	if out.RemainingCredits == nil {
		return c.credits.BalanceDecode("credits", resp, errors.New("no remainingCredits"))
	}
	if *out.RemainingCredits <= 0 {
		return &providers.Error{Provider: Name, Op: "credits", Class: providers.ErrCreditsExhausted, Message: fmt.Sprintf("remainingCredits is %g", *out.RemainingCredits)}
	}
	return nil
}

func (c *Client) auth(r *http.Request) { r.Header.Set("Authorization", "Bearer "+c.key) }

// ParseStatus reads a status response in any documented shape: the seed's
// {status, details, result:{url}}, the June 2025 {status, url}, and the
// current server's {status, result_url, result_urls, remoteURL, videoLink}.
func ParseStatus(body []byte) (providers.Status, error) {
	var r struct {
		Status    string          `json:"status"`
		Message   json.RawMessage `json:"message"`
		Error     json.RawMessage `json:"expressGenerationError"`
		Progress  *float64        `json:"progress"`
		URL       string          `json:"url"`
		ResultURL string          `json:"result_url"`
		Results   []string        `json:"result_urls"`
		RemoteURL string          `json:"remoteURL"`
		VideoLink string          `json:"videoLink"`
		VideoLnk2 string          `json:"video_link"`
		Result    json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return providers.Status{}, err
	}
	var res struct {
		URL      string `json:"url"`
		VideoURL string `json:"videoUrl"`
	}
	if len(r.Result) > 0 && r.Result[0] == '{' {
		_ = json.Unmarshal(r.Result, &res)
	}
	link := providers.FirstNonEmpty(res.URL, res.VideoURL, r.URL, r.ResultURL, first(r.Results), r.RemoteURL, r.VideoLink, r.VideoLnk2)
	raw := strings.ToUpper(strings.TrimSpace(r.Status))
	if raw == "" {
		raw = "PENDING" // the SDK's default
	}
	st := providers.Status{Raw: raw, Progress: -1}
	if r.Progress != nil {
		st.Progress = *r.Progress
	}
	switch raw {
	case "COMPLETED":
		if link == "" {
			// Samsar itself reports COMPLETED only with a URL; without one the
			// render is still finishing.
			return st, nil
		}
		st.State = providers.Succeeded
		st.Progress = 100
		st.Outputs = []providers.Output{{URL: link, ContentType: "video/mp4", Name: "video"}}
		st = providers.Vet(Name, st)
	case "FAILED", "CANCELLED":
		st.State = providers.Failed
		msg := providers.FirstNonEmpty(providers.Text(r.Message), providers.Text(r.Error))
		if msg == "" {
			msg = "status " + raw
		}
		st.Err = &providers.Error{Provider: Name, Op: "poll", Class: providers.ErrTaskFailed, Message: msg}
	}
	return st, nil
}

// classify maps a non-2xx response. Samsar answers 400 for a missing key;
// its 403 means a wrong kind of credential (the key: auth) or a session
// that belongs to another user (this job: forbidden), told apart by the
// message.
func classify(status int, body []byte) error {
	switch status {
	case http.StatusBadRequest:
		m := strings.ToLower(message(body))
		if strings.Contains(m, "api key") || strings.Contains(m, "api_key") || strings.Contains(m, "authorization") {
			return providers.ErrAuth
		}
	case http.StatusForbidden:
		return providers.ClassifyForbidden(message(body))
	}
	return providers.ClassifyStatus(status)
}

func message(body []byte) string {
	var m struct {
		Message json.RawMessage `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	return providers.FirstNonEmpty(providers.Text(m.Message), providers.Text(m.Error))
}

func first(s []string) string {
	if len(s) > 0 {
		return s[0]
	}
	return ""
}
