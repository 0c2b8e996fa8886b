package samsar_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/providertest"
	"github.com/reelq/reelq/internal/providers/samsar"
	"github.com/reelq/reelq/internal/providersim"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, samsar.Spec, providertest.Harness{
		ValidInput:     json.RawMessage(`{"prompt":"A lighthouse keeper finds a message in a bottle","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":30,"aspect_ratio":"16:9"}`),
		ForbiddenInput: json.RawMessage(`{"prompt":"A lighthouse ` + providersim.ForbiddenMarker + `","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":10}`),
		InvalidInputs: map[string]json.RawMessage{
			"empty":          json.RawMessage(``),
			"not an object":  json.RawMessage(`["prompt"]`),
			"no prompt":      json.RawMessage(`{"image_model":"FLUX1.1PRO","video_model":"LUMA","duration":30}`),
			"long prompt":    json.RawMessage(`{"prompt":"` + strings.Repeat("x", 501) + `","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":30}`),
			"bad image":      json.RawMessage(`{"prompt":"p","image_model":"SDXL","video_model":"LUMA","duration":30}`),
			"bad video":      json.RawMessage(`{"prompt":"p","image_model":"IMAGEN3","video_model":"SORA","duration":30}`),
			"no duration":    json.RawMessage(`{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA"}`),
			"long duration":  json.RawMessage(`{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA","duration":121}`),
			"bad ratio":      json.RawMessage(`{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA","duration":10,"aspect_ratio":"4:3"}`),
			"unknown field":  json.RawMessage(`{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA","duration":10,"promt":"typo"}`),
			"bad webhookUrl": json.RawMessage(`{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA","duration":10,"webhookUrl":"ftp://x"}`),
		},
	})
}

func TestValidateNamesField(t *testing.T) {
	t.Parallel()
	c := samsar.New(providers.Config{}, samsar.Options{})
	err := c.Validate(json.RawMessage(`{"prompt":"` + strings.Repeat("x", 501) + `","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":30}`))
	if !errors.Is(err, providers.ErrInvalidInput) || !strings.Contains(err.Error(), "input.prompt") {
		t.Fatalf("Validate(long prompt) = %v, want invalid input naming input.prompt", err)
	}
}

func TestParseStatusFixtures(t *testing.T) {
	t.Parallel()
	const video = "https://cdn.samsar.one/videos/vid_123.mp4"
	for _, tc := range []struct {
		file  string
		state providers.State
		raw   string
		url   string
		class error
	}{
		{"status_pending_seed.json", providers.Pending, "PENDING", "", nil},
		{"status_completed_seed.json", providers.Succeeded, "COMPLETED", video, nil},
		{"status_completed_june2025.json", providers.Succeeded, "COMPLETED", video, nil},
		{"status_completed_server.json", providers.Succeeded, "COMPLETED", video, nil},
		{"status_completed_no_url.json", providers.Pending, "COMPLETED", "", nil},
		{"status_paused.json", providers.Pending, "PAUSED", "", nil},
		{"status_failed.json", providers.Failed, "FAILED", "", providers.ErrTaskFailed},
		{"status_cancelled.json", providers.Failed, "CANCELLED", "", providers.ErrTaskFailed},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			st, err := samsar.ParseStatus(providertest.Fixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tc.state || st.Raw != tc.raw {
				t.Fatalf("state %s raw %q, want %s %q", st.State, st.Raw, tc.state, tc.raw)
			}
			if tc.url != "" && (len(st.Outputs) != 1 || st.Outputs[0].URL != tc.url) {
				t.Errorf("outputs %+v, want %s", st.Outputs, tc.url)
			}
			if tc.class != nil && !errors.Is(st.Err, tc.class) {
				t.Errorf("Err %v, want %v", st.Err, tc.class)
			}
		})
	}
}

