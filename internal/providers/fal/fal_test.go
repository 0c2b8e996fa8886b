package fal_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/fal"
	"github.com/reelq/reelq/internal/providers/fal/input"
	"github.com/reelq/reelq/internal/providers/providertest"
	"github.com/reelq/reelq/internal/providersim"
)

const kling = "fal-ai/kling-video/v2.1/master/text-to-video"

func job(model, in string) json.RawMessage {
	return json.RawMessage(`{"model":"` + model + `","input":` + in + `}`)
}

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, fal.Spec, providertest.Harness{
		ValidInput:     job(kling, `{"prompt":"A lighthouse keeper finds a message in a bottle","duration":"5","aspect_ratio":"16:9"}`),
		ForbiddenInput: job(kling, `{"prompt":"A lighthouse `+providersim.ForbiddenMarker+`"}`),
		InvalidInputs: map[string]json.RawMessage{
			"empty":            json.RawMessage(``),
			"not an object":    json.RawMessage(`["model"]`),
			"no model":         json.RawMessage(`{"input":{"prompt":"p"}}`),
			"unknown model":    job("fal-ai/sora-9000", `{"prompt":"p"}`),
			"bad model id":     job("fal-ai/../admin", `{"prompt":"p"}`),
			"query in model":   job("fal-ai/veo3?x=1", `{"prompt":"p"}`),
			"no input":         json.RawMessage(`{"model":"` + kling + `"}`),
			"input not object": job(kling, `"a prompt"`),
			"no prompt":        job(kling, `{"duration":"5"}`),
			"duration number":  job(kling, `{"prompt":"p","duration":5}`),
			"bad duration":     job(kling, `{"prompt":"p","duration":"7"}`),
			"cfg above 1":      job(kling, `{"prompt":"p","cfg_scale":1.5}`),
			"unknown field":    job(kling, `{"prompt":"p","promt":"typo"}`),
			"veo duration":     job("fal-ai/veo3", `{"prompt":"p","duration":"5s"}`),
			"envelope typo":    json.RawMessage(`{"model":"` + kling + `","inputs":{"prompt":"p"}}`),
		},
	})
}

// TestSchemaViolationNamesEveryField checks the job is told each rule its
// input breaks, by field, before any call.
func TestSchemaViolationNamesEveryField(t *testing.T) {
	t.Parallel()
	r, err := input.Kind.Rules(nil)
	if err != nil {
		t.Fatal(err)
	}
	verr := r.Validate(job(kling, `{"duration":"7","cfg_scale":2}`))
	if !errors.Is(verr, providers.ErrInvalidInput) {
		t.Fatalf("Validate = %v, want invalid input", verr)
	}
	for _, want := range []string{"input.input: missing property 'prompt'", "input.input.duration", "input.input.cfg_scale"} {
		if !strings.Contains(verr.Error(), want) {
			t.Errorf("error %q does not name %q", verr, want)
		}
	}
}

