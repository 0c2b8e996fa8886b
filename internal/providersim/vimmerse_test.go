package providersim_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/providersim"
)

var vimmerseKey = map[string]string{"X-Api-Key": "vk"}

func vimmerseCreate(t *testing.T, f *fixture, title string) reply {
	t.Helper()
	body, ctype := multipartBody(t, [][2]string{
		{"template_id", "each_funnydance_0226"}, {"options", `{"image_url":"https://x/p.png"}`},
		{"title", title}, {"image_urls", "https://x/1.png"}, {"image_urls", "https://x/2.png"},
	}, "", "", "")
	return f.do(t, "POST", "/workflow", map[string]string{"X-Api-Key": "vk", "Content-Type": ctype}, body)
}

func TestVimmerseLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "vimmerse", providersim.Knobs{})
	r := vimmerseCreate(t, f, "Dance [reelq:j1]")
	wantStatus(t, "create", r, 200)
	data := r.body["data"].(map[string]any)
	id := str(data["id"])
	if data["processing_status"] != "queue_bullet" || data["title"] != "Dance [reelq:j1]" || len(data["images"].([]any)) != 2 {
		t.Fatalf("create data %v", data)
	}
	ts := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00$`)
	if !ts.MatchString(str(data["created_at"])) {
		t.Errorf("created_at %q is not in Vimmerse's format", data["created_at"])
	}
	for _, step := range []struct {
		after  time.Duration
		status string
	}{{time.Second, "queue_bullet"}, {4 * time.Second, "processing_bullet"}, {5 * time.Second, "success"}} {
		f.clock.advance(step.after)
		r = f.do(t, "GET", "/workflow/"+id, vimmerseKey, nil)
		wantStatus(t, "get", r, 200)
		data = r.body["data"].(map[string]any)
		if data["processing_status"] != step.status {
			t.Fatalf("status %v, want %s", data["processing_status"], step.status)
		}
	}
	res := data["result"].([]any)
	if len(res) != 1 || res[0].(map[string]any)["content_type"] != "video/mp4" || data["progress_percentage"] != 100.0 {
		t.Errorf("success data %v", data)
	}
	st := f.sim.Stats(0)["vimmerse"]
	if st.Submissions["Dance [reelq:j1]"] != 1 || st.Spent != 200 {
		t.Errorf("stats %+v", st)
	}
}

func TestVimmerseUpdateDelete(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "vimmerse", providersim.Knobs{})
	id := str(vimmerseCreate(t, f, "a").body["data"].(map[string]any)["id"])
	r := f.do(t, "PUT", "/workflow/"+id, map[string]string{"X-Api-Key": "vk", "Content-Type": "application/json"}, strings.NewReader(`{"title":"b","rating":"5"}`))
	wantStatus(t, "put", r, 200)
	if d := r.body["data"].(map[string]any); d["title"] != "b" || d["rating"] != "5" {
		t.Errorf("updated %v", d)
	}
	r = f.do(t, "DELETE", "/workflow/"+id, vimmerseKey, nil)
	wantStatus(t, "delete", r, 200)
	if d := r.body["data"].(map[string]any); d["processing_status"] != "cancel" {
		t.Errorf("deleted %v", d)
	}
	wantStatus(t, "get deleted", f.do(t, "GET", "/workflow/"+id, vimmerseKey, nil), 404)
	wantStatus(t, "delete again", f.do(t, "DELETE", "/workflow/"+id, vimmerseKey, nil), 404)
	if a := f.sim.Stats(0)["vimmerse"].Active; a != 0 {
		t.Errorf("active %d after delete", a)
	}
}

func TestVimmerseErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "vimmerse", providersim.Knobs{MaxActive: 1, APIKey: "vk"})
	wantStatus(t, "first", vimmerseCreate(t, f, "one"), 200)
	r := vimmerseCreate(t, f, "two")
	wantStatus(t, "over MaxActive", r, 429)
	if r.header.Get("Retry-After") == "" || !strings.Contains(str(r.body["message"]), "concurrency") {
		t.Errorf("429 %v %v", r.header, r.body)
	}
	f.clock.advance(time.Minute) // the first finishes
	form := map[string]string{"X-Api-Key": "vk", "Content-Type": "application/x-www-form-urlencoded"}
	r = f.do(t, "POST", "/workflow", form, formBody([][2]string{{"options", "not json"}}))
	wantStatus(t, "bad options", r, 422)
	if d := r.body["detail"].([]any)[0].(map[string]any); str(d["msg"]) == "" || d["loc"] == nil {
		t.Errorf("422 body %v", r.body)
	}
	wantStatus(t, "bad visibility", f.do(t, "POST", "/workflow", form, formBody([][2]string{{"visibility_status", "7"}})), 422)
	wantStatus(t, "bad template", f.do(t, "POST", "/workflow", form, formBody([][2]string{{"template_id", "a b"}})), 404)
	wantStatus(t, "wrong key", f.do(t, "GET", "/workflow/x", map[string]string{"X-Api-Key": "nope"}, nil), 401)
	if err := f.sim.SetCredits("vimmerse", 50, false); err != nil {
		t.Fatal(err)
	}
	r = f.do(t, "POST", "/workflow", form, formBody([][2]string{{"title", "urlencoded"}})) // default template: 100 credits
	wantStatus(t, "no credits", r, 402)
	if r.body["message"] != "INSUFFICIENT_CREDIT" {
		t.Errorf("402 body %v", r.body)
	}
}
