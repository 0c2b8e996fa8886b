package segmind_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/providertest"
	"github.com/reelq/reelq/internal/providers/segmind"
	"github.com/reelq/reelq/internal/providers/segmind/input"
	"github.com/reelq/reelq/internal/providersim"
)

func newClient(baseURL, key string) providers.Provider {
	return segmind.New(providers.Config{BaseURL: baseURL, APIKey: key}, segmind.Options{})
}

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, segmind.Spec, providertest.Harness{
		ValidInput:     json.RawMessage(`{}`),
		ForbiddenInput: json.RawMessage(`{"prompt":"a private storyboard ` + providersim.ForbiddenMarker + `"}`),
		InvalidInputs: map[string]json.RawMessage{
			"array":              json.RawMessage(`["x"]`),
			"string":             json.RawMessage(`"story"`),
			"bad workflow_id":    json.RawMessage(`{"workflow_id":"storyboard"}`),
			"workflow_id number": json.RawMessage(`{"workflow_id":42}`),
			"uppercase hex":      json.RawMessage(`{"workflow_id":"67EE7AECD4FFDB6B8C9315EA-v4"}`),
			"empty key":          json.RawMessage(`{"":"x"}`),
		},
	})
}

func TestValidate(t *testing.T) {
	t.Parallel()
	c := segmind.New(providers.Config{}, segmind.Options{})
	for _, in := range []string{``, `{}`, `null`, `{"workflow_id":"0123456789abcdef01234567-v12","input_image":"https://x/y.png"}`} {
		if err := c.Validate(json.RawMessage(in)); err != nil {
			t.Errorf("Validate(%s): %v", in, err)
		}
	}
	err := c.Validate(json.RawMessage(`{"workflow_id":"nope"}`))
	if !errors.Is(err, providers.ErrInvalidInput) || !strings.Contains(err.Error(), "input.workflow_id") {
		t.Errorf("Validate(bad id) = %v, want invalid input naming input.workflow_id", err)
	}
	bad := segmind.New(providers.Config{}, segmind.Options{Input: input.Options{WorkflowID: "not-a-workflow"}})
	if err := bad.Validate(json.RawMessage(`{}`)); !errors.Is(err, providers.ErrInvalidInput) {
		t.Errorf("Validate with a bad SEGMIND_WORKFLOW_ID = %v, want invalid input", err)
	}
}

func TestEstimate(t *testing.T) {
	t.Parallel()
	c := segmind.New(providers.Config{}, segmind.Options{})
	if got := c.Estimate(json.RawMessage(`{}`)); got.Amount != input.DefaultPricePerRun.Float() || got.Unit != "usd" {
		t.Errorf("Estimate = %+v, want %v usd", got, input.DefaultPricePerRun)
	}
	c = segmind.New(providers.Config{}, segmind.Options{Input: input.Options{PricePerRun: 500_000}})
	if got := c.Estimate(json.RawMessage(`{}`)); got.Amount != 0.5 {
		t.Errorf("Estimate with PricePerRun 0.5 = %+v", got)
	}
}

