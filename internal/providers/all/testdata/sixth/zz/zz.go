// Package zz is a throwaway provider: a folder and one line in the list are
// all it takes (see TestAThrowawayProviderNeedsOneFolderAndOneLine).
package zz

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/zz/input"
)

// Name is the provider's name.
const Name = input.Name

// Client talks to one zz account.
type Client struct {
	base   string
	key    string
	opts   input.Options
	caller *providers.Caller
}

// New returns a zz client.
func New(cfg providers.Config, opts input.Options) *Client {
	c := &Client{base: cfg.Base("https://api.zz.example"), key: cfg.APIKey, opts: opts}
	c.caller = &providers.Caller{Provider: Name, Client: cfg.Client(c.base), Secrets: []string{cfg.APIKey},
		Classify: func(status int, body []byte) error {
			if status == http.StatusForbidden {
				return providers.ClassifyForbidden(message(body))
			}
			return providers.ClassifyStatus(status)
		},
		Message: message}
	return c
}

// Name implements providers.Provider.
func (c *Client) Name() string { return Name }

// Validate implements providers.Provider.
func (c *Client) Validate(raw json.RawMessage) error {
	_, err := input.Parse(raw, c.opts)
	return err
}

// Estimate implements providers.Provider.
func (c *Client) Estimate(raw json.RawMessage) providers.Cost {
	in, _ := input.Parse(raw, c.opts)
	return input.Price(in, c.opts)
}

// Submit implements providers.Provider: POST /zz/clips.
func (c *Client) Submit(ctx context.Context, req providers.Request) (providers.Task, error) {
	in, err := input.Parse(req.Input, c.opts)
	if err != nil {
		return providers.Task{}, err
	}
	body, _ := json.Marshal(in)
	hr, err := http.NewRequest(http.MethodPost, c.base+"/zz/clips", bytes.NewReader(body))
	if err != nil {
		return providers.Task{}, fmt.Errorf("zz submit: %w", err)
	}
	hr.Header.Set("Authorization", "Bearer "+c.key)
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.caller.Do(ctx, "submit", hr)
	if err != nil {
		return providers.Task{}, err
	}
	var out struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return providers.Task{}, c.caller.UnknownSubmission(resp, "the answer is not a JSON object")
	}
	id := providers.Scalar(out.ID)
	if !providers.UsableID(id) {
		return providers.Task{}, c.caller.UnknownSubmission(resp, "no usable id in the answer")
	}
	return providers.Task{ID: id}, nil
}

// Poll implements providers.Provider: GET /zz/clips/{id}.
func (c *Client) Poll(ctx context.Context, task providers.Task) (providers.Status, error) {
	hr, err := http.NewRequest(http.MethodGet, c.base+"/zz/clips/"+url.PathEscape(task.ID), nil)
	if err != nil {
		return providers.Status{}, fmt.Errorf("zz poll: %w", err)
	}
	hr.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := c.caller.Do(ctx, "poll", hr)
	if err != nil {
		return providers.Status{}, err
	}
	var r struct {
		Status string `json:"status"`
		URL    string `json:"url"`
	}
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		return providers.Status{}, c.caller.Decode("poll", err)
	}
	st := providers.Status{Raw: r.Status, Progress: -1}
	switch r.Status {
	case "done":
		st.State, st.Progress = providers.Succeeded, 100
		st.Outputs = []providers.Output{{URL: r.URL, ContentType: "video/mp4", Name: "clip"}}
		st = providers.Vet(Name, st)
	case "failed":
		st.State = providers.Failed
		st.Err = &providers.Error{Provider: Name, Op: "poll", Class: providers.ErrTaskFailed, Message: "the clip failed"}
	}
	return st, nil
}

func message(body []byte) string {
	var m struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &m)
	return m.Error
}
