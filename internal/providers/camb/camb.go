// Package camb is the reelq adapter for the Camb.ai Story API
// (https://client.camb.ai/apis), which narrates a text document as an
// audio story: POST /story (multipart, the text as a file), poll
// GET /story/{task_id} until SUCCESS, then GET /story-result/{run_id}
// for the audio and dialogue URLs.
//
// Camb reports exhausted credits on the poll, not the create: a task ends
// with status ERROR and exception_reason PAYMENT_REQUIRED (or, in the
// older enum, status PAYMENT_REQUIRED). Such a task did not run and was
// not paid for, so the adapter reports it as a failed task whose error is
// ErrCreditsExhausted, and the worker submits the job again once credits
// return.
package camb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/reelq/reelq/internal/providers"
)

// Name is the provider's name in subjects and configuration.
const Name = "camb"

// DefaultBaseURL is Camb's public API root.
const DefaultBaseURL = "https://client.camb.ai/apis"

// Documented limits of POST /story.
const (
	MinLanguage    = 1
	MaxLanguage    = 148
	MinTitle       = 3
	MaxTitle       = 255
	MinDescription = 3
	MaxDescription = 5000
	// DefaultCreditsPerTask is the cost estimate: Camb publishes no story price.
	DefaultCreditsPerTask = 1
	// StoryFileName is the name the text is uploaded under.
	StoryFileName = "story.txt"
	// runTaskPrefix marks a task known only by its run_id (the setup-style
	// create response).
	runTaskPrefix = "run:"
)

// Options tune the adapter beyond the shared providers.Config.
// Each field can be set from the environment (CAMB_CREDITS_PER_TASK).
type Options struct {
	// CreditsPerTask is the cost estimate per story; default DefaultCreditsPerTask.
	CreditsPerTask float64 `env:"CREDITS_PER_TASK"`
}

// Input is the job input for a Camb story.
type Input struct {
	// Text is the story; it is uploaded as the file story.txt.
	Text string `json:"text"`
	// SourceLanguage is Camb's language id (1 = English), required.
	SourceLanguage *int   `json:"source_language"`
	Title          string `json:"title,omitempty"`
	Description    string `json:"description,omitempty"`
	// NarratorVoiceID picks the narrator; Voice is accepted as an alias.
	NarratorVoiceID    *int   `json:"narrator_voice_id,omitempty"`
	Voice              *int   `json:"voice,omitempty"`
	ChosenDictionaries *[]int `json:"chosen_dictionaries,omitempty"`
	FolderID           *int   `json:"folder_id,omitempty"`
}

// Client talks to one Camb account.
type Client struct {
	base   string
	key    string
	opts   Options
	caller *providers.Caller
}

var _ providers.Provider = (*Client)(nil)

