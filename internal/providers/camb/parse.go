package camb

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/reelq/reelq/internal/providers"
)

// ParseCreate reads a create response: {"task_id": "..."}, or the
// setup-style {"run_id": N, "story_details": {...}} the current SDK also
// allows, which yields a task known by its run id.
func ParseCreate(body []byte) (providers.Task, error) {
	var r struct {
		TaskID json.RawMessage `json:"task_id"`
		RunID  json.RawMessage `json:"run_id"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return providers.Task{}, err
	}
	if id := providers.Scalar(r.TaskID); providers.UsableID(id) && !strings.HasPrefix(id, runTaskPrefix) {
		return providers.Task{ID: id}, nil
	}
	if run := providers.Scalar(r.RunID); providers.UsableID(run) {
		return providers.Task{ID: runTaskPrefix + run}, nil
	}
	return providers.Task{}, errors.New("no usable task_id or run_id in response")
}

// ParseStatus reads GET /story/{task_id}: {status, run_id,
// exception_reason, message}. It returns the status and, on SUCCESS, the
// run id to fetch the result with; a SUCCESS status is returned Pending
// with Raw "SUCCESS", as the outputs come from the result call.
func ParseStatus(body []byte) (providers.Status, string, error) {
	var r struct {
		Status          string          `json:"status"`
		RunID           json.RawMessage `json:"run_id"`
		ExceptionReason string          `json:"exception_reason"`
		Message         json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return providers.Status{}, "", err
	}
	raw := strings.ToUpper(strings.TrimSpace(r.Status))
	st := providers.Status{Raw: raw, Progress: -1}
	reason := strings.ToUpper(strings.TrimSpace(r.ExceptionReason))
	msg := providers.Text(r.Message)
	switch raw {
	case "SUCCESS":
		return st, providers.Scalar(r.RunID), nil
	case "", "PENDING", "QUEUED", "PROCESSING", "RUNNING", "IN_PROGRESS", "STARTED":
		return st, "", nil
	case "PAYMENT_REQUIRED": // the older enum
		reason = "PAYMENT_REQUIRED"
	}
	st.State = providers.Failed
	st.Err = taskError(raw, reason, msg)
	return st, "", nil
}

// taskError classifies a failed task by its status and exception reason.
func taskError(status, reason, msg string) error {
	class := providers.ErrTaskFailed
	switch {
	case reason == "PAYMENT_REQUIRED":
		// Not run and not paid: the worker pauses Camb and resubmits later.
		class = providers.ErrCreditsExhausted
	case reason == "FORBIDDEN":
		// This task may not be run (the key lacks access to it); the key
		// itself works, or the create would have been refused with 401.
		class = providers.ErrForbidden
	case strings.HasPrefix(reason, "SOURCE_"), strings.HasPrefix(reason, "INVALID_"),
		strings.HasPrefix(reason, "CONTENT_"), strings.HasPrefix(reason, "HARMFUL_"):
		class = providers.ErrInvalidInput
	}
	parts := []string{"status " + status}
	if reason != "" && reason != "NONE" {
		parts = append(parts, "exception_reason "+reason)
	}
	if msg != "" {
		parts = append(parts, msg)
	}
	return &providers.Error{Provider: Name, Op: "poll", Class: class, Message: strings.Join(parts, ": ")}
}

// ParseResult reads GET /story-result/{run_id}: {audio_url,
// dialogue_url, transcript}, as outputs named "audio" and "dialogue".
func ParseResult(body []byte) ([]providers.Output, error) {
	var r struct {
		AudioURL    string `json:"audio_url"`
		DialogueURL string `json:"dialogue_url"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	var out []providers.Output
	for _, o := range []providers.Output{{Name: "audio", URL: r.AudioURL}, {Name: "dialogue", URL: r.DialogueURL}} {
		if o.URL == "" {
			continue
		}
		o.ContentType = contentType(o.URL)
		out = append(out, o)
	}
	if len(out) > 0 && out[0].Name != "audio" {
		return nil, errors.New("story result has dialogue_url but no audio_url")
	}
	return out, nil
}

// contentType is the audio type for the URL's extension (.flac in
// Camb's examples).
func contentType(u string) string {
	p := u
	if pu, err := url.Parse(u); err == nil {
		p = pu.Path
	}
	switch ext := strings.ToLower(path.Ext(p)); ext {
	case ".flac":
		return "audio/flac"
	case ".wav":
		return "audio/wav"
	case ".mp3":
		return "audio/mpeg"
	case "":
		return ""
	default:
		return mime.TypeByExtension(ext)
	}
}

// classify maps a non-2xx response: the shared table (402 credits, 422
// validation, 429 rate limit, 401 auth, 404 not found, 5xx retry). Camb
// documents 403 as a key that lacks permission: forbidden for this job,
// unless the body says the key is invalid or missing.
func classify(status int, body []byte) error {
	if status == http.StatusForbidden {
		return providers.ClassifyForbidden(message(body))
	}
	return providers.ClassifyStatus(status)
}

// message reads {"error": ..., "status": N}, {"message": ...} or
// FastAPI's {"detail": [{loc, msg, type}]}.
func message(body []byte) string {
	var m struct {
		Error   json.RawMessage `json:"error"`
		Message json.RawMessage `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	if d := providers.FastAPIDetail(m.Detail); d != "" {
		return d
	}
	if s := providers.Text(m.Error); s != "" {
		return s
	}
	return providers.Text(m.Message)
}
