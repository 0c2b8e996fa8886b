package replicate_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/providertest"
	"github.com/reelq/reelq/internal/providers/replicate"
	"github.com/reelq/reelq/internal/providers/replicate/input"
	"github.com/reelq/reelq/internal/providersim"
)

const (
	kling = "kwaivgi/kling-v2.5-turbo-pro"
	hex   = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
)

func model(m, in string) json.RawMessage {
	return json.RawMessage(`{"model":"` + m + `","input":` + in + `}`)
}

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, replicate.Spec, providertest.Harness{
		ValidInput:     model(kling, `{"prompt":"A lighthouse keeper finds a message in a bottle","duration":5,"aspect_ratio":"16:9"}`),
		ForbiddenInput: model(kling, `{"prompt":"A lighthouse `+providersim.ForbiddenMarker+`"}`),
		InvalidInputs: map[string]json.RawMessage{
			"empty":              json.RawMessage(``),
			"not an object":      json.RawMessage(`["model"]`),
			"no model":           json.RawMessage(`{"input":{"prompt":"p"}}`),
			"unknown model":      model("acme/sora-9000", `{"prompt":"p"}`),
			"model with path":    model("kwaivgi/kling/../x", `{"prompt":"p"}`),
			"bad version":        json.RawMessage(`{"version":"abc","input":{"prompt":"p"}}`),
			"unknown version":    json.RawMessage(`{"version":"` + hex + `","input":{"prompt":"p"}}`),
			"version of another": json.RawMessage(`{"model":"` + kling + `","version":"google/veo-3:` + hex + `","input":{"prompt":"p"}}`),
			"no input":           json.RawMessage(`{"model":"` + kling + `"}`),
			"no prompt":          model(kling, `{"duration":5}`),
			"duration string":    model(kling, `{"prompt":"p","duration":"5"}`),
			"bad duration":       model(kling, `{"prompt":"p","duration":7}`),
			"bad ratio":          model("google/veo-3", `{"prompt":"p","aspect_ratio":"4:3"}`),
			"i2v without image":  model("kwaivgi/kling-v2.1", `{"prompt":"p"}`),
			"unknown field":      model(kling, `{"prompt":"p","promt":"typo"}`),
		},
	})
}

