package providers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/reelq/reelq/internal/providers/kind"
)

// Text renders a JSON value that providers send either as a string or as
// an object (error messages, a message field) as plain text.
func Text(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// StrictDecode decodes a job input, rejecting unknown fields (see [kind.StrictDecode]).
func StrictDecode(raw json.RawMessage, v any) error { return kind.StrictDecode(raw, v) }

// FastAPIDetail renders a FastAPI validation "detail" (what FastAPI
// servers answer 422 with) as "body.options: msg; ...", or the value as text
// if it is not a list of items.
func FastAPIDetail(raw json.RawMessage) string {
	var items []struct {
		Loc []any  `json:"loc"`
		Msg string `json:"msg"`
	}
	if json.Unmarshal(raw, &items) != nil {
		return Text(raw)
	}
	parts := make([]string, 0, len(items))
	for _, it := range items {
		loc := make([]string, 0, len(it.Loc))
		for _, l := range it.Loc {
			loc = append(loc, fmt.Sprint(l))
		}
		if len(loc) > 0 {
			parts = append(parts, strings.Join(loc, ".")+": "+it.Msg)
		} else {
			parts = append(parts, it.Msg)
		}
	}
	return strings.Join(parts, "; ")
}

// FirstNonEmpty returns the first non-empty string.
func FirstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Scalar renders a JSON string or number as trimmed text ("" for null,
// absent, or any other JSON type). Task ids arrive as either.
func Scalar(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}