// SEGMIND_PRICE_PER_RUN is an amount read exactly, as money.Parse reads
// it: an exponent or a seventh decimal is refused, not rounded.
func TestPricePerRunIsExact(t *testing.T) {
	t.Parallel()
	r, err := input.Kind.Rules(map[string]string{"SEGMIND_PRICE_PER_RUN": "0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Estimate(json.RawMessage(`{}`)); got.Amount != 0.1 {
		t.Errorf("Estimate with SEGMIND_PRICE_PER_RUN=0.1 = %+v", got)
	}
	for _, v := range []string{"1e3", "2.40660001", "-1", "$2"} {
		if _, err := input.Kind.Rules(map[string]string{"SEGMIND_PRICE_PER_RUN": v}); err == nil || !strings.Contains(err.Error(), "SEGMIND_PRICE_PER_RUN") {
			t.Errorf("SEGMIND_PRICE_PER_RUN=%s: %v, want an error naming it", v, err)
		}
	}
}

// TestSubmitRequest checks the wire form: path, both auth headers, JSON
// content type, and the reserved workflow_id removed from the body.
func TestSubmitRequest(t *testing.T) {
	t.Parallel()
	const key = "SG_0123456789abcdef"
	var (
		mu   sync.Mutex
		got  *http.Request
		body map[string]any
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got = r.Clone(context.Background())
		_ = json.NewDecoder(r.Body).Decode(&body)
		_, _ = w.Write([]byte(`{"request_id":"r1","status":"QUEUED"}`)) // no poll_url
	}))
	defer srv.Close()
	c := segmind.New(providers.Config{BaseURL: srv.URL, APIKey: key}, segmind.Options{})
	task, err := c.Submit(context.Background(), providers.Request{JobID: "j", Input: json.RawMessage(`{"workflow_id":"0123456789abcdef01234567-v2","str_gl3y5f":"hello"}`)})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if task.ID != "r1" || task.PollURL != "" {
		t.Errorf("task = %+v", task)
	}
	if got.URL.Path != "/workflows/0123456789abcdef01234567-v2" {
		t.Errorf("path %s", got.URL.Path)
	}
	if got.Header.Get("Authorization") != "Bearer "+key || got.Header.Get("x-api-key") != key {
		t.Errorf("auth headers %v", got.Header)
	}
	if got.Header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", got.Header.Get("Content-Type"))
	}
	if _, ok := body["workflow_id"]; ok || body["str_gl3y5f"] != "hello" {
		t.Errorf("body %v", body)
	}
}

// TestPollURL checks that a poll_url on the API host is followed and one
// elsewhere is not (the key would go with it).
func TestPollURL(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		paths []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		paths = append(paths, r.URL.Path)
		_, _ = w.Write([]byte(`{"status":"PROCESSING","output":""}`))
	}))
	defer srv.Close()
	c := newClient(srv.URL, "k")
	for _, task := range []providers.Task{
		{ID: "a", PollURL: srv.URL + "/workflows/request/a-from-poll-url"},
		{ID: "b", PollURL: "https://elsewhere.example/workflows/request/b"},
		{ID: "c"},
	} {
		if _, err := c.Poll(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"/workflows/request/a-from-poll-url", "/workflows/request/b", "/workflows/request/c"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("polled %v, want %v", paths, want)
	}
}

// TestErrorClasses checks Segmind's status codes and bodies map to the
// right classes, including 406's two meanings and the 429 reset header.
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	reset := time.Now().Add(20 * time.Second).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name   string
		status int
		header map[string]string
		body   string
		class  error
		wait   bool
	}{
		{"credits", 406, nil, string(providertest.Fixture(t, "error_insufficient_credits.json")), providers.ErrCreditsExhausted, false},
		{"spend limit", 406, nil, `{"error":"Team spend limit reached"}`, providers.ErrCreditsExhausted, false},
		{"content type", 406, nil, string(providertest.Fixture(t, "error_invalid_content_type.json")), providers.ErrInvalidInput, false},
		{"bad request", 400, nil, `{"error":"Invalid parameters"}`, providers.ErrInvalidInput, false},
		{"unauthorized", 401, nil, `{"error":"Missing Authorization or x-api-key in header"}`, providers.ErrAuth, false},
		{"forbidden", 403, nil, `{"error":"Forbidden"}`, providers.ErrForbidden, false},
		{"private workflow", 403, nil, `{"error":"Forbidden: workflow is private or not shared with this account"}`, providers.ErrForbidden, false},
		{"forbidden invalid key", 403, nil, `{"error":"Unauthorized. API key is invalid or may have expired. Please check your API key."}`, providers.ErrAuth, false},
		{"forbidden missing key", 403, nil, `{"error":"Missing Authorization or x-api-key in header"}`, providers.ErrAuth, false},
		{"workflow not found", 404, nil, `{"error":"Workflow not found"}`, providers.ErrInvalidInput, false},
		{"rate limited reset header", 429, map[string]string{"x-rate-limit-reset-at-utc": reset}, `{"error":"rate limit"}`, providers.ErrRateLimited, true},
		{"rate limited retry-after", 429, map[string]string{"Retry-After": "7"}, `{"error":"rate limit"}`, providers.ErrRateLimited, true},
		{"server error", 500, nil, `{"error":"Internal server error"}`, providers.ErrRetryable, false},
		{"bad gateway", 502, nil, `<html>bad gateway</html>`, providers.ErrRetryable, false},
		{"timeout", 504, nil, ``, providers.ErrRetryable, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			_, err := newClient(srv.URL, "SG_secret").Submit(context.Background(), providers.Request{Input: json.RawMessage(`{}`)})
			if !errors.Is(err, tc.class) {
				t.Fatalf("err %v, want %v", err, tc.class)
			}
			if ra := providers.RetryAfter(err); tc.wait != (ra > 0) {
				t.Errorf("RetryAfter = %v", ra)
			}
		})
	}
}

