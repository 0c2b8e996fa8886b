package vimmerse_test

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

	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/providertest"
	"github.com/reelq/reelq/internal/providers/vimmerse"
	"github.com/reelq/reelq/internal/providers/vimmerse/input"
	"github.com/reelq/reelq/internal/providersim"
)

const validInput = `{"template_id":"overlay_gray_5443","title":"Walk","image_urls":["https://example.com/image.png"],
	"options":{"background_urls":"https://example.com/bg1.mp4","prompt":"Person is joyfully smiling","motion_type":"Auto"}}`

func newClient(baseURL, key string) providers.Provider {
	return vimmerse.New(providers.Config{BaseURL: baseURL, APIKey: key}, vimmerse.Options{})
}

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, vimmerse.Spec, providertest.Harness{
		ValidInput:     json.RawMessage(validInput),
		ForbiddenInput: json.RawMessage(`{"template_id":"vim_arctic","title":"Snow ` + providersim.ForbiddenMarker + `"}`),
		InvalidInputs: map[string]json.RawMessage{
			"empty":              json.RawMessage(``),
			"array":              json.RawMessage(`[]`),
			"unknown field":      json.RawMessage(`{"template":"overlay_gray_5443"}`),
			"options array":      json.RawMessage(`{"options":["a"]}`),
			"options bad json":   json.RawMessage(`{"options":"{not json"}`),
			"image url scheme":   json.RawMessage(`{"image_urls":["ftp://example.com/a.png"]}`),
			"image url relative": json.RawMessage(`{"image_urls":["/a.png"]}`),
			"visibility":         json.RawMessage(`{"visibility_status":"3"}`),
			"visibility number":  json.RawMessage(`{"visibility_status":1}`),
			"template id":        json.RawMessage(`{"template_id":"no spaces allowed"}`),
			"webhook":            json.RawMessage(`{"webhook_url":"not a url"}`),
			"title with tag":     json.RawMessage(`{"title":"x [reelq:other-job]"}`),
		},
		Findable: false, // no list endpoint in Vimmerse's API
	})
}

func TestEstimate(t *testing.T) {
	t.Parallel()
	c := vimmerse.New(providers.Config{}, vimmerse.Options{Input: input.Options{TemplateCredits: map[string]money.Micros{"vim_arctic": 120 * money.Scale}}})
	for in, want := range map[string]float64{
		`{"template_id":"each_ugcproduct_0226"}`: 320,
		`{"template_id":"each_createsong_0226"}`: 10,
		`{"template_id":"vim_arctic"}`:           120,
		`{}`:                                     input.DefaultCredits.Float(), // overlay_gray_5443: unpublished
	} {
		got := c.Estimate(json.RawMessage(in))
		if got.Amount != want || got.Unit != "credits" {
			t.Errorf("Estimate(%s) = %+v, want %g credits", in, got, want)
		}
	}
	if b := c.Estimate(json.RawMessage(`{}`)).Basis; !strings.HasPrefix(b, "estimate") {
		t.Errorf("unpublished template basis %q does not say it is an estimate", b)
	}
}

// TestSubmitForm checks the multipart form: options as a JSON string,
// image_urls repeated, the job tag in the title, and X-Api-Key.
func TestSubmitForm(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		form map[string][]string
		key  string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		key = r.Header.Get("X-Api-Key")
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			t.Error(err)
		}
		form = r.MultipartForm.Value
		_, _ = w.Write(providertest.Fixture(t, "workflow_queued.json"))
	}))
	defer srv.Close()
	c := newClient(srv.URL, "vk-secret")
	in := `{"title":"Walk","image_urls":["https://a/1.png","https://a/2.png"],"options":{"prompt":"p"},"webhook_url":"https://hooks.example/x"}`
	task, err := c.Submit(context.Background(), providers.Request{JobID: "job-1", Input: json.RawMessage(in)})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if task.ID != "workflow-id-12345" || key != "vk-secret" {
		t.Errorf("task %+v, key %q", task, key)
	}
	want := map[string][]string{
		"template_id": {"overlay_gray_5443"}, "options": {`{"prompt":"p"}`}, "title": {"Walk [reelq:job-1]"},
		"description": {""}, "visibility_status": {"1"}, "image_urls": {"https://a/1.png", "https://a/2.png"},
		"webhook_url": {"https://hooks.example/x"},
	}
	for k, v := range want {
		if strings.Join(form[k], "|") != strings.Join(v, "|") {
			t.Errorf("form %s = %q, want %q", k, form[k], v)
		}
	}
}

