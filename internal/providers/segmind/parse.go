package segmind

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/providers"
)

// OutputItem is one element of a COMPLETED run's output list.
type OutputItem struct {
	Keyname string `json:"keyname"`
	Value   struct {
		Data string `json:"data"`
		Type string `json:"type"`
	} `json:"value"`
}

// ParseStatus reads a poll response: {status, output, error,
// error_message, progress}. QUEUED, PROCESSING and unknown statuses are
// pending; COMPLETED decodes output (a JSON string, or already an array or
// object); FAILED reads error (a string) or error_message (any JSON).
func ParseStatus(body []byte) (providers.Status, error) {
	var r struct {
		Status       string          `json:"status"`
		Output       json.RawMessage `json:"output"`
		Error        json.RawMessage `json:"error"`
		ErrorMessage json.RawMessage `json:"error_message"`
		Message      json.RawMessage `json:"message"`
		Progress     *float64        `json:"progress"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return providers.Status{}, err
	}
	raw := strings.ToUpper(strings.TrimSpace(r.Status))
	st := providers.Status{Raw: raw, Progress: -1}
	if r.Progress != nil && *r.Progress >= 0 && *r.Progress <= 100 {
		st.Progress = *r.Progress
	}
	switch raw {
	case "COMPLETED":
		items, err := ParseOutput(r.Output)
		if err != nil {
			return providers.Status{}, fmt.Errorf("COMPLETED output: %w", err)
		}
		outs, links := outputs(items)
		if len(outs) == 0 {
			st.State = providers.Failed
			st.Err = &providers.Error{Provider: Name, Op: "poll", Class: providers.ErrTaskFailed, Message: "COMPLETED without any output"}
			return st, nil
		}
		if err := providers.CheckOutputs(Name, links); err != nil {
			st.State, st.Err = providers.Failed, err
			return st, nil
		}
		st.State, st.Progress, st.Outputs = providers.Succeeded, 100, outs
	case "FAILED":
		st.State = providers.Failed
		msg := providers.FirstNonEmpty(text(r.Error), text(r.ErrorMessage), text(r.Message), "status FAILED")
		st.Err = &providers.Error{Provider: Name, Op: "poll", Class: providers.ErrTaskFailed, Message: msg}
	}
	return st, nil
}

// ParseOutput decodes a COMPLETED output: a JSON string holding the list
// (the documented form), the list itself, or a single object.
func ParseOutput(raw json.RawMessage) ([]OutputItem, error) {
	raw = bytes.TrimSpace(raw)
	var s string
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		s = strings.TrimSpace(s)
		if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
			// A bare URL rather than the documented list.
			it := OutputItem{Keyname: "output"}
			it.Value.Data = s
			return []OutputItem{it}, nil
		}
		raw = json.RawMessage(s)
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []OutputItem
	if raw[0] == '{' {
		var one OutputItem
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, err
		}
		items = []OutputItem{one}
	} else if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	return items, nil
}

// outputs turns output items into reelq outputs, in order, and returns
// separately the ones whose value is a provider URL (to be checked with
// providers.CheckOutputs). Text values (type "text", or an untyped value
// that is not a URL) become data:text/plain URLs made here, so nothing is
// lost; every other value must be a URL.
func outputs(items []OutputItem) (all, links []providers.Output) {
	for _, it := range items {
		d := strings.TrimSpace(it.Value.Data)
		if d == "" {
			continue
		}
		if isText(it.Value.Type, d) {
			all = append(all, providers.Output{Name: it.Keyname, ContentType: "text/plain",
				URL: "data:text/plain;charset=utf-8," + url.PathEscape(it.Value.Data)})
			continue
		}
		o := providers.Output{Name: it.Keyname, URL: d, ContentType: contentType(d, it.Value.Type)}
		all, links = append(all, o), append(links, o)
	}
	return all, links
}

// isText reports whether an output value is text rather than a URL.
func isText(typ, data string) bool {
	if strings.EqualFold(strings.TrimSpace(typ), "text") {
		return true
	}
	if typ != "" {
		return false // image, video, ...: must be a URL
	}
	u, err := url.Parse(data)
	return err != nil || (u.Scheme == "" && u.Host == "")
}

// contentType guesses a MIME type from the URL's extension, falling back
// to Segmind's own type word (image, video, text).
func contentType(u, typ string) string {
	if pu, err := url.Parse(u); err == nil {
		if ct := mime.TypeByExtension(strings.ToLower(path.Ext(pu.Path))); ct != "" {
			return ct
		}
	}
	return typ
}

// Credits is the balance reported by /v1/get-user-credits.
type Credits struct {
	Credits     float64 `json:"credits"`
	FreeCredits float64 `json:"free-credits"`
}

// ParseCredits reads {"credits": f, "free-credits": f}.
func ParseCredits(body []byte) (Credits, error) {
	var b struct {
		Credits     *float64 `json:"credits"`
		FreeCredits *float64 `json:"free-credits"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return Credits{}, err
	}
	if b.Credits == nil && b.FreeCredits == nil {
		return Credits{}, errors.New("no credits in response")
	}
	var c Credits
	if b.Credits != nil {
		c.Credits = *b.Credits
	}
	if b.FreeCredits != nil {
		c.FreeCredits = *b.FreeCredits
	}
	return c, nil
}

