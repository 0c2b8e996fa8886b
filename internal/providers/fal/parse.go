package fal

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/reelq/reelq/internal/providers"
)

// classify maps a non-2xx answer. fal answers 401 for a wrong key and 403
// "User is locked. Reason: Exhausted balance" for an account out of
// credit (an admin lock pauses the provider as an auth failure would:
// only people can lift it); 422 carries the model's validation detail.
func classify(status int, body []byte) error {
	m := strings.ToLower(message(body))
	switch {
	case status == http.StatusForbidden && strings.Contains(m, "user is locked"):
		if strings.Contains(m, "balance") {
			return providers.ErrCreditsExhausted
		}
		return providers.ErrAuth
	case status == http.StatusForbidden:
		return providers.ClassifyForbidden(m)
	case status == 499:
		return providers.ErrTaskFailed
	}
	return providers.ClassifyStatus(status)
}

// message reads fal's error bodies: {"detail": "text"}, the 422 list
// {"detail": [{loc, msg, type}]} ("body.duration: msg (one_of)"), and the
// request errors {"detail", "error_type"} (" error_type=request_timeout"),
// and {"status": "ALREADY_COMPLETED"}.
func message(body []byte) string {
	var m struct {
		Detail    json.RawMessage `json:"detail"`
		ErrorType string          `json:"error_type"`
		Status    string          `json:"status"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	msg := detail(m.Detail)
	if msg == "" {
		msg = m.Status
	}
	if m.ErrorType != "" {
		msg += " error_type=" + m.ErrorType
	}
	return strings.TrimSpace(msg)
}

// detail renders a 422 detail list with each item's type, or the text.
func detail(raw json.RawMessage) string {
	var items []struct {
		Loc  []any  `json:"loc"`
		Msg  string `json:"msg"`
		Type string `json:"type"`
	}
	if json.Unmarshal(raw, &items) != nil {
		return providers.Text(raw)
	}
	parts := make([]string, 0, len(items))
	for _, it := range items {
		loc := make([]string, 0, len(it.Loc))
		for _, l := range it.Loc {
			loc = append(loc, strings.Trim(strconv.Quote(toString(l)), `"`))
		}
		p := strings.Join(loc, ".") + ": " + it.Msg
		if it.Type != "" {
			p += " (" + it.Type + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// ParseOutput reads a model's response: the JSON body itself (what fal's
// client returns as data), whose file objects {url, content_type,
// file_name} are the outputs, by key ("video" first, then the others in
// key order; a list's items as key#n). A body wrapped as the docs' example
// {status, logs, response} is read inside response.
func ParseOutput(body []byte) ([]providers.Output, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, err
	}
	if r, ok := top["response"]; ok && len(top) <= 3 {
		var inner map[string]json.RawMessage
		if json.Unmarshal(r, &inner) == nil && inner != nil {
			top = inner
		}
	}
	if top == nil {
		return nil, errors.New("not a JSON object")
	}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "video":
			return -1
		case b == "video":
			return 1
		}
		return strings.Compare(a, b)
	})
	var outs []providers.Output
	for _, k := range keys {
		if f, ok := file(top[k]); ok {
			f.Name = k
			outs = append(outs, f)
			continue
		}
		var list []json.RawMessage
		if json.Unmarshal(top[k], &list) == nil {
			for i, item := range list {
				if f, ok := file(item); ok {
					f.Name = k + "#" + strconv.Itoa(i+1)
					outs = append(outs, f)
				}
			}
		}
	}
	return outs, nil
}

func file(raw json.RawMessage) (providers.Output, bool) {
	var f struct {
		URL         string `json:"url"`
		ContentType string `json:"content_type"`
	}
	if json.Unmarshal(raw, &f) != nil || f.URL == "" {
		return providers.Output{}, false
	}
	return providers.Output{URL: f.URL, ContentType: f.ContentType}, true
}