func TestTitle(t *testing.T) {
	t.Parallel()
	for _, tc := range [][3]string{
		{"Walk", "j1", "Walk [reelq:j1]"},
		{"", "j1", vimmerse.DefaultTitle + " [reelq:j1]"},
		{"Walk", "", "Walk"},
	} {
		if got := vimmerse.Title(tc[0], tc[1]); got != tc[2] {
			t.Errorf("Title(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
		if got := vimmerse.JobOfTitle(tc[2]); got != tc[1] {
			t.Errorf("JobOfTitle(%q) = %q, want %q", tc[2], got, tc[1])
		}
	}
	for _, title := range []string{"[reelq:x]", "Walk [reelq:x", "Walk [reelq:x] more"} {
		if got := vimmerse.JobOfTitle(title); got != "" {
			t.Errorf("JobOfTitle(%q) = %q, want none", title, got)
		}
	}
}

// TestConcurrencyLimit checks that the simulator's MaxActive 429 is a
// retryable rate limit with the wait it asked for.
func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	sim := providersim.New(map[string]providersim.API{vimmerse.Name: vimmerse.Spec.Sim}, map[string]providersim.Knobs{vimmerse.Name: {CompleteAfter: providersim.Duration(time.Hour), MaxActive: 1}}, 1)
	srv := httptest.NewServer(sim)
	defer srv.Close()
	c := newClient(srv.URL, "k")
	ctx := context.Background()
	if _, err := c.Submit(ctx, providers.Request{JobID: "a", Input: json.RawMessage(validInput)}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Submit(ctx, providers.Request{JobID: "b", Input: json.RawMessage(validInput)})
	if !errors.Is(err, providers.ErrRateLimited) || providers.RetryAfter(err) <= 0 {
		t.Fatalf("second Submit over MaxActive = %v (retry after %v), want rate limited", err, providers.RetryAfter(err))
	}
}

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		class  error
		msg    string
	}{
		{"credits", 402, string(providertest.Fixture(t, "error_insufficient_credit.json")), providers.ErrCreditsExhausted, "INSUFFICIENT_CREDIT"},
		{"template not found", 404, string(providertest.Fixture(t, "error_not_found.json")), providers.ErrInvalidInput, "NOT_FOUND"},
		{"validation", 422, string(providertest.Fixture(t, "error_validation.json")), providers.ErrInvalidInput,
			"body.options: Options must be a JSON string of an object; body.image_urls.0: invalid or missing URL scheme"},
		{"rate", 429, `{"message":"Too Many Requests"}`, providers.ErrRateLimited, "Too Many Requests"},
		{"unauthorized", 401, `{"detail":"Not authenticated"}`, providers.ErrAuth, "Not authenticated"},
		{"template not allowed", 403, `{"message":"FORBIDDEN: template vim_arctic is not available to this account"}`, providers.ErrForbidden, "vim_arctic"},
		{"forbidden", 403, `{"message":"FORBIDDEN"}`, providers.ErrForbidden, "FORBIDDEN"},
		{"forbidden invalid key", 403, `{"message":"Invalid API key"}`, providers.ErrAuth, "Invalid API key"},
		{"server", 500, `{"message":"Please retry or contact support"}`, providers.ErrRetryable, "Please retry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			_, err := newClient(srv.URL, "vimmerse-test-key").Submit(context.Background(), providers.Request{Input: json.RawMessage(`{}`)})
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v, want %v with %q", err, tc.class, tc.msg)
			}
		})
	}
}

func TestParseWorkflowFixture(t *testing.T) {
	t.Parallel()
	w, err := vimmerse.ParseWorkflow(providertest.Fixture(t, "workflow_success.json"))
	if err != nil {
		t.Fatal(err)
	}
	if w.ID != "workflow-id-12345" || w.Model != "vim_new_year_2026" || w.Title != "My Animated Video" || len(w.Completions) != 5 {
		t.Errorf("workflow %+v", w)
	}
	if want := time.Date(2025, 4, 11, 18, 33, 59, 780864000, time.UTC); !w.CreatedAt.Equal(want) {
		t.Errorf("CreatedAt %v, want %v", w.CreatedAt, want)
	}
	if want := time.Date(2025, 4, 11, 18, 43, 47, 510893000, time.UTC); !w.UpdatedAt.Equal(want) {
		t.Errorf("UpdatedAt %v, want %v", w.UpdatedAt, want)
	}
}

