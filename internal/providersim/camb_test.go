package providersim_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/providersim"
)

var cambKey = map[string]string{"x-api-key": "ck"}

func cambCreate(t *testing.T, f *fixture, fields [][2]string, text string) reply {
	t.Helper()
	file := ""
	if text != "" {
		file = "file"
	}
	body, ctype := multipartBody(t, fields, file, "story.txt", text)
	return f.do(t, "POST", "/apis/story", map[string]string{"x-api-key": "ck", "Content-Type": ctype}, body)
}

func TestCambLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "camb", providersim.Knobs{})
	r := cambCreate(t, f, [][2]string{{"source_language", "1"}, {"title", "The Lighthouse"}}, "Once upon a time.")
	wantStatus(t, "create", r, 200)
	id := str(r.body["task_id"])
	r = f.do(t, "GET", "/apis/story/"+id, cambKey, nil)
	if r.body["status"] != "PENDING" {
		t.Fatalf("status %v", r.body)
	}
	f.clock.advance(time.Minute)
	r = f.do(t, "GET", "/apis/story/"+id, cambKey, nil)
	run, ok := r.body["run_id"].(float64)
	if r.body["status"] != "SUCCESS" || !ok {
		t.Fatalf("status %v", r.body)
	}
	r = f.do(t, "GET", fmt.Sprintf("/apis/story-result/%d?include_transcript=true", int(run)), cambKey, nil)
	wantStatus(t, "result", r, 200)
	if str(r.body["audio_url"]) != f.url+"/outputs/camb/"+id+"/story.wav" || str(r.body["dialogue_url"]) == "" || r.body["transcript"] == nil {
		t.Errorf("result %v", r.body)
	}
	wantStatus(t, "unknown run", f.do(t, "GET", "/apis/story-result/999999", cambKey, nil), 404)
	if n := f.sim.Stats(0)["camb"].Submissions["The Lighthouse"]; n != 1 {
		t.Errorf("submissions by title = %d", n)
	}
}

func TestCambSubmissionKeyWithoutTitle(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "camb", providersim.Knobs{})
	text := strings.Repeat("abcdefghij", 10)
	wantStatus(t, "create", cambCreate(t, f, [][2]string{{"source_language", "1"}}, text), 200)
	if n := f.sim.Stats(0)["camb"].Submissions[text[:60]]; n != 1 {
		t.Errorf("submissions %v, want the first 60 characters as the key", f.sim.Stats(0)["camb"].Submissions)
	}
}

func TestCambFailures(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "camb", providersim.Knobs{FailRate: 1})
	seen := map[string]bool{}
	for range 2 {
		id := str(cambCreate(t, f, [][2]string{{"source_language", "1"}}, "text").body["task_id"])
		f.clock.advance(time.Minute)
		r := f.do(t, "GET", "/apis/story/"+id, cambKey, nil)
		seen[fmt.Sprint(r.body["status"], "/", r.body["exception_reason"])] = true
	}
	if !seen["TIMEOUT/<nil>"] || !seen["ERROR/PROCESSING_ERROR"] {
		t.Errorf("failure forms %v, want TIMEOUT and ERROR/PROCESSING_ERROR", seen)
	}
}

func TestCambPaymentRequired(t *testing.T) {
	t.Parallel()
	zero := 0.0
	f := newFixture(t, "camb", providersim.Knobs{Credits: &zero})
	seen := map[string]bool{}
	for range 2 {
		r := cambCreate(t, f, [][2]string{{"source_language", "1"}, {"title", "Broke"}}, "text")
		wantStatus(t, "create without credits", r, 200) // accepted, fails when processed
		r = f.do(t, "GET", "/apis/story/"+str(r.body["task_id"]), cambKey, nil)
		seen[fmt.Sprint(r.body["status"], "/", r.body["exception_reason"])] = true
	}
	if !seen["ERROR/PAYMENT_REQUIRED"] || !seen["PAYMENT_REQUIRED/<nil>"] {
		t.Errorf("payment forms %v, want both the new and the old enum", seen)
	}
	st := f.sim.Stats(0)["camb"]
	if len(st.Submissions) != 0 || st.Spent != 0 || st.Active != 0 {
		t.Errorf("unpaid stories counted: %+v", st)
	}
}

func TestCambErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "camb", providersim.Knobs{APIKey: "ck"})
	r := f.do(t, "GET", "/apis/story/x", map[string]string{"x-api-key": "bad"}, nil)
	wantStatus(t, "wrong key", r, 401)
	if r.body["error"] != "Invalid API key" || r.body["status"] != 401.0 {
		t.Errorf("401 body %v", r.body)
	}
	for name, tc := range map[string]struct {
		fields [][2]string
		text   string
		loc    string
	}{
		"no file":      {[][2]string{{"source_language", "1"}}, "", "file"},
		"no language":  {nil, "text", "source_language"},
		"bad language": {[][2]string{{"source_language", "149"}}, "text", "source_language"},
		"short title":  {[][2]string{{"source_language", "1"}, {"title", "ab"}}, "text", "title"},
	} {
		r := cambCreate(t, f, tc.fields, tc.text)
		wantStatus(t, name, r, 422)
		d := r.body["detail"].([]any)[0].(map[string]any)
		if loc := d["loc"].([]any); loc[1] != tc.loc {
			t.Errorf("%s: loc %v, want %s", name, loc, tc.loc)
		}
	}
	wantStatus(t, "unknown task", f.do(t, "GET", "/apis/story/nope", cambKey, nil), 404)
}
