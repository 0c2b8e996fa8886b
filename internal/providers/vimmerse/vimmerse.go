// Package vimmerse is the reelq adapter for the Vimmerse Workflow API
// (https://api.vimmerse.net): POST /workflow as a multipart form, then
// poll GET /workflow/{id} until processing_status is success, fail or
// cancel. DELETE /workflow/{id} cancels a workflow (and deletes its files).
//
// Vimmerse has no endpoint that lists workflows (its OpenAPI spec has only
// POST /workflow and GET/PUT/DELETE /workflow/{id}), so a workflow whose
// id was lost cannot be found again through the API. The adapter still
// tags every workflow's title with the reelq job id ([reelq:<job id>]) so
// an operator can find it in the Vimmerse dashboard.
package vimmerse

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/vimmerse/input"
)

// Name is the provider's name in subjects and configuration.
const Name = input.Name

// DefaultBaseURL is Vimmerse's public API root.
const DefaultBaseURL = "https://api.vimmerse.net"

// DefaultTitle is used when the job input has no title.
const DefaultTitle = "reelq job"

// Options tune the adapter beyond the shared providers.Config: only the
// input's (VIMMERSE_DEFAULT_TEMPLATE, ...).
type Options struct {
	Input input.Options
}

// Client talks to one Vimmerse account.
type Client struct {
	base   string
	key    string
	opts   Options
	poll   *providers.Caller
	submit *providers.Caller // create: a 404 means the template does not exist
}

var (
	_ providers.Provider = (*Client)(nil)
	_ providers.Canceler = (*Client)(nil)
)

// New returns a Vimmerse client.
func New(cfg providers.Config, opts Options) *Client {
	c := &Client{base: cfg.Base(DefaultBaseURL), key: cfg.APIKey, opts: opts}
	hc := cfg.Client(c.base)
	caller := func(op string) *providers.Caller {
		return &providers.Caller{
			Provider: Name,
			Client:   hc,
			Classify: func(status int, body []byte) error { return classify(op, status, body) },
			Message:  message,
			Secrets:  []string{cfg.APIKey},
		}
	}
	c.poll, c.submit = caller("poll"), caller("submit")
	return c
}

// Name implements providers.Provider.
func (c *Client) Name() string { return Name }

// Validate implements providers.Provider.
func (c *Client) Validate(raw json.RawMessage) error {
	_, err := input.Parse(raw, c.opts.Input)
	return err
}

// Estimate implements providers.Provider: the template's credit price.
func (c *Client) Estimate(raw json.RawMessage) providers.Cost {
	in, _ := input.Parse(raw, c.opts.Input)
	return input.Price(in, c.opts.Input)
}

// Title returns the workflow title the adapter sends for a job: the
// user's title (or DefaultTitle) followed by " [reelq:<job id>]".
func Title(title, jobID string) string {
	if title == "" {
		title = DefaultTitle
	}
	if jobID == "" {
		return title
	}
	return title + " " + input.TagPrefix + jobID + "]"
}

// JobOfTitle returns the job id a workflow title's tag names (what Title
// appended), or "" when the title has no tag.
func JobOfTitle(title string) string {
	i := strings.LastIndex(title, " "+input.TagPrefix)
	if i < 0 || !strings.HasSuffix(title, "]") {
		return ""
	}
	return title[i+len(input.TagPrefix)+1 : len(title)-1]
}

// Submit implements providers.Provider: a multipart POST /workflow.
func (c *Client) Submit(ctx context.Context, req providers.Request) (providers.Task, error) {
	in, err := input.Parse(req.Input, c.opts.Input)
	if err != nil {
		return providers.Task{}, err
	}
	options, err := json.Marshal(in.Options)
	if err != nil {
		return providers.Task{}, providers.Invalid(Name, "input.options: %v", err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fields := [][2]string{
		{"template_id", in.TemplateID},
		{"options", string(options)},
		{"title", Title(in.Title, req.JobID)},
		{"description", in.Description},
		{"visibility_status", in.VisibilityStatus},
	}
	for _, u := range in.ImageURLs {
		fields = append(fields, [2]string{"image_urls", u})
	}
	// One URL per workflow: the job's own, if its input names one (the
	// job is then found done by polling), else reelq's callback URL.
	if u := cmp.Or(in.WebhookURL, req.CallbackURL); u != "" {
		fields = append(fields, [2]string{"webhook_url", u})
	}
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return providers.Task{}, fmt.Errorf("vimmerse submit: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return providers.Task{}, fmt.Errorf("vimmerse submit: %w", err)
	}
	hr, err := http.NewRequest(http.MethodPost, c.base+"/workflow", &buf)
	if err != nil {
		return providers.Task{}, fmt.Errorf("vimmerse submit: %w", err)
	}
	c.auth(hr)
	hr.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.submit.Do(ctx, "submit", hr)
	if err != nil {
		return providers.Task{}, err
	}
	w, err := ParseWorkflow(resp.Body)
	if err != nil {
		return providers.Task{}, c.submit.UnknownSubmission(resp, "the answer is not the documented {\"data\": {...}} object")
	}
	if !providers.UsableID(w.ID) {
		return providers.Task{}, c.submit.UnknownSubmission(resp, "no usable data.id in the answer")
	}
	return providers.Task{ID: w.ID}, nil
}

// Poll implements providers.Provider: GET /workflow/{id}.
func (c *Client) Poll(ctx context.Context, task providers.Task) (providers.Status, error) {
	resp, err := c.call(ctx, c.poll, "poll", http.MethodGet, task.ID)
	if err != nil {
		return providers.Status{}, err
	}
	st, err := ParseStatus(resp.Body)
	if err != nil {
		return providers.Status{}, c.poll.Decode("poll", err)
	}
	return st, nil
}

// Cancel implements providers.Canceler with DELETE /workflow/{id}, which
// also deletes the workflow's files. A workflow already gone is not an error.
func (c *Client) Cancel(ctx context.Context, task providers.Task) error {
	_, err := c.call(ctx, c.poll, "cancel", http.MethodDelete, task.ID)
	if errors.Is(err, providers.ErrNotFound) {
		return nil
	}
	return err
}

func (c *Client) call(ctx context.Context, caller *providers.Caller, op, method, id string) (*providers.Response, error) {
	hr, err := http.NewRequest(method, c.base+"/workflow/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, fmt.Errorf("vimmerse %s: %w", op, err)
	}
	c.auth(hr)
	return caller.Do(ctx, op, hr)
}

func (c *Client) auth(r *http.Request) { r.Header.Set("X-Api-Key", c.key) }