// New returns a Camb client.
func New(cfg providers.Config, opts Options) *Client {
	if opts.CreditsPerTask <= 0 {
		opts.CreditsPerTask = DefaultCreditsPerTask
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

// Defaults implements providers.Provider. Camb's examples poll every 3-5 s.
// Camb reports missing credits on the poll (PAYMENT_REQUIRED), so a
// successful create proves nothing about the account: CreditsOnPoll.
func (c *Client) Defaults() providers.Defaults {
	return providers.Defaults{PollInterval: 5 * time.Second, MaxPollInterval: 30 * time.Second, JobTimeout: 2 * time.Hour, CreditsOnPoll: true}
}

// Validate implements providers.Provider with the create-story rules.
func (c *Client) Validate(raw json.RawMessage) error {
	_, err := parse(raw)
	return err
}

func parse(raw json.RawMessage) (Input, error) {
	var in Input
	if err := providers.StrictDecode(raw, &in); err != nil {
		return in, providers.Invalid(Name, "input: %v", err)
	}
	bad := providers.Problems{Provider: Name}
	switch {
	case strings.TrimSpace(in.Text) == "":
		bad.Add("input.text is required (the story to narrate)")
	case !utf8.ValidString(in.Text):
		bad.Add("input.text is not valid UTF-8")
	}
	switch {
	case in.SourceLanguage == nil:
		bad.Add("input.source_language is required (Camb language id, 1 = English)")
	case *in.SourceLanguage < MinLanguage || *in.SourceLanguage > MaxLanguage:
		bad.Add("input.source_language %d is not a language id (%d..%d)", *in.SourceLanguage, MinLanguage, MaxLanguage)
	}
	length(&bad, "title", in.Title, MinTitle, MaxTitle)
	length(&bad, "description", in.Description, MinDescription, MaxDescription)
	if in.NarratorVoiceID != nil && in.Voice != nil && *in.NarratorVoiceID != *in.Voice {
		bad.Add("input.voice and input.narrator_voice_id disagree; set one")
	}
	if in.NarratorVoiceID == nil {
		in.NarratorVoiceID = in.Voice
	}
	if in.NarratorVoiceID != nil && *in.NarratorVoiceID <= 0 {
		bad.Add("input.narrator_voice_id must be a positive voice id")
	}
	if in.ChosenDictionaries != nil && len(*in.ChosenDictionaries) == 0 {
		bad.Add("input.chosen_dictionaries must list at least one dictionary id when present")
	}
	if in.FolderID != nil && *in.FolderID <= 0 {
		bad.Add("input.folder_id must be a positive folder id")
	}
	return in, bad.Err()
}

// length checks an optional string's length in characters.
func length(bad *providers.Problems, field, s string, lo, hi int) {
	if s == "" {
		return
	}
	if n := utf8.RuneCountInString(s); n < lo || n > hi {
		bad.Add("input.%s is %d characters; it must be %d to %d", field, n, lo, hi)
	}
}

// Estimate implements providers.Provider: a flat estimate per story.
func (c *Client) Estimate(json.RawMessage) providers.Cost {
	return providers.Cost{Amount: c.opts.CreditsPerTask, Unit: "credits",
		Basis: "estimate: flat per story (Camb publishes no story price; plans bill by characters or minutes)"}
}

// Submit implements providers.Provider: POST /story as multipart form
// data with the text as the file story.txt. Camb takes no client
// reference, so the job id is not sent.
func (c *Client) Submit(ctx context.Context, req providers.Request) (providers.Task, error) {
	in, err := parse(req.Input)
	if err != nil {
		return providers.Task{}, err
	}
	body, ctype, err := form(in)
	if err != nil {
		return providers.Task{}, fmt.Errorf("camb submit: %w", err)
	}
	hr, err := http.NewRequest(http.MethodPost, c.base+"/story", body)
	if err != nil {
		return providers.Task{}, fmt.Errorf("camb submit: %w", err)
	}
	c.auth(hr)
	hr.Header.Set("Content-Type", ctype)
	resp, err := c.caller.Do(ctx, "submit", hr)
	if err != nil {
		return providers.Task{}, err
	}
	task, err := ParseCreate(resp.Body)
	if err != nil {
		return providers.Task{}, c.caller.UnknownSubmission(resp, "no usable task_id (or run_id) in the answer")
	}
	return task, nil
}

func form(in Input) (*bytes.Buffer, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="`+StoryFileName+`"`)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	fw, err := mw.CreatePart(h)
	if err != nil {
		return nil, "", err
	}
	if _, err := fw.Write([]byte(in.Text)); err != nil {
		return nil, "", err
	}
	fields := [][2]string{{"source_language", strconv.Itoa(*in.SourceLanguage)}}
	if in.Title != "" {
		fields = append(fields, [2]string{"title", in.Title})
	}
	if in.Description != "" {
		fields = append(fields, [2]string{"description", in.Description})
	}
	if in.NarratorVoiceID != nil {
		fields = append(fields, [2]string{"narrator_voice_id", strconv.Itoa(*in.NarratorVoiceID)})
	}
	if in.ChosenDictionaries != nil {
		for _, d := range *in.ChosenDictionaries {
			fields = append(fields, [2]string{"chosen_dictionaries", strconv.Itoa(d)})
		}
	}
	if in.FolderID != nil {
		fields = append(fields, [2]string{"folder_id", strconv.Itoa(*in.FolderID)})
	}
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return nil, "", err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return &buf, mw.FormDataContentType(), nil
}

// Poll implements providers.Provider: GET /story/{task_id}, and on
// SUCCESS GET /story-result/{run_id} for the outputs.
func (c *Client) Poll(ctx context.Context, task providers.Task) (providers.Status, error) {
	if run, ok := strings.CutPrefix(task.ID, runTaskPrefix); ok {
		// Known only by run id (setup-style create): the result is the status.
		return c.result(ctx, run, true)
	}
	resp, err := c.get(ctx, "poll", "/story/"+url.PathEscape(task.ID))
	if err != nil {
		return providers.Status{}, err
	}
	st, run, err := ParseStatus(resp.Body)
	if err != nil {
		return providers.Status{}, c.caller.Decode("poll", err)
	}
	if st.Raw != "SUCCESS" {
		return st, nil
	}
	if run == "" {
		return providers.Status{}, c.caller.Decode("poll", errors.New("SUCCESS without run_id"))
	}
	return c.result(ctx, run, false)
}

// result fetches /story-result/{run_id}. With pendingIfEmpty, a result
// without URLs (or a 404) means the story is still being made.
func (c *Client) result(ctx context.Context, run string, pendingIfEmpty bool) (providers.Status, error) {
	resp, err := c.get(ctx, "result", "/story-result/"+url.PathEscape(run))
	switch {
	case err == nil:
	case errors.Is(err, providers.ErrNotFound) && pendingIfEmpty:
		return providers.Status{State: providers.Pending, Raw: "PENDING", Progress: -1}, nil
	case errors.Is(err, providers.ErrNotFound):
		// The task said SUCCESS, so the result is on its way: try again.
		return providers.Status{}, &providers.Error{Provider: Name, Op: "result", StatusCode: http.StatusNotFound,
			Class: providers.ErrRetryable, Message: "result of run " + run + " is not available yet"}
	default:
		return providers.Status{}, err
	}
	outs, err := ParseResult(resp.Body)
	if err != nil {
		return providers.Status{}, c.caller.Decode("result", err)
	}
	if len(outs) == 0 {
		if pendingIfEmpty {
			return providers.Status{State: providers.Pending, Raw: "PENDING", Progress: -1}, nil
		}
		return providers.Status{}, c.caller.Decode("result", errors.New("story result without audio_url"))
	}
	return providers.Vet(Name, providers.Status{State: providers.Succeeded, Raw: "SUCCESS", Progress: 100, Outputs: outs}), nil
}

func (c *Client) get(ctx context.Context, op, path string) (*providers.Response, error) {
	hr, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("camb %s: %w", op, err)
	}
	c.auth(hr)
	return c.caller.Do(ctx, op, hr)
}

func (c *Client) auth(r *http.Request) { r.Header.Set("x-api-key", c.key) }