// TestVersionsAndPrices checks a model pinned to a version is checked
// against its model's schema (or the version's own, from
// REPLICATE_SCHEMA_DIR) and priced as its model; an unpriced model is
// unpriced.
func TestVersionsAndPrices(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := input.Kind.Rules(map[string]string{"REPLICATE_SCHEMA_DIR": dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in     json.RawMessage
		ok     bool
		amount float64
		unit   string
	}{
		{model(kling, `{"prompt":"p","duration":10}`), true, 0.7, "usd"},
		{model(kling, `{"prompt":"p"}`), true, 0.35, "usd"},
		{json.RawMessage(`{"version":"` + kling + `:` + hex + `","input":{"prompt":"p","duration":5}}`), true, 0.35, "usd"},
		{json.RawMessage(`{"model":"` + kling + `","version":"` + hex + `","input":{"prompt":"p","duration":5}}`), true, 0.35, "usd"},
		{json.RawMessage(`{"version":"` + kling + `:` + hex + `","input":{"prompt":"p","duration":6}}`), false, 0, ""},
		{model("minimax/video-01", `{"prompt":"p"}`), true, 0, ""},
	} {
		err := r.Validate(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%s) = %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if c := r.Estimate(tc.in); tc.ok && (c.Amount != tc.amount || c.Unit != tc.unit) {
			t.Errorf("Estimate(%s) = %+v, want %g %q", tc.in, c, tc.amount, tc.unit)
		}
	}
}

// TestSubmitRoutesAndStoredURLs checks an official model goes to
// /models/{owner}/{name}/predictions with the input only, a version to
// /predictions, and that polls and cancels use the prediction's own URLs
// when they are on the API's host.
func TestSubmitRoutesAndStoredURLs(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var calls []string
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 2048)
		n, _ := r.Body.Read(b)
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path+" "+string(b[:n])+" "+r.Header.Get("Cancel-After"))
		mu.Unlock()
		get := srv.URL + "/v1/predictions/p1"
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "p1", "status": "starting", "urls": map[string]string{"get": get, "cancel": get + "/cancel"}})
	}))
	defer srv.Close()
	c := replicate.New(providers.Config{BaseURL: srv.URL + "/v1", APIKey: "r8_x"}, replicate.Options{CancelAfter: "30m"})
	ctx := context.Background()
	task, err := c.Submit(ctx, providers.Request{Input: model(kling, `{"prompt":"p","duration":5}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(ctx, providers.Request{Input: json.RawMessage(`{"version":"` + kling + `:` + hex + `","input":{"prompt":"p"}}`)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(ctx, task); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`POST /v1/models/kwaivgi/kling-v2.5-turbo-pro/predictions {"input":{"duration":5,"prompt":"p"}} 30m`,
		`POST /v1/predictions {"input":{"prompt":"p"},"version":"kwaivgi/kling-v2.5-turbo-pro:` + hex + `"} 30m`,
		`POST /v1/predictions/p1/cancel  `,
	}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls\n%s\nwant\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
}

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		class  error
		detail string
	}{
		{"bad token", 401, `{"title":"Unauthenticated","detail":"You did not pass a valid authentication token","status":401}`, providers.ErrAuth, ""},
		{"no credit", 402, string(providertest.Fixture(t, "create_402.json")), providers.ErrCreditsExhausted, "Insufficient credit"},
		{"billing required", 402, `{"title":"Billing required","detail":"You need to set up billing to run this model.","status":402}`, providers.ErrCreditsExhausted, ""},
		{"invalid input", 422, string(providertest.Fixture(t, "create_422.json")), providers.ErrInvalidInput, "input.aspect_ratio: aspect_ratio must be one of the following"},
		{"bad version", 422, `{"title":"Invalid version or not permitted","detail":"The specified version does not exist (or perhaps you don't have permission to use it?)","status":422}`, providers.ErrInvalidInput, "Invalid version"},
		{"throttled", 429, `{"detail":"Request was throttled. Your rate limit resets in ~30s."}`, providers.ErrRateLimited, ""},
		{"server", 500, `{"title":"Internal Server Error","status":500}`, providers.ErrRetryable, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "30")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c := replicate.New(providers.Config{BaseURL: srv.URL, APIKey: "r8_x"}, replicate.Options{})
			_, err := c.Submit(context.Background(), providers.Request{Input: model(kling, `{"prompt":"p"}`)})
			if !errors.Is(err, tc.class) {
				t.Fatalf("err %v, want %v", err, tc.class)
			}
			if tc.detail != "" && !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("err %v lost the detail %q", err, tc.detail)
			}
			var pe *providers.Error
			if errors.As(err, &pe) && pe.Ambiguous != (tc.status >= 500) {
				t.Errorf("Ambiguous = %v for HTTP %d to a create; want it for a 5xx only", pe.Ambiguous, tc.status)
			}
			if tc.status == 429 && providers.RetryAfter(err).Seconds() != 30 {
				t.Errorf("RetryAfter %v, want 30s", providers.RetryAfter(err))
			}
		})
	}
}

func TestParsePrediction(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file  string
		state providers.State
		urls  int
		class error
	}{
		{"prediction_starting.json", providers.Pending, 0, nil},
		{"prediction_succeeded.json", providers.Succeeded, 1, nil},
		{"prediction_succeeded_list.json", providers.Succeeded, 2, nil},
		{"prediction_failed.json", providers.Failed, 0, providers.ErrTaskFailed},
		{"prediction_canceled.json", providers.Failed, 0, providers.ErrTaskFailed},
		{"prediction_aborted.json", providers.Failed, 0, providers.ErrTaskFailed},
		{"prediction_removed.json", providers.Failed, 0, providers.ErrTaskFailed},
	} {
		st, err := replicate.ParsePrediction(providertest.Fixture(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if st.State != tc.state || len(st.Outputs) != tc.urls || (tc.class != nil && !errors.Is(st.Err, tc.class)) {
			t.Errorf("%s: %+v, want %s with %d outputs", tc.file, st, tc.state, tc.urls)
		}
	}
}

func FuzzParsePrediction(f *testing.F) {
	providertest.AddFixtures(f, "prediction_*.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := replicate.ParsePrediction(body)
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