func TestParseStatusFixtures(t *testing.T) {
	t.Parallel()
	const final = "https://media.vimmerse.net/workflow/final_output.mp4"
	for _, tc := range []struct {
		file     string
		state    providers.State
		raw      string
		progress float64
		url, ct  string
		msg      string
	}{
		{"workflow_success.json", providers.Succeeded, "success", 100, final, "video/mp4", ""},
		{"workflow_success_media_only.json", providers.Succeeded, "success", 100, final, "", ""},
		{"workflow_queued.json", providers.Pending, "queue_bullet", 20, "", "", ""},
		{"workflow_processing.json", providers.Pending, "processing_bullet", 60, "", "", ""},
		{"workflow_fail.json", providers.Failed, "fail", 40, "", "", "Face not detected"},
		{"workflow_cancel.json", providers.Failed, "cancel", 0, "", "", "processing_status cancel"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			st, err := vimmerse.ParseStatus(providertest.Fixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tc.state || st.Raw != tc.raw || st.Progress != tc.progress {
				t.Fatalf("got %s %q %g, want %s %q %g", st.State, st.Raw, st.Progress, tc.state, tc.raw, tc.progress)
			}
			if tc.url != "" && (len(st.Outputs) != 1 || st.Outputs[0].URL != tc.url || st.Outputs[0].ContentType != tc.ct) {
				t.Errorf("outputs %+v, want %s (%s)", st.Outputs, tc.url, tc.ct)
			}
			if tc.msg != "" && (!errors.Is(st.Err, providers.ErrTaskFailed) || !strings.Contains(st.Err.Error(), tc.msg)) {
				t.Errorf("Err %v, want task failed with %q", st.Err, tc.msg)
			}
		})
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Time{
		"2025-04-11 18:33:59.780864+00:00": time.Date(2025, 4, 11, 18, 33, 59, 780864000, time.UTC),
		"2025-04-11 18:42:51+00:00":        time.Date(2025, 4, 11, 18, 42, 51, 0, time.UTC),
		"2025-04-11 20:42:51.5+02:00":      time.Date(2025, 4, 11, 18, 42, 51, 5e8, time.UTC),
		"2025-04-11 18:42:51Z":             time.Date(2025, 4, 11, 18, 42, 51, 0, time.UTC),
		"2025-04-11T18:42:51.123Z":         time.Date(2025, 4, 11, 18, 42, 51, 123e6, time.UTC),
	} {
		got, err := vimmerse.ParseTime(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2025-04-11", "2025-04-11 18:42:51", "yesterday", "2025-13-11 18:42:51+00:00"} {
		if _, err := vimmerse.ParseTime(in); err == nil {
			t.Errorf("ParseTime(%q) succeeded", in)
		}
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2025-04-11 18:33:59.780864+00:00", "2025-04-11 18:42:51+00:00", "2025-04-11T18:42:51Z", "0000-01-01 00:00:00-23:59"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := vimmerse.ParseTime(s)
		if err != nil {
			return
		}
		// What parses must survive a round trip through Vimmerse's layout.
		again, err := vimmerse.ParseTime(got.Format(vimmerse.TimeLayout))
		if err != nil {
			t.Fatalf("ParseTime(%q) = %v, which does not reparse: %v", s, got, err)
		}
		if !again.Equal(got.Truncate(time.Microsecond)) && !again.Equal(got) {
			t.Errorf("round trip of %q: %v != %v", s, again, got)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	providertest.AddFixtures(f, "workflow_*.json")
	f.Add([]byte(`{"data":{"processing_status":"success","progress_percentage":"NaN"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := vimmerse.ParseStatus(body)
		if err != nil {
			return
		}
		if st.State == providers.Succeeded && len(st.Outputs) == 0 {
			t.Errorf("succeeded without outputs: %s", body)
		}
		if st.State == providers.Failed && st.Err == nil {
			t.Errorf("failed without Err: %s", body)
		}
		if st.Progress != -1 && (st.Progress < 0 || st.Progress > 100) {
			t.Errorf("progress %g: %s", st.Progress, body)
		}
	})
}