// TestOperatorSchemasAndPrices checks FAL_SCHEMA_DIR adds a model (a
// JSON Schema or fal's OpenAPI document) and FAL_PRICE_FILE prices it,
// and FAL_UNKNOWN_MODELS=pass lets an unknown model through unpriced.
func TestOperatorSchemasAndPrices(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("schemas/acme/clip.json", `{"type":"object","required":["prompt"],"properties":{"prompt":{"type":"string"},"seconds":{"type":"integer","maximum":9}}}`)
	write("schemas/acme/open/v1.json", `{"openapi":"3.0.0","paths":{"/acme/open/v1":{"post":{"requestBody":{"content":{"application/json":{"schema":{"$ref":"#/components/schemas/OpenInput"}}}}}}},
		"components":{"schemas":{"OpenInput":{"type":"object","required":["prompt"],"properties":{"prompt":{"type":"string"},"steps":{"type":"integer","minimum":1,"exclusiveMinimum":true}}}}}}`)
	write("prices.json", `{"acme/clip":{"usd":"0.1","per":"second","seconds":"seconds","default_seconds":5},"acme/open/v1":{"usd":"0.25","per":"run"}}`)
	env := map[string]string{"FAL_SCHEMA_DIR": filepath.Join(dir, "schemas"), "FAL_PRICE_FILE": filepath.Join(dir, "prices.json")}
	r, err := input.Kind.Rules(env)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in     json.RawMessage
		ok     bool
		amount float64
	}{
		{job("acme/clip", `{"prompt":"p","seconds":3}`), true, 0.3},
		{job("acme/clip", `{"prompt":"p"}`), true, 0.5},
		{job("acme/clip", `{"prompt":"p","seconds":10}`), false, 0},
		{job("acme/open/v1", `{"prompt":"p","steps":2}`), true, 0.25},
		{job("acme/open/v1", `{"prompt":"p","steps":1}`), false, 0},
		{job(kling, `{"prompt":"p","duration":"10"}`), true, 2.8},
		{job("acme/unknown", `{"prompt":"p"}`), false, 0},
	} {
		err := r.Validate(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%s) = %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok {
			if c := r.Estimate(tc.in); c.Amount != tc.amount || c.Unit != "usd" {
				t.Errorf("Estimate(%s) = %+v, want $%g", tc.in, c, tc.amount)
			}
		}
	}
	env["FAL_UNKNOWN_MODELS"] = "pass"
	r, err = input.Kind.Rules(env)
	if err != nil {
		t.Fatal(err)
	}
	in := job("acme/unknown", `{"anything":1}`)
	if err := r.Validate(in); err != nil {
		t.Errorf("with pass, Validate(unknown model) = %v", err)
	}
	if c := r.Estimate(in); c.Unit != "" || !strings.Contains(c.Basis, "unpriced") {
		t.Errorf("Estimate(unknown model) = %+v, want unpriced", c)
	}
	for name, bad := range map[string]map[string]string{
		"FAL_SCHEMA_DIR":     {"FAL_SCHEMA_DIR": filepath.Join(dir, "nope")},
		"FAL_PRICE_FILE":     {"FAL_PRICE_FILE": filepath.Join(dir, "schemas/acme/clip.json")},
		"FAL_UNKNOWN_MODELS": {"FAL_UNKNOWN_MODELS": "maybe"},
	} {
		if _, err := input.Kind.Rules(bad); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Rules(%v) = %v, want an error naming %s", bad, err, name)
		}
		if _, err := fal.Spec.New(providers.Config{}, bad); err == nil {
			t.Errorf("Spec.New(%v) accepted", bad)
		}
	}
}

