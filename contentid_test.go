package reelq_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/wire"
)

// Different inputs never share a content id: the digest canonicalises
// through JSON decoding, which replaces invalid UTF-8 and lone UTF-16
// surrogate escapes with U+FFFD and keeps only the last of a repeated
// key, so such inputs are refused, naming the field and the byte. (Before,
// {"prompt":"\xff"} and {"prompt":"\xfe"} were the same job, and the
// provider was paid for U+FFFD.)
func TestContentIDsOfDifferentInputsDiffer(t *testing.T) {
	t.Parallel()
	prompt := func(p string) json.RawMessage {
		return json.RawMessage(`{"prompt":"a lighthouse ` + p + `","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)
	}
	cases := []struct {
		name     string
		a, b     json.RawMessage
		field    string
		refusedB string // what the error says about b
	}{
		{"invalid UTF-8", prompt("\xfe"), prompt("\xff"), "input", "not valid UTF-8 (byte 25)"},
		{"lone surrogates", prompt(`\udc00`), prompt(`\ud800`), "input", `lone UTF-16 surrogate escape \ud800 (byte 25)`},
		{"a repeated key", prompt("x"), json.RawMessage(`{"prompt":"y","prompt":"a lighthouse x","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`), "input", `gives the key "prompt" twice`},
		{"metadata", nil, nil, "metadata", "not valid UTF-8"},
	}
	for _, tc := range cases {
		a := reelq.Job{Provider: "samsar", Input: tc.a}
		b := reelq.Job{Provider: "samsar", Input: tc.b}
		if tc.field == "metadata" {
			a.Input, b.Input = prompt("x"), prompt("x")
			a.Metadata, b.Metadata = json.RawMessage("{\"k\":\"\xfe\"}"), json.RawMessage("{\"k\":\"\xff\"}")
		}
		err := b.Validate(nil, reelq.Limits{})
		if !errors.Is(err, reelq.ErrInvalidJob) || !strings.Contains(err.Error(), tc.field+" ") || !strings.Contains(err.Error(), tc.refusedB) {
			t.Errorf("%s: Validate = %v, want the %s refused: %s", tc.name, err, tc.field, tc.refusedB)
		}
		if a.Validate(nil, reelq.Limits{}) == nil && a.Digest() == b.Digest() && b.Validate(nil, reelq.Limits{}) == nil {
			t.Errorf("%s: two different inputs share digest %s", tc.name, a.Digest())
		}
	}
	// Valid surrogate pairs, escaped quotes and backslashes, and a key
	// repeated in different objects are fine.
	for _, in := range []string{
		`{"prompt":"a lighthouse \ud83d\ude00 \"\\u\" \\","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`,
		`{"prompt":"a lighthouse","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5,"x":[{"k":1},{"k":2}],"y":{"k":{"k":1}}}`,
	} {
		j := reelq.Job{Provider: "samsar", Input: json.RawMessage(in)}
		if err := j.Validate(nil, reelq.Limits{}); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
}

// An id of the content-id form names its content: another producer
// cannot take the id of a job it can compute by publishing other content
// under it.
func TestContentIDFormMustMatchTheContent(t *testing.T) {
	t.Parallel()
	j := reelq.Job{Provider: "samsar", Input: json.RawMessage(`{"prompt":"a lighthouse at dusk"}`)}
	own := wire.ContentID(j.Digest(), 1)
	other := reelq.Job{Provider: "samsar", Input: json.RawMessage(`{"prompt":"something else"}`)}
	for _, id := range []string{own, own + "-2"} {
		j.ID = id
		if err := j.Validate(nil, reelq.Limits{}); err != nil {
			t.Errorf("its own content id %s: %v", id, err)
		}
		other.ID = id
		if err := other.Validate(nil, reelq.Limits{}); !errors.Is(err, reelq.ErrInvalidJob) || !strings.Contains(err.Error(), "form of a content id") {
			t.Errorf("other content under %s: %v, want refused", id, err)
		}
	}
	other.ID = "j-my-own-id"
	if err := other.Validate(nil, reelq.Limits{}); err != nil {
		t.Errorf("an id of another form: %v", err)
	}
}