func FuzzParseStatus(f *testing.F) {
	providertest.AddFixtures(f, "*.json")
	f.Add([]byte(`{"status":"COMPLETED","result":"not an object"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := samsar.ParseStatus(body)
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

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		class  error
	}{
		{"missing key", 400, `{"message":"API key is missing or empty."}`, providers.ErrAuth},
		{"validation", 400, `{"message":"prompt is required."}`, providers.ErrInvalidInput},
		{"invalid key", 401, `{"message":"Invalid API key."}`, providers.ErrAuth},
		{"credits generic body", 402, `{"message":"Internal server error while creating video."}`, providers.ErrCreditsExhausted},
		{"wrong credential type", 403, `{"message":"Invalid credential type for this API."}`, providers.ErrAuth},
		{"other user's session", 403, `{"message":"This session belongs to another user."}`, providers.ErrForbidden},
		{"forbidden", 403, `{"message":"Forbidden"}`, providers.ErrForbidden},
		{"not found", 404, `{"message":"Request not found."}`, providers.ErrNotFound},
		{"rate", 429, `{"message":"Too many requests."}`, providers.ErrRateLimited},
		{"server", 500, `{"message":"Internal server error"}`, providers.ErrRetryable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c := samsar.New(providers.Config{BaseURL: srv.URL, APIKey: "samsar-key"}, samsar.Options{})
			_, err := c.Submit(context.Background(), providers.Request{Input: json.RawMessage(`{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA","duration":10}`)})
			if !errors.Is(err, tc.class) {
				t.Fatalf("err %v, want %v", err, tc.class)
			}
		})
	}
}

// TestCheckCreditsFailures checks that a balance endpoint that fails or
// answers without remainingCredits is never read as a balance, healthy
// or exhausted.
func TestCheckCreditsFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		body   string
		class  error
	}{
		{200, `{}`, providers.ErrRetryable},
		{200, `{"remaining_credits": 10}`, providers.ErrRetryable},
		{200, `{"remainingCredits": "lots"}`, providers.ErrRetryable},
		{200, `<html>maintenance</html>`, providers.ErrRetryable},
		{200, `{"remainingCredits": 0}`, providers.ErrCreditsExhausted},
		{402, `{"message":"Insufficient credits"}`, providers.ErrRetryable},
		{503, `{"message":"unavailable"}`, providers.ErrRetryable},
		{404, `{"message":"Not found"}`, providers.ErrNotFound},
		{401, `{"message":"Invalid API key."}`, providers.ErrAuth},
		{400, `{"message":"API key is missing or empty."}`, providers.ErrAuth},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(tc.body))
		}))
		c := samsar.New(providers.Config{BaseURL: srv.URL, APIKey: "k"}, samsar.Options{})
		err := c.CheckCredits(context.Background())
		if !errors.Is(err, tc.class) {
			t.Errorf("HTTP %d %s: %v, want %v", tc.status, tc.body, err, tc.class)
		}
		if tc.class != providers.ErrCreditsExhausted && errors.Is(err, providers.ErrCreditsExhausted) {
			t.Errorf("HTTP %d %s reads as exhausted credits", tc.status, tc.body)
		}
		srv.Close()
	}
}

// The job's callback URL goes in webhookUrl, unless the job names its
// own: Samsar takes one URL per movie, and the user's is kept.
func TestSubmitWebhookURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, input, callback, want string }{
		{"callback only", `{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA","duration":10}`, "https://hooks.example/hooks/samsar/j/m", "https://hooks.example/hooks/samsar/j/m"},
		{"the job's own wins", `{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA","duration":10,"webhookUrl":"https://user.example/hook"}`, "https://hooks.example/hooks/samsar/j/m", "https://user.example/hook"},
		{"neither", `{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA","duration":10}`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan string, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var body struct {
					WebhookURL string `json:"webhookUrl"`
				}
				_ = json.NewDecoder(r.Body).Decode(&body)
				got <- body.WebhookURL
				_, _ = w.Write([]byte(`{"request_id":"r-1"}`))
			}))
			defer srv.Close()
			c := samsar.New(providers.Config{BaseURL: srv.URL, APIKey: "samsar-key"}, samsar.Options{})
			if _, err := c.Submit(context.Background(), providers.Request{JobID: "j", Input: json.RawMessage(tc.input), CallbackURL: tc.callback}); err != nil {
				t.Fatal(err)
			}
			if u := <-got; u != tc.want {
				t.Errorf("webhookUrl %q, want %q", u, tc.want)
			}
		})
	}
}