// TestSubmitSendsLifecycleAndUsesStoredURLs checks the submit's body is
// the model input, the lifecycle header asks for the output lifetime, and
// status, result and cancel go to the URLs the answer gave (owner/app
// without the subpath); URLs on another host are never used.
func TestSubmitSendsLifecycleAndUsesStoredURLs(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	var lifecycle, body string
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		switch {
		case r.Method == http.MethodPost:
			lifecycle = r.Header.Get("X-Fal-Object-Lifecycle-Preference")
			b := make([]byte, 1024)
			n, _ := r.Body.Read(b)
			body = string(b[:n])
			base := srv.URL + "/fal-ai/kling-video/requests/abc"
			_ = json.NewEncoder(w).Encode(map[string]string{"request_id": "abc", "status_url": base + "/status", "response_url": base, "cancel_url": "https://evil.example/steal"})
		case strings.HasSuffix(r.URL.Path, "/status"):
			_, _ = w.Write([]byte(`{"status":"COMPLETED"}`))
		case r.Method == http.MethodPut:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"status":"ALREADY_COMPLETED"}`))
		default:
			_, _ = w.Write([]byte(`{"video":{"url":"https://v3.fal.media/files/x/out.mp4","content_type":"video/mp4"},"seed":1}`))
		}
	}))
	defer srv.Close()
	c := fal.New(providers.Config{BaseURL: srv.URL, APIKey: "id:secret"}, fal.Options{})
	ctx := context.Background()
	task, err := c.Submit(ctx, providers.Request{JobID: "j", Input: job(kling, `{"prompt":"p","cfg_scale":0.25}`)})
	if err != nil {
		t.Fatal(err)
	}
	if lifecycle != `{"expiration_duration_seconds": 604800}` {
		t.Errorf("lifecycle header %q", lifecycle)
	}
	if body != `{"cfg_scale":0.25,"prompt":"p"}` {
		t.Errorf("body %s, want the model input as written", body)
	}
	if task.ID != "fal-ai/kling-video/requests/abc" || task.CancelURL != "" || !strings.HasSuffix(task.PollURL, "/status") {
		t.Errorf("task %+v: want id owner/app/requests/abc, the status URL kept, the other host's cancel URL dropped", task)
	}
	st, err := c.Poll(ctx, task)
	if err != nil || st.State != providers.Succeeded || len(st.Outputs) != 1 || st.Outputs[0].Name != "video" {
		t.Fatalf("Poll = %+v, %v", st, err)
	}
	if err := c.Cancel(ctx, task); err != nil {
		t.Errorf("Cancel of a completed request: %v", err)
	}
	want := []string{"POST /fal-ai/kling-video/v2.1/master/text-to-video", "GET /fal-ai/kling-video/requests/abc/status",
		"GET /fal-ai/kling-video/requests/abc", "PUT /fal-ai/kling-video/requests/abc/cancel"}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("calls %q, want %q", seen, want)
	}
}

// TestErrorClasses checks every documented answer of the submit and of the
// result call.
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		class  error
	}{
		{"wrong key", 401, `{"detail":"No user found for Key ID and Secret"}`, providers.ErrAuth},
		{"malformed key", 401, `{"detail":"Invalid Key Authorization header format. Expected '<key_id>:<key_secret>'."}`, providers.ErrAuth},
		{"out of credit", 403, `{"detail":"User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."}`, providers.ErrCreditsExhausted},
		{"out of credit no period", 403, `{"detail":"User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing"}`, providers.ErrCreditsExhausted},
		{"admin lock", 403, `{"detail":"User is locked. Reason: Admin lock. Please contact support@fal.ai"}`, providers.ErrAuth},
		{"forbidden", 403, `{"detail":"Forbidden"}`, providers.ErrForbidden},
		{"invalid input", 422, string(providertest.Fixture(t, "submit_422.json")), providers.ErrInvalidInput},
		{"rate", 429, `{"detail":"Too many requests"}`, providers.ErrRateLimited},
		{"runner", 503, `{"detail":"Runner unavailable","error_type":"runner_unavailable"}`, providers.ErrRetryable},
		{"timeout", 504, `{"detail":"Request timed out","error_type":"request_timeout"}`, providers.ErrRetryable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c := fal.New(providers.Config{BaseURL: srv.URL, APIKey: "id:secret"}, fal.Options{})
			_, err := c.Submit(context.Background(), providers.Request{Input: job(kling, `{"prompt":"p"}`)})
			if !errors.Is(err, tc.class) {
				t.Fatalf("err %v, want %v", err, tc.class)
			}
			if tc.status == 422 && !strings.Contains(err.Error(), "body.duration: Input should be '5' or '10' (one_of)") {
				t.Errorf("422 detail lost: %v", err)
			}
			if tc.status == 429 && providers.RetryAfter(err).Seconds() != 7 {
				t.Errorf("RetryAfter %v, want 7s", providers.RetryAfter(err))
			}
		})
	}
}

// TestResultErrors checks what a COMPLETED request's response call says:
// fal has no failure status, so the model's error is the result's.
func TestResultErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		state  providers.State
		class  error // of Status.Err, or of Poll's error when state is -1
	}{
		{"ok", 200, `{"video":{"url":"https://v3.fal.media/files/a/b.mp4"}}`, providers.Succeeded, nil},
		{"wrapped", 200, `{"status":"COMPLETED","logs":[],"response":{"video":{"url":"https://v3.fal.media/files/a/b.mp4"}}}`, providers.Succeeded, nil},
		{"no file", 200, `{"text":"hello"}`, providers.Failed, providers.ErrTaskFailed},
		{"bad url", 200, `{"video":{"url":"file:///etc/passwd"}}`, providers.Failed, providers.ErrTaskFailed},
		{"model 422", 422, string(providertest.Fixture(t, "result_422.json")), providers.Failed, providers.ErrInvalidInput},
		{"model 500", 500, `{"detail":"CUDA out of memory"}`, providers.Failed, providers.ErrTaskFailed},
		{"runner gave up", 503, `{"detail":"Runner failed","error_type":"runner_server_error"}`, providers.Failed, providers.ErrTaskFailed},
		{"cancelled", 499, `{"detail":"Request was cancelled","error_type":"client_cancelled"}`, providers.Failed, providers.ErrTaskFailed},
		{"not yet", 400, `{"detail":"Request is still in progress"}`, providers.Pending, nil},
		{"gateway", 502, `<html>bad gateway</html>`, -1, providers.ErrRetryable},
		{"unknown", 404, `{"detail":"Request not found"}`, -1, providers.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/status") {
					_, _ = w.Write([]byte(`{"status":"COMPLETED"}`))
					return
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c := fal.New(providers.Config{BaseURL: srv.URL, APIKey: "id:secret"}, fal.Options{})
			st, err := c.Poll(context.Background(), providers.Task{ID: "fal-ai/kling-video/requests/abc"})
			if tc.state == -1 {
				if !errors.Is(err, tc.class) {
					t.Fatalf("Poll err %v, want %v", err, tc.class)
				}
				return
			}
			if err != nil || st.State != tc.state {
				t.Fatalf("Poll = %+v, %v; want %s", st, err, tc.state)
			}
			if tc.class != nil && !errors.Is(st.Err, tc.class) {
				t.Errorf("Err %v, want %v", st.Err, tc.class)
			}
		})
	}
}
