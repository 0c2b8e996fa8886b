package providersim_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	segmindinput "github.com/reelq/reelq/internal/providers/segmind/input"
	"github.com/reelq/reelq/internal/providersim"
)

const segmindPath = "/workflows/67ee7aecd4ffdb6b8c9315ea-v4"

var segmindJSON = map[string]string{"Authorization": "Bearer sg-key", "Content-Type": "application/json"}

func TestSegmindLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "segmind", providersim.Knobs{})
	r := f.do(t, "POST", segmindPath, segmindJSON, strings.NewReader(`{"prompt":"a lighthouse"}`))
	wantStatus(t, "create", r, 200)
	id, poll := str(r.body["request_id"]), str(r.body["poll_url"])
	if id == "" || poll != f.url+"/workflows/request/"+id || r.body["status"] != "QUEUED" {
		t.Fatalf("create body %v", r.body)
	}
	path := strings.TrimPrefix(poll, f.url)
	auth := map[string]string{"x-api-key": "sg-key"} // the SDK's header works too
	for _, step := range []struct {
		after  time.Duration
		status string
	}{{0, "QUEUED"}, {5 * time.Second, "PROCESSING"}, {5 * time.Second, "COMPLETED"}} {
		f.clock.advance(step.after)
		r = f.do(t, "GET", path, auth, nil)
		wantStatus(t, "poll", r, 200)
		if r.body["status"] != step.status {
			t.Fatalf("status %v, want %s", r.body["status"], step.status)
		}
	}
	out, ok := r.body["output"].(string)
	if !ok {
		t.Fatalf("COMPLETED output is %T, want a JSON string", r.body["output"])
	}
	var items []struct {
		Keyname string `json:"keyname"`
		Value   struct{ Data, Type string }
	}
	if err := json.Unmarshal([]byte(out), &items); err != nil || len(items) == 0 || items[len(items)-1].Value.Type != "video" {
		t.Fatalf("output %q: %v", out, err)
	}
	if got := f.sim.Stats(0)["segmind"]; got.Submissions["a lighthouse"] != 1 || got.Spent != segmindinput.DefaultPricePerRun.Float() {
		t.Errorf("stats %+v", got)
	}
}

func TestSegmindFailedHasBothErrorFields(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "segmind", providersim.Knobs{FailRate: 1})
	r := f.do(t, "POST", segmindPath, segmindJSON, strings.NewReader(`{}`))
	f.clock.advance(time.Minute)
	r = f.do(t, "GET", "/workflows/request/"+str(r.body["request_id"]), segmindJSON, nil)
	if r.body["status"] != "FAILED" || str(r.body["error"]) == "" || r.body["error_message"] == nil {
		t.Fatalf("failed body %v", r.body)
	}
}

func TestSegmindErrors(t *testing.T) {
	t.Parallel()
	zero := 0.0
	f := newFixture(t, "segmind", providersim.Knobs{Credits: &zero, APIKey: "sg-key"})
	r := f.do(t, "POST", segmindPath, map[string]string{"Authorization": "Bearer sg-key"}, strings.NewReader(`{}`))
	wantStatus(t, "no content type", r, 406)
	if r.body["error"] != "Invalid content type" {
		t.Errorf("body %v", r.body)
	}
	r = f.do(t, "POST", segmindPath, segmindJSON, strings.NewReader(`{}`))
	wantStatus(t, "no credits", r, 406)
	if !strings.Contains(str(r.body["error"]), "Insufficient credits") {
		t.Errorf("body %v", r.body)
	}
	r = f.do(t, "POST", "/workflows/storyboard", segmindJSON, strings.NewReader(`{}`))
	wantStatus(t, "bad workflow id", r, 404)
	r = f.do(t, "POST", segmindPath, segmindJSON, strings.NewReader(`[1]`))
	wantStatus(t, "not an object", r, 400)
	r = f.do(t, "POST", segmindPath, map[string]string{"Content-Type": "application/json"}, strings.NewReader(`{}`))
	wantStatus(t, "no key", r, 401)
	if !strings.Contains(str(r.body["error"]), "Missing Authorization or x-api-key") {
		t.Errorf("body %v", r.body)
	}
	r = f.do(t, "POST", segmindPath, map[string]string{"x-api-key": "other", "Content-Type": "application/json"}, strings.NewReader(`{}`))
	wantStatus(t, "wrong key", r, 401)
	r = f.do(t, "GET", "/v1/get-user-credits", segmindJSON, nil)
	wantStatus(t, "credits", r, 200)
	if r.body["credits"] != 0.0 || r.body["free-credits"] != 0.0 {
		t.Errorf("credits body %v", r.body)
	}
	if n := f.sim.Stats(0)["segmind"].Tasks; n != 0 {
		t.Errorf("%d tasks created", n)
	}
}

func TestSegmindRateLimitHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "segmind", providersim.Knobs{RateLimit: 0.001, RateBurst: 1, RetryAfter: providersim.Duration(30 * time.Second)})
	f.do(t, "GET", "/v1/get-user-credits", segmindJSON, nil)
	r := f.do(t, "GET", "/v1/get-user-credits", segmindJSON, nil)
	wantStatus(t, "second call", r, 429)
	if r.header.Get("Retry-After") != "" {
		t.Error("Segmind sends no Retry-After")
	}
	at, err := time.Parse(time.RFC3339, r.header.Get("x-rate-limit-reset-at-utc"))
	if err != nil || !at.Equal(f.clock.now().Add(30*time.Second).Truncate(time.Second)) {
		t.Errorf("x-rate-limit-reset-at-utc %q: %v", r.header.Get("x-rate-limit-reset-at-utc"), err)
	}
	if r.header.Get("x-rate-limit-remaining") != "0" {
		t.Errorf("x-rate-limit-remaining %q", r.header.Get("x-rate-limit-remaining"))
	}
}
