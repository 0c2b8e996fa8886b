package camb_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/camb"
	"github.com/reelq/reelq/internal/providers/providertest"
	"github.com/reelq/reelq/internal/providersim"
)

func newClient(baseURL, key string) providers.Provider {
	return camb.New(providers.Config{BaseURL: baseURL, APIKey: key}, camb.Options{})
}

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, camb.Spec, providertest.Harness{
		ValidInput: json.RawMessage(`{"text":"Once upon a time, a lighthouse keeper found a bottle.","source_language":1,"title":"The Lighthouse","narrator_voice_id":147320}`),
		InvalidInputs: map[string]json.RawMessage{
			"empty":             json.RawMessage(``),
			"no text":           json.RawMessage(`{"source_language":1}`),
			"blank text":        json.RawMessage(`{"text":"   ","source_language":1}`),
			"no language":       json.RawMessage(`{"text":"t"}`),
			"language 0":        json.RawMessage(`{"text":"t","source_language":0}`),
			"language 149":      json.RawMessage(`{"text":"t","source_language":149}`),
			"language string":   json.RawMessage(`{"text":"t","source_language":"en"}`),
			"short title":       json.RawMessage(`{"text":"t","source_language":1,"title":"ab"}`),
			"long title":        json.RawMessage(`{"text":"t","source_language":1,"title":"` + strings.Repeat("a", 256) + `"}`),
			"short description": json.RawMessage(`{"text":"t","source_language":1,"description":"ab"}`),
			"long description":  json.RawMessage(`{"text":"t","source_language":1,"description":"` + strings.Repeat("a", 5001) + `"}`),
			"no dictionaries":   json.RawMessage(`{"text":"t","source_language":1,"chosen_dictionaries":[]}`),
			"voices disagree":   json.RawMessage(`{"text":"t","source_language":1,"voice":1,"narrator_voice_id":2}`),
			"unknown field":     json.RawMessage(`{"text":"t","source_language":1,"language":"en"}`),
		},
		ForbiddenInput:  json.RawMessage(`{"text":"A story the key may not narrate ` + providersim.ForbiddenMarker + `","source_language":1}`),
		ForbiddenAtPoll: true,
	})
}

func TestValidate(t *testing.T) {
	t.Parallel()
	c := camb.New(providers.Config{}, camb.Options{})
	ok := `{"text":"t","source_language":148,"title":"abc","description":"abc","voice":7,"chosen_dictionaries":[3],"folder_id":9}`
	if err := c.Validate(json.RawMessage(ok)); err != nil {
		t.Errorf("Validate(%s): %v", ok, err)
	}
	err := c.Validate(json.RawMessage(`{"text":"t","source_language":1,"title":"ab"}`))
	if !errors.Is(err, providers.ErrInvalidInput) || !strings.Contains(err.Error(), "input.title") {
		t.Errorf("Validate(short title) = %v, want invalid input naming input.title", err)
	}
}

// TestSubmitForm checks the multipart form: the text as the file
// story.txt, the fields, repeated dictionaries, the voice alias and
// x-api-key.
func TestSubmitForm(t *testing.T) {
	t.Parallel()
	var (
		mu                  sync.Mutex
		key, file, fileName string
		values              map[string][]string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		key = r.Header.Get("x-api-key")
		if r.URL.Path != "/apis/story" {
			t.Errorf("path %s", r.URL.Path)
		}
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			t.Error(err)
			return
		}
		f, h, err := r.FormFile("file")
		if err != nil {
			t.Error(err)
			return
		}
		b, _ := io.ReadAll(f)
		file, fileName, values = string(b), h.Filename, r.MultipartForm.Value
		_, _ = w.Write(providertest.Fixture(t, "create.json"))
	}))
	defer srv.Close()
	in := `{"text":"Once upon a time.","source_language":1,"title":"The Lighthouse","voice":147320,"chosen_dictionaries":[4,5],"folder_id":12}`
	task, err := newClient(srv.URL+"/apis", "camb-secret").Submit(context.Background(), providers.Request{JobID: "j", Input: json.RawMessage(in)})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if task.ID != "2c1a5f0e-3b7d-4f7e-9a51-0d6c2e8b9f10" || key != "camb-secret" {
		t.Errorf("task %+v key %q", task, key)
	}
	if file != "Once upon a time." || fileName != camb.StoryFileName {
		t.Errorf("file %q named %q", file, fileName)
	}
	want := map[string]string{"source_language": "1", "title": "The Lighthouse", "narrator_voice_id": "147320", "chosen_dictionaries": "4|5", "folder_id": "12"}
	for k, v := range want {
		if got := strings.Join(values[k], "|"); got != v {
			t.Errorf("form %s = %q, want %q", k, got, v)
		}
	}
	if _, ok := values["description"]; ok {
		t.Error("empty description was sent")
	}
}

