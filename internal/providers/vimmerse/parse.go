package vimmerse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/providers"
)

// Result is one output file of a workflow or of one of its steps.
type Result struct {
	ContentType string `json:"content_type"`
	URL         string `json:"url"`
}

// Completion is one processing step of a workflow.
type Completion struct {
	Flow   string   `json:"flow"`
	Result []Result `json:"result"`
}

// Workflow is the workflow object every workflow endpoint returns in data.
type Workflow struct {
	ID               string          `json:"id"`
	Title            string          `json:"title"`
	Description      string          `json:"description"`
	VisibilityStatus string          `json:"visibility_status"`
	Model            string          `json:"model"`
	Options          json.RawMessage `json:"options"`
	ProcessingStatus string          `json:"processing_status"`
	// Progress is progress_percentage (sent as a number or a string), or -1.
	Progress    float64      `json:"-"`
	Completions []Completion `json:"completions"`
	Result      []Result     `json:"result"`
	MediaResult []struct {
		URL  string `json:"url"`
		Size int64  `json:"size"`
	} `json:"media_result"`
	Message   string    `json:"-"`
	CreatedAt time.Time `json:"-"`
	UpdatedAt time.Time `json:"-"`
}

// ParseWorkflow reads a {"data": {...workflow...}} response.
func ParseWorkflow(body []byte) (Workflow, error) {
	var env struct {
		Data *struct {
			Workflow
			Progress  json.RawMessage `json:"progress_percentage"`
			Message   json.RawMessage `json:"message"`
			CreatedAt string          `json:"created_at"`
			UpdatedAt string          `json:"updated_at"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return Workflow{}, err
	}
	if env.Data == nil {
		return Workflow{}, errors.New("no data object in response")
	}
	w := env.Data.Workflow
	w.Progress = progress(env.Data.Progress)
	w.Message = providers.Text(env.Data.Message)
	// Timestamps are informational: a bad one does not fail the poll.
	w.CreatedAt, _ = ParseTime(env.Data.CreatedAt)
	w.UpdatedAt, _ = ParseTime(env.Data.UpdatedAt)
	return w, nil
}

// ParseStatus reads a workflow response as a poll result: success is
// done (outputs from result, else media_result, else the last step's
// result), fail and cancel are failures, anything else is pending.
func ParseStatus(body []byte) (providers.Status, error) {
	w, err := ParseWorkflow(body)
	if err != nil {
		return providers.Status{}, err
	}
	return w.Status(), nil
}

// Status returns the workflow's state as reelq sees it.
func (w Workflow) Status() providers.Status {
	raw := strings.ToLower(strings.TrimSpace(w.ProcessingStatus))
	st := providers.Status{Raw: raw, Progress: w.Progress, NamesJob: true, JobRef: JobOfTitle(w.Title)}
	switch raw {
	case "success":
		st.Outputs = w.outputs()
		if len(st.Outputs) == 0 {
			st.State = providers.Failed
			st.Err = &providers.Error{Provider: Name, Op: "poll", Class: providers.ErrTaskFailed, Message: "workflow succeeded without any result"}
			return st
		}
		st.State, st.Progress = providers.Succeeded, 100
		st = providers.Vet(Name, st)
	case "fail", "cancel":
		st.State = providers.Failed
		msg := w.Message
		if msg == "" {
			msg = "processing_status " + raw
		}
		st.Err = &providers.Error{Provider: Name, Op: "poll", Class: providers.ErrTaskFailed, Message: msg}
	}
	return st
}

func (w Workflow) outputs() []providers.Output {
	var out []providers.Output
	add := func(rs []Result, name string) {
		for _, r := range rs {
			if r.URL != "" {
				out = append(out, providers.Output{URL: r.URL, ContentType: r.ContentType, Name: name})
			}
		}
	}
	add(w.Result, "result")
	if len(out) == 0 {
		for _, m := range w.MediaResult {
			if m.URL != "" {
				out = append(out, providers.Output{URL: m.URL, Name: "media_result"})
			}
		}
	}
	if len(out) == 0 && len(w.Completions) > 0 {
		last := w.Completions[len(w.Completions)-1]
		add(last.Result, last.Flow)
	}
	return out
}

// progress reads progress_percentage, a number or a numeric string.
func progress(raw json.RawMessage) float64 {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return -1
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return -1
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return -1
		}
		f = v
	}
	if f != f || f < 0 || f > 100 {
		return -1
	}
	return f
}

// TimeLayout is Vimmerse's timestamp layout, e.g.
// "2025-04-11 18:33:59.780864+00:00" or "2025-04-11 18:42:51+00:00"
// (Go accepts the optional fractional seconds when parsing).
const TimeLayout = "2006-01-02 15:04:05.999999Z07:00"

// ParseTime reads a Vimmerse timestamp: a date and time separated by a
// space, optional fractional seconds, and a numeric zone (or Z). RFC 3339
// with a "T" is accepted too.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range []string{TimeLayout, time.RFC3339Nano} {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("vimmerse: bad timestamp %q", s)
}

// classify maps a non-2xx response to a class. op is "submit" for the
// create call, where a 404 means the template does not exist. Vimmerse
// documents 401 as a missing or invalid key and 403 as a key that lacks
// permission (a template the plan does not include): this job, unless the
// body says the key itself is bad.
func classify(op string, status int, body []byte) error {
	switch {
	case status == http.StatusNotFound && op == "submit":
		return providers.ErrInvalidInput
	case status == http.StatusForbidden:
		return providers.ClassifyForbidden(message(body))
	}
	// 402 INSUFFICIENT_CREDIT, 404 NOT_FOUND, 422 FastAPI validation and
	// 429 (rate or concurrency) follow the shared table.
	return providers.ClassifyStatus(status)
}

// message reads {"message": "..."} or FastAPI's {"detail": [{loc, msg,
// type}]} (or a detail string) as one readable line.
func message(body []byte) string {
	var m struct {
		Message json.RawMessage `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	if d := providers.FastAPIDetail(m.Detail); d != "" {
		return d
	}
	return providers.Text(m.Message)
}
