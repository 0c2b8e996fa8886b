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

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/camb/input"
)

// Name is the provider's name in subjects and configuration.
const Name = input.Name

// DefaultBaseURL is Camb's public API root.
const DefaultBaseURL = "https://client.camb.ai/apis"

const (
	// StoryFileName is the name the text is uploaded under.
	StoryFileName = "story.txt"
	// runTaskPrefix marks a task known only by its run_id (the setup-style
	// create response).
	runTaskPrefix = "run:"
)

// Options tune the adapter beyond the shared providers.Config: only the
// input's (CAMB_CREDITS_PER_TASK).
type Options struct {
	Input input.Options
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

// Validate implements providers.Provider with the create-story rules.
func (c *Client) Validate(raw json.RawMessage) error {
	_, err := input.Parse(raw, c.opts.Input)
	return err
}

// Estimate implements providers.Provider: a flat estimate per story.
func (c *Client) Estimate(raw json.RawMessage) providers.Cost {
	in, _ := input.Parse(raw, c.opts.Input)
	return input.Price(in, c.opts.Input)
}

// Submit implements providers.Provider: POST /story as multipart form
// data with the text as the file story.txt. Camb takes no client
// reference, so the job id is not sent.
func (c *Client) Submit(ctx context.Context, req providers.Request) (providers.Task, error) {
	in, err := input.Parse(req.Input, c.opts.Input)
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

func form(in input.Input) (*bytes.Buffer, string, error) {
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
	fields := [][2]string{{"source_language", strconv.Itoa(in.SourceLanguage)}}
	if in.Title != "" {
		fields = append(fields, [2]string{"title", in.Title})
	}
	if in.Description != "" {
		fields = append(fields, [2]string{"description", in.Description})
	}
	if in.NarratorVoiceID != 0 {
		fields = append(fields, [2]string{"narrator_voice_id", strconv.Itoa(in.NarratorVoiceID)})
	}
	if in.ChosenDictionaries != nil {
		for _, d := range in.ChosenDictionaries {
			fields = append(fields, [2]string{"chosen_dictionaries", strconv.Itoa(d)})
		}
	}
	if in.FolderID != 0 {
		fields = append(fields, [2]string{"folder_id", strconv.Itoa(in.FolderID)})
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