// TestSetupStyleCreate checks a create answered with {run_id,
// story_details}: the task is polled through /story-result.
func TestSetupStyleCreate(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost:
			_, _ = w.Write(providertest.Fixture(t, "create_setup.json"))
		case r.URL.Path == "/apis/story-result/48213" && ready.Load():
			_, _ = w.Write(providertest.Fixture(t, "result.json"))
		case r.URL.Path == "/apis/story-result/48213":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"detail":"Run not found"}`))
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		}
	}))
	defer srv.Close()
	c := newClient(srv.URL+"/apis", "k")
	ctx := context.Background()
	task, err := c.Submit(ctx, providers.Request{Input: json.RawMessage(`{"text":"t","source_language":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Poll(ctx, task)
	if err != nil || st.State != providers.Pending {
		t.Fatalf("first poll %+v %v, want pending", st, err)
	}
	ready.Store(true)
	st, err = c.Poll(ctx, task)
	if err != nil || st.State != providers.Succeeded || len(st.Outputs) != 2 {
		t.Fatalf("second poll %+v %v, want succeeded with 2 outputs", st, err)
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
		{"invalid key", 401, string(providertest.Fixture(t, "error_invalid_key.json")), providers.ErrAuth, "Invalid API key"},
		{"forbidden", 403, `{"detail":"Forbidden"}`, providers.ErrForbidden, "Forbidden"},
		{"forbidden lacks access", 403, `{"detail":"API key lacks story access"}`, providers.ErrForbidden, "lacks story access"},
		{"forbidden invalid key", 403, `{"error":"Invalid API key","status":403}`, providers.ErrAuth, "Invalid API key"},
		{"forbidden missing key", 403, `{"detail":"Not authenticated"}`, providers.ErrAuth, "Not authenticated"},
		{"payment", 402, `{"detail":"Payment required"}`, providers.ErrCreditsExhausted, "Payment required"},
		{"validation", 422, string(providertest.Fixture(t, "error_validation.json")), providers.ErrInvalidInput, "body.source_language: Field required"},
		{"rate", 429, `{"error":"Rate limit exceeded"}`, providers.ErrRateLimited, "Rate limit"},
		{"server", 503, `upstream unavailable`, providers.ErrRetryable, "upstream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			_, err := newClient(srv.URL, "camb-test-key").Submit(context.Background(), providers.Request{Input: json.RawMessage(`{"text":"t","source_language":1}`)})
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v, want %v with %q", err, tc.class, tc.msg)
			}
		})
	}
}

func TestParseCreateFixtures(t *testing.T) {
	t.Parallel()
	for file, want := range map[string]string{"create.json": "2c1a5f0e-3b7d-4f7e-9a51-0d6c2e8b9f10", "create_setup.json": "run:48213"} {
		task, err := camb.ParseCreate(providertest.Fixture(t, file))
		if err != nil || task.ID != want {
			t.Errorf("ParseCreate(%s) = %+v, %v; want %s", file, task, err, want)
		}
	}
	if _, err := camb.ParseCreate([]byte(`{}`)); err == nil {
		t.Error("ParseCreate({}) succeeded")
	}
}

func TestParseStatusFixtures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file  string
		state providers.State
		raw   string
		run   string
		class error
		msg   string
	}{
		{"status_pending.json", providers.Pending, "PENDING", "", nil, ""},
		{"status_success.json", providers.Pending, "SUCCESS", "123", nil, ""},
		{"status_error_payment.json", providers.Failed, "ERROR", "", providers.ErrCreditsExhausted, "PAYMENT_REQUIRED"},
		{"status_payment_required.json", providers.Failed, "PAYMENT_REQUIRED", "", providers.ErrCreditsExhausted, "PAYMENT_REQUIRED"},
		{"status_error_forbidden.json", providers.Failed, "ERROR", "", providers.ErrForbidden, "lacks story access"},
		{"status_error_source.json", providers.Failed, "ERROR", "", providers.ErrInvalidInput, "SOURCE_TOO_LONG"},
		{"status_error_processing.json", providers.Failed, "ERROR", "", providers.ErrTaskFailed, "PROCESSING_ERROR"},
		{"status_timeout.json", providers.Failed, "TIMEOUT", "", providers.ErrTaskFailed, "TIMEOUT"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			st, run, err := camb.ParseStatus(providertest.Fixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tc.state || st.Raw != tc.raw || run != tc.run {
				t.Fatalf("got %s %q run %q, want %s %q run %q", st.State, st.Raw, run, tc.state, tc.raw, tc.run)
			}
			if tc.class != nil && (!errors.Is(st.Err, tc.class) || !strings.Contains(st.Err.Error(), tc.msg)) {
				t.Errorf("Err %v, want %v with %q", st.Err, tc.class, tc.msg)
			}
		})
	}
}

func TestParseResultFixture(t *testing.T) {
	t.Parallel()
	outs, err := camb.ParseResult(providertest.Fixture(t, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []providers.Output{
		{URL: "https://storage.camb.ai/stories/123/story.flac", ContentType: "audio/flac", Name: "audio"},
		{URL: "https://storage.camb.ai/stories/123/dialogue.flac", ContentType: "audio/flac", Name: "dialogue"},
	}
	if len(outs) != len(want) || outs[0] != want[0] || outs[1] != want[1] {
		t.Errorf("ParseResult = %+v, want %+v", outs, want)
	}
}

func FuzzParseStatus(f *testing.F) {
	providertest.AddFixtures(f, "status_*.json")
	f.Add([]byte(`{"status":"SUCCESS","run_id":"abc"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		st, _, err := camb.ParseStatus(body)
		if err != nil {
			return
		}
		if st.State == providers.Failed && st.Err == nil {
			t.Errorf("failed without Err: %s", body)
		}
		if st.State == providers.Succeeded {
			t.Errorf("status alone cannot succeed: %s", body)
		}
	})
}

func FuzzParseResult(f *testing.F) {
	f.Add(providertest.Fixture(f, "result.json"))
	f.Add([]byte(`{"dialogue_url":"https://x/d.flac"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		outs, err := camb.ParseResult(body)
		if err != nil {
			return
		}
		for _, o := range outs {
			if o.URL == "" {
				t.Errorf("empty URL in %+v", outs)
			}
		}
	})
}
