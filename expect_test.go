package reelq_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/reelq/reelq"
)

// A job's expect is checked with the rest of the job: each broken rule is
// named by its field; a good one passes, and it is not part of the
// digest (the content id stays the same).
func TestJobExpectValidation(t *testing.T) {
	base := reelq.Job{ID: "x1", Provider: "samsar", Input: json.RawMessage(`{"prompt":"p","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":5}`)}
	neg, big := -1.0, 1e9
	for _, tc := range []struct {
		expect *reelq.Expect
		want   []string
	}{
		{&reelq.Expect{Types: []string{"video/*", "audio/mp4", "application/json"}}, nil},
		{&reelq.Expect{Types: []string{"video", "*/*", "video/mp4; x"}}, []string{`expect.types[0] "video"`, `expect.types[1] "*/*"`, `expect.types[2]`}},
		{&reelq.Expect{Duration: &neg, Tolerance: &big, MinBytes: -2}, []string{"expect.duration -1", "expect.tolerance 1e+09", "expect.min_bytes -2"}},
	} {
		j := base
		j.Expect = tc.expect
		err := j.Validate(nil, reelq.Limits{})
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%+v: %v, want valid", tc.expect, err)
			}
			continue
		}
		if !errors.Is(err, reelq.ErrInvalidJob) {
			t.Fatalf("%+v: %v, want ErrInvalidJob", tc.expect, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v, want it to name %q", tc.expect, err, w)
			}
		}
	}
	with := base
	with.Expect = &reelq.Expect{MinBytes: 1}
	if with.Digest() != base.Digest() {
		t.Error("expect changed the job's digest")
	}
	if _, err := reelq.DecodeJob([]byte(`{"provider":"samsar","input":{},"expect":{"types":["video/*"],"duration":8,"audio":true}}`)); err != nil {
		t.Errorf("a job with expect: %v", err)
	}
}