func TestParseStatusFixtures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file    string
		state   providers.State
		raw     string
		outputs []providers.Output
		msg     string
	}{
		{"status_queued.json", providers.Pending, "QUEUED", nil, ""},
		{"status_processing.json", providers.Pending, "PROCESSING", nil, ""},
		{"status_unknown.json", providers.Pending, "WAITING_FOR_GPU", nil, ""},
		{"status_completed.json", providers.Succeeded, "COMPLETED", []providers.Output{
			{URL: "https://images.segmind.com/outputs/4f74/storyboard.png", ContentType: "image/png", Name: "Storyboard"},
			{URL: "https://images.segmind.com/outputs/4f74/story.mp4", ContentType: "video/mp4", Name: "Video"},
			{URL: "data:text/plain;charset=utf-8,Scene%201:%20a%20lighthouse%20at%20dawn.", ContentType: "text/plain", Name: "Script"},
		}, ""},
		{"status_completed_array.json", providers.Succeeded, "COMPLETED", []providers.Output{
			{URL: "https://images.segmind.com/outputs/4f74/story.mp4", ContentType: "video/mp4", Name: "Video"},
		}, ""},
		{"status_failed_error.json", providers.Failed, "FAILED", nil, "Node 'Video Generator' failed"},
		{"status_failed_error_message.json", providers.Failed, "FAILED", nil, "Workflow execution failed"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			st, err := segmind.ParseStatus(providertest.Fixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tc.state || st.Raw != tc.raw {
				t.Fatalf("state %s raw %q, want %s %q", st.State, st.Raw, tc.state, tc.raw)
			}
			if len(st.Outputs) != len(tc.outputs) {
				t.Fatalf("outputs %+v, want %+v", st.Outputs, tc.outputs)
			}
			for i := range tc.outputs {
				if st.Outputs[i] != tc.outputs[i] {
					t.Errorf("output %d = %+v, want %+v", i, st.Outputs[i], tc.outputs[i])
				}
			}
			if tc.msg != "" && (!errors.Is(st.Err, providers.ErrTaskFailed) || !strings.Contains(st.Err.Error(), tc.msg)) {
				t.Errorf("Err %v, want task failed with %q", st.Err, tc.msg)
			}
		})
	}
}

func TestParseCreditsFixture(t *testing.T) {
	t.Parallel()
	c, err := segmind.ParseCredits(providertest.Fixture(t, "credits.json"))
	if err != nil || c.Credits != 12.5 || c.FreeCredits != 0 {
		t.Fatalf("ParseCredits = %+v, %v", c, err)
	}
	if _, err := segmind.ParseCredits([]byte(`{}`)); err == nil {
		t.Error("ParseCredits({}) succeeded")
	}
}

func TestParseResetAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 4, 11, 18, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"garbage", 0},
		{"2025-04-11T18:00:30Z", 30 * time.Second},
		{"2025-04-11T18:00:30.5Z", 30500 * time.Millisecond},
		{"2025-04-11T20:00:30+02:00", 30 * time.Second},
		{"2025-04-11T18:00:30", 30 * time.Second},
		{"2025-04-11 18:00:30", 30 * time.Second},
		{"2025-04-11 18:00:30+00:00", 30 * time.Second},
		{"Fri, 11 Apr 2025 18:00:30 GMT", 30 * time.Second},
		{"1744394430", 30 * time.Second},    // Unix seconds
		{"1744394430000", 30 * time.Second}, // Unix milliseconds
		{"12", 12 * time.Second},            // seconds to wait
		{"2025-04-11T17:59:00Z", 0},         // past
		{"2030-01-01T00:00:00Z", segmind.MaxRetryAfter},
		{"-5", 0},
		{"NaN", 0},
	} {
		if got := segmind.ParseResetAt(tc.in, now); got != tc.want {
			t.Errorf("ParseResetAt(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	providertest.AddFixtures(f, "status_*.json")
	f.Add([]byte(`{"status":"COMPLETED","output":"not json"}`))
	f.Add([]byte(`{"status":"COMPLETED","output":"https://x/y.mp4"}`))
	f.Add([]byte(`{"status":"COMPLETED","output":{"keyname":"a","value":{"data":"d"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := segmind.ParseStatus(body)
		if err != nil {
			return
		}
		if st.State == providers.Succeeded && len(st.Outputs) == 0 {
			t.Errorf("succeeded without outputs: %s", body)
		}
		if st.State == providers.Failed && st.Err == nil {
			t.Errorf("failed without Err: %s", body)
		}
	})
}

func FuzzParseResetAt(f *testing.F) {
	for _, s := range []string{"2025-04-11T18:00:30Z", "1744394430", "12", "Fri, 11 Apr 2025 18:00:30 GMT", "1e300", "-1e300"} {
		f.Add(s)
	}
	now := time.Date(2025, 4, 11, 18, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := segmind.ParseResetAt(v, now); d < 0 || d > segmind.MaxRetryAfter {
			t.Errorf("ParseResetAt(%q) = %v out of range", v, d)
		}
	})
}

// TestRequestIDFromPollURL checks a create answer whose request_id was
// renamed: the poll_url on the API host still names the request; one
// elsewhere does not, and the submission is unknown.
func TestRequestIDFromPollURL(t *testing.T) {
	t.Parallel()
	var answer string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write([]byte(answer))
	}))
	defer srv.Close()
	c := newClient(srv.URL, "SG_key")
	for body, want := range map[string]string{
		`{"requestId":"r9","poll_url":"` + srv.URL + `/workflows/request/r9"}`:           "r9",
		`{"request_id":42,"poll_url":""}`:                                                "42",
		`{"requestId":"r9","poll_url":"https://elsewhere.example/workflows/request/r9"}`: "",
		`{"requestId":"r9","poll_url":"` + srv.URL + `/other/r9"}`:                       "",
		`{"request_id":"has space"}`:                                                     "",
	} {
		mu.Lock()
		answer = body
		mu.Unlock()
		task, err := c.Submit(context.Background(), providers.Request{Input: json.RawMessage(`{}`)})
		switch {
		case want == "" && !errors.Is(err, providers.ErrUnknownSubmission):
			t.Errorf("%s: task %+v err %v, want unknown submission", body, task, err)
		case want != "" && (err != nil || task.ID != want):
			t.Errorf("%s: task %+v err %v, want id %s", body, task, err, want)
		}
	}
}

// TestOutputURLsChecked checks that a value typed image or video must be a
// usable URL, while a text value is kept as text.
func TestOutputURLsChecked(t *testing.T) {
	t.Parallel()
	completed := func(items string) []byte {
		b, _ := json.Marshal(map[string]string{"status": "COMPLETED", "output": items})
		return b
	}
	for _, bad := range []string{"javascript:alert(1)", "file:///etc/passwd", "data:video/mp4;base64,AAAA", "https://u:p@x.example/v.mp4", "s3://bucket/v.mp4"} {
		st, err := segmind.ParseStatus(completed(`[{"keyname":"Video","value":{"data":"` + bad + `","type":"video"}}]`))
		if err != nil || st.State != providers.Failed || !errors.Is(st.Err, providers.ErrTaskFailed) || !strings.Contains(st.Err.Error(), `"Video"`) {
			t.Errorf("video %q: %+v %v, want a failed task naming the output", bad, st, err)
		}
	}
	st, err := segmind.ParseStatus(completed(`[{"keyname":"Note","value":{"data":"javascript:alert(1)","type":"text"}}]`))
	if err != nil || st.State != providers.Succeeded || st.Outputs[0].ContentType != "text/plain" || !strings.HasPrefix(st.Outputs[0].URL, "data:text/plain;charset=utf-8,") {
		t.Errorf("text value: %+v %v, want an inlined text/plain output", st, err)
	}
}