// classify maps a non-2xx response to a class. op is "submit" for the
// create call, where 404/410 mean the workflow id is wrong, and "credits"
// for the balance endpoint, whose failures say nothing about the balance.
// A 403 is "Forbidden (insufficient permissions)" in Segmind's table: this
// workflow is private or not the account's, unless the body says the key
// itself is bad.
func classify(op string, status int, body []byte) error {
	if op == "credits" {
		return providers.ClassifyBalance(status, message(body))
	}
	switch status {
	case http.StatusForbidden:
		return providers.ClassifyForbidden(message(body))
	case http.StatusNotAcceptable:
		m := strings.ToLower(message(body))
		if strings.Contains(m, "credit") || strings.Contains(m, "spend") || strings.Contains(m, "balance") ||
			strings.Contains(m, "billing") || strings.Contains(m, "payment") {
			return providers.ErrCreditsExhausted
		}
		// "Invalid content type" and anything else: a request reelq cannot fix by retrying.
		return providers.ErrInvalidInput
	case http.StatusNotFound, http.StatusGone:
		if op == "submit" {
			return providers.ErrInvalidInput // workflow not found or retired
		}
	case http.StatusUnprocessableEntity:
		var r struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(body, &r) == nil && strings.EqualFold(r.Status, "FAILED") {
			return providers.ErrTaskFailed // the run happened and failed
		}
	}
	return providers.ClassifyStatus(status)
}

// message reads Segmind's {"error": "..."} (or a message/detail field).
func message(body []byte) string {
	var m struct {
		Error        json.RawMessage `json:"error"`
		ErrorMessage json.RawMessage `json:"error_message"`
		Message      json.RawMessage `json:"message"`
		Detail       json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	return providers.FirstNonEmpty(text(m.Error), text(m.ErrorMessage), text(m.Message), text(m.Detail))
}

// retryAfter honours Retry-After if sent, else x-rate-limit-reset-at-utc.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if d := providers.ParseRetryAfter(h.Get("Retry-After"), now); d > 0 {
		return d
	}
	return ParseResetAt(h.Get(ResetHeader), now)
}

var resetLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05.999999999 -0700 MST",
	"2006-01-02 15:04:05.999999999 MST",
}

// ParseResetAt reads a rate-limit reset time and returns how long until
// it, relative to now, capped at MaxRetryAfter. It accepts RFC 3339 (with
// or without a zone; no zone means UTC), a space instead of the "T", an
// HTTP date, Unix seconds or milliseconds, and small numbers as seconds to
// wait. It returns 0 for an absent, bad or past value.
func ParseResetAt(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 64 {
		return 0
	}
	var at time.Time
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		switch {
		case n != n || n <= 0: // NaN or non-positive
			return 0
		case n < 1e9: // seconds to wait
			return clampWait(time.Duration(n * float64(time.Second)))
		case n < 1e11: // Unix seconds
			sec := math.Floor(n)
			at = time.Unix(int64(sec), int64((n-sec)*1e9))
		case n < 1e14: // Unix milliseconds
			at = time.UnixMilli(int64(n))
		default:
			return 0
		}
	} else {
		var perr error = errors.New("no layout matched")
		for _, l := range resetLayouts {
			if at, perr = time.ParseInLocation(l, v, time.UTC); perr == nil {
				break
			}
		}
		if perr != nil {
			t, err := http.ParseTime(v)
			if err != nil {
				return 0
			}
			at = t
		}
	}
	return clampWait(at.Sub(now))
}

func clampWait(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return 0
	case d > MaxRetryAfter:
		return MaxRetryAfter
	}
	return d
}

// text renders a JSON value that may be a string or an object as text.
func text(raw json.RawMessage) string {
	var m struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(bytes.TrimSpace(raw), &m) == nil {
		if v := providers.FirstNonEmpty(m.Message, m.Error); v != "" {
			return v
		}
	}
	return providers.Text(raw)
}
