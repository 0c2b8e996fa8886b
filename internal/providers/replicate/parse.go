package replicate

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/reelq/reelq/internal/providers"
)

// prediction is the part of Replicate's prediction object reelq reads.
type prediction struct {
	ID          string          `json:"id"`
	Status      string          `json:"status"`
	Output      json.RawMessage `json:"output"`
	Error       json.RawMessage `json:"error"`
	DataRemoved bool            `json:"data_removed"`
	URLs        struct {
		Get    string `json:"get"`
		Cancel string `json:"cancel"`
	} `json:"urls"`
}

// ParsePrediction reads a prediction: starting and processing are
// pending; succeeded carries the output (a URL, a list of URLs, or an
// object whose values are); failed carries the model's error; canceled
// and aborted (its deadline passed before it started, unbilled) end it
// without output.
func ParsePrediction(body []byte) (providers.Status, error) {
	var p prediction
	if err := json.Unmarshal(body, &p); err != nil {
		return providers.Status{}, err
	}
	if p.Status == "" {
		return providers.Status{}, errors.New("no status")
	}
	st := providers.Status{Raw: p.Status, Progress: -1}
	fail := func(msg string) providers.Status {
		st.State = providers.Failed
		st.Err = &providers.Error{Provider: Name, Op: "poll", Class: providers.ErrTaskFailed, Message: msg}
		return st
	}
	switch p.Status {
	case "succeeded":
		outs := outputs(p.Output)
		if len(outs) == 0 {
			if p.DataRemoved {
				return fail("the prediction's output was removed (data_removed): Replicate deletes an API prediction's outputs after about an hour"), nil
			}
			return fail("succeeded without an output URL: " + providers.ClipText(string(p.Output), 200)), nil
		}
		st.State, st.Progress, st.Outputs = providers.Succeeded, 100, outs
		return providers.Vet(Name, st), nil
	case "failed":
		msg := providers.Text(p.Error)
		if msg == "" {
			msg = "status failed"
		}
		return fail(msg), nil
	case "canceled":
		return fail("the prediction was canceled"), nil
	case "aborted":
		return fail("the prediction was aborted: its deadline passed before it started (not billed)"), nil
	}
	return st, nil
}

// outputs collects the URLs of an output: a string, a list, or an
// object's values (named by key), in order.
func outputs(raw json.RawMessage) []providers.Output {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return nil
		}
		return []providers.Output{{URL: s, Name: "output"}}
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		var outs []providers.Output
		for i, it := range list {
			if json.Unmarshal(it, &s) == nil && s != "" {
				outs = append(outs, providers.Output{URL: s, Name: "output#" + strconv.Itoa(i+1)})
			}
		}
		return outs
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) == nil {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var outs []providers.Output
		for _, k := range keys {
			if json.Unmarshal(obj[k], &s) == nil && strings.HasPrefix(s, "http") {
				outs = append(outs, providers.Output{URL: s, Name: k})
			}
		}
		return outs
	}
	return nil
}

// classify maps a non-2xx answer: 401 is the token, 402 is credit
// ("Insufficient credit", or "Billing required" before billing is set
// up), 422 an invalid input or version (the detail is kept), 429 a rate
// limit whose Retry-After is honoured.
func classify(status int, body []byte) error {
	if status == http.StatusForbidden {
		return providers.ClassifyForbidden(message(body))
	}
	return providers.ClassifyStatus(status)
}

// message reads Replicate's problem JSON {title, detail, status,
// invalid_fields}: "Input validation failed: input.aspect_ratio:
// aspect_ratio must be one of ... (enum)", or a bare {detail}.
func message(body []byte) string {
	var m struct {
		Title   string `json:"title"`
		Detail  string `json:"detail"`
		Invalid []struct {
			Type        string `json:"type"`
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"invalid_fields"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	if len(m.Invalid) > 0 {
		parts := make([]string, len(m.Invalid))
		for i, f := range m.Invalid {
			parts[i] = f.Field + ": " + f.Description + " (" + f.Type + ")"
		}
		return strings.TrimSpace(m.Title + ": " + strings.Join(parts, "; "))
	}
	switch {
	case m.Title != "" && m.Detail != "":
		return m.Title + ": " + m.Detail
	case m.Detail != "":
		return m.Detail
	}
	return m.Title
}
