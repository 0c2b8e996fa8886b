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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/providers"
)

// Name is the provider's name in subjects and configuration.
const Name = "vimmerse"

// DefaultBaseURL is Vimmerse's public API root.
const DefaultBaseURL = "https://api.vimmerse.net"

// Defaults and documented values of the legacy workflow form.
const (
	DefaultTemplate = "overlay_gray_5443"
	// DefaultCredits is the estimate for templates without a published price.
	DefaultCredits = 100
	// DefaultTitle is used when the job input has no title.
	DefaultTitle = "reelq job"
)

// VisibilityStatuses are the documented visibility_status values:
// private, unlisted, public.
var VisibilityStatuses = []string{"0", "1", "2"}

// TemplateCredits are the published credit prices per template (the v2
// template catalog); other templates are estimated with DefaultCredits.
var TemplateCredits = map[string]float64{
	"each_createsong_0226":   10,
	"each_explodedloop_0226": 100,
	"each_funnydance_0226":   200,
	"each_moonwalk_0226":     150,
	"each_ugcproduct_0226":   320,
}

var templateRe = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,100}$`)

// Options tune the adapter beyond the shared providers.Config.
// Each field can be set from the environment (VIMMERSE_DEFAULT_TEMPLATE, ...).
type Options struct {
	// DefaultTemplate is used when the input has no template_id.
	DefaultTemplate string `env:"DEFAULT_TEMPLATE"`
	// DefaultCredits estimates templates without a known price.
	DefaultCredits float64 `env:"DEFAULT_CREDITS"`
	// TemplateCredits adds or overrides prices, e.g. "vim_arctic:120,vim_ces_show:80".
	TemplateCredits map[string]float64 `env:"TEMPLATE_CREDITS"`
}

// Input is the job input for a Vimmerse workflow.
type Input struct {
	TemplateID string `json:"template_id,omitempty"`
	// Options are the template's options as a JSON object (a JSON string
	// holding an object is accepted too); they are sent as a JSON string.
	Options          json.RawMessage `json:"options,omitempty"`
	ImageURLs        []string        `json:"image_urls,omitempty"`
	Title            string          `json:"title,omitempty"`
	Description      string          `json:"description,omitempty"`
	VisibilityStatus string          `json:"visibility_status,omitempty"`
	WebhookURL       string          `json:"webhook_url,omitempty"`
}

type price struct {
	credits float64
	basis   string
}

// Client talks to one Vimmerse account.
type Client struct {
	base    string
	key     string
	opts    Options
	credits map[string]price
	poll    *providers.Caller
	submit  *providers.Caller // create: a 404 means the template does not exist
}

var (
	_ providers.Provider = (*Client)(nil)
	_ providers.Canceler = (*Client)(nil)
)

// New returns a Vimmerse client.
func New(cfg providers.Config, opts Options) *Client {
	if opts.DefaultTemplate == "" {
		opts.DefaultTemplate = DefaultTemplate
	}
	if opts.DefaultCredits <= 0 {
		opts.DefaultCredits = DefaultCredits
	}
	credits := make(map[string]price, len(TemplateCredits)+len(opts.TemplateCredits))
	for k, v := range TemplateCredits {
		credits[k] = price{v, "published price of template " + k}
	}
	for k, v := range opts.TemplateCredits {
		credits[k] = price{v, "configured price of template " + k}
	}
	c := &Client{base: cfg.Base(DefaultBaseURL), key: cfg.APIKey, opts: opts, credits: credits}
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

// Defaults implements providers.Provider. The docs poll every 30 s for up
// to 60 minutes; a sample workflow took about 10 minutes.
func (c *Client) Defaults() providers.Defaults {
	return providers.Defaults{PollInterval: 10 * time.Second, MaxPollInterval: 30 * time.Second, JobTimeout: 90 * time.Minute}
}

// Validate implements providers.Provider.
func (c *Client) Validate(raw json.RawMessage) error {
	_, err := c.parse(raw)
	return err
}

func (c *Client) parse(raw json.RawMessage) (Input, error) {
	var in Input
	if err := providers.StrictDecode(raw, &in); err != nil {
		return in, providers.Invalid(Name, "input: %v", err)
	}
	if in.TemplateID == "" {
		in.TemplateID = c.opts.DefaultTemplate
	}
	bad := providers.Problems{Provider: Name}
	if !templateRe.MatchString(in.TemplateID) {
		bad.Add("input.template_id %q is not a template id", in.TemplateID)
	}
	if opts, err := objectOptions(in.Options); err != nil {
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
	if strings.Contains(in.Title, tagPrefix) {
		bad.Add("input.title must not contain %q: reelq adds that tag itself", tagPrefix)
	}
	return in, bad.Err()
}

// objectOptions returns options as a JSON object ({} if absent), unwrapping
// a JSON string that holds one.
func objectOptions(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage("{}"), nil
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
	return json.Marshal(m)
}

// Estimate implements providers.Provider: the template's credit price.
func (c *Client) Estimate(raw json.RawMessage) providers.Cost {
	in, _ := c.parse(raw)
	if p, ok := c.credits[in.TemplateID]; ok {
		return providers.Cost{Amount: p.credits, Unit: "credits", Basis: p.basis}
	}
	return providers.Cost{Amount: c.opts.DefaultCredits, Unit: "credits",
		Basis: fmt.Sprintf("estimate: no published price for template %s", in.TemplateID)}
}

// tagPrefix starts the job tag the adapter appends to every title.
const tagPrefix = "[reelq:"

// Title returns the workflow title the adapter sends for a job: the
// user's title (or DefaultTitle) followed by " [reelq:<job id>]".
func Title(title, jobID string) string {
	if title == "" {
		title = DefaultTitle
	}
	if jobID == "" {
		return title
	}
	return title + " " + tagPrefix + jobID + "]"
}

// JobOfTitle returns the job id a workflow title's tag names (what Title
// appended), or "" when the title has no tag.
func JobOfTitle(title string) string {
	i := strings.LastIndex(title, " "+tagPrefix)
	if i < 0 || !strings.HasSuffix(title, "]") {
		return ""
	}
	return title[i+len(tagPrefix)+1 : len(title)-1]
}

// Submit implements providers.Provider: a multipart POST /workflow.
func (c *Client) Submit(ctx context.Context, req providers.Request) (providers.Task, error) {
	in, err := c.parse(req.Input)
	if err != nil {
		return providers.Task{}, err
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fields := [][2]string{
		{"template_id", in.TemplateID},
		{"options", string(in.Options)},
		{"title", Title(in.Title, req.JobID)},
		{"description", in.Description},
		{"visibility_status", in.VisibilityStatus},
	}
	for _, u := range in.ImageURLs {
		fields = append(fields, [2]string{"image_urls", u})
	}
	if in.WebhookURL != "" {
		fields = append(fields, [2]string{"webhook_url", in.WebhookURL})
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

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
