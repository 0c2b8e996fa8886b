package providersim

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Vimmerse's legacy Workflow API, as documented by its OpenAPI spec
// (fern-demo/vimmerse fern/swagger.json) and seeds 002 and 004.

// VimmerseTimeLayout is how Vimmerse writes timestamps:
// "2025-04-11 18:33:59.780864+00:00".
const VimmerseTimeLayout = "2006-01-02 15:04:05.000000-07:00"

// VimmerseDefaultCredits is charged for templates without a published price.
const VimmerseDefaultCredits = 100.0

// VimmerseTemplateCredits are the published template prices, matching the
// adapter's estimates.
var VimmerseTemplateCredits = map[string]float64{
	"each_createsong_0226":   10,
	"each_explodedloop_0226": 100,
	"each_funnydance_0226":   200,
	"each_moonwalk_0226":     150,
	"each_ugcproduct_0226":   320,
}

var vimmerseTemplateRe = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,100}$`)

// vimmerseCreateMu makes the concurrency check and the task creation one
// step, so MaxActive is never overshot by racing creates.
var vimmerseCreateMu sync.Mutex

// vimmerseWorkflow is the stored form of a workflow.
type vimmerseWorkflow struct {
	mu          sync.Mutex
	title       string
	description string
	visibility  string
	template    string
	options     map[string]any
	images      []string
	rating      string
}

func (s *Server) vimmerseGate(op string) gate {
	return gate{
		provider: "vimmerse",
		op:       op,
		auth: func(r *http.Request) (string, bool) {
			k := r.Header.Get("X-Api-Key")
			return k, k != ""
		},
		deny: func(w http.ResponseWriter, _ bool) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "UNAUTHORIZED"})
		},
		limited: func(w http.ResponseWriter, ra time.Duration) {
			vimmerseTooMany(w, ra)
		},
		fault: func(w http.ResponseWriter, status int) {
			writeJSON(w, status, map[string]string{"message": "Please retry or contact support"})
		},
	}
}

func vimmerseTooMany(w http.ResponseWriter, ra time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(ra.Round(time.Second)/time.Second))))
	writeJSON(w, http.StatusTooManyRequests, map[string]string{"message": "Too Many Requests. Rate limit exceeded or concurrency limit reached."})
}

func (s *Server) vimmerseRoutes() {
	s.mux.HandleFunc("POST /workflow", s.vimmerseCreate)
	s.mux.HandleFunc("GET /workflow/{id}", s.vimmerseGet)
	s.mux.HandleFunc("PUT /workflow/{id}", s.vimmerseUpdate)
	s.mux.HandleFunc("DELETE /workflow/{id}", s.vimmerseDelete)
}

// fastAPIError writes a FastAPI validation error.
func fastAPIError(w http.ResponseWriter, field, msg, typ string) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []map[string]any{
		{"loc": []string{"body", field}, "msg": msg, "type": typ},
	}})
}

func (s *Server) vimmerseCreate(w http.ResponseWriter, r *http.Request) {
	c, ok := s.enter(s.vimmerseGate("submit"), w, r)
	if !ok {
		return
	}
	if err := r.ParseMultipartForm(8 << 20); err != nil && err != http.ErrNotMultipart {
		s.count(c.p, "submit", 422)
		fastAPIError(w, "form", "Invalid form body", "value_error")
		return
	} else if err == http.ErrNotMultipart {
		if err := r.ParseForm(); err != nil {
			s.count(c.p, "submit", 422)
			fastAPIError(w, "form", "Invalid form body", "value_error")
			return
		}
	}
	f := r.Form
	wf := &vimmerseWorkflow{
		title: f.Get("title"), description: f.Get("description"), visibility: f.Get("visibility_status"),
		template: f.Get("template_id"), images: f["image_urls"],
	}
	if wf.template == "" {
		wf.template = "overlay_gray_5443"
	}
	if wf.visibility == "" {
		wf.visibility = "1"
	}
	opts := f.Get("options")
	if opts == "" {
		opts = "{}"
	}
	if err := json.Unmarshal([]byte(opts), &wf.options); err != nil || wf.options == nil {
		s.count(c.p, "submit", 422)
		fastAPIError(w, "options", "Options must be a JSON string of an object", "value_error.json")
		return
	}
	if !slices.Contains([]string{"0", "1", "2"}, wf.visibility) {
		s.count(c.p, "submit", 422)
		fastAPIError(w, "visibility_status", "Visibility status must be one of '0', '1', '2'", "value_error")
		return
	}
	if !vimmerseTemplateRe.MatchString(wf.template) {
		s.count(c.p, "submit", 404)
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "NOT_FOUND"})
		return
	}
	if c.unavailable(w, wf.title, wf.template, opts) {
		return
	}
	if c.forbidden(wf.title, wf.template, opts) {
		writeJSON(w, http.StatusForbidden, map[string]string{"message": "FORBIDDEN: template " + wf.template + " is not available to this account"})
		return
	}
	cost, ok := VimmerseTemplateCredits[wf.template]
	if !ok {
		cost = VimmerseDefaultCredits
	}
	vimmerseCreateMu.Lock()
	if limit := s.Knobs("vimmerse").MaxActive; limit > 0 && c.activeTasks() >= limit {
		vimmerseCreateMu.Unlock()
		s.count(c.p, "submit", 429)
		vimmerseTooMany(w, time.Second)
		return
	}
	t, ok := c.newTask("submit", wf.title, r.Header.Get("Idempotency-Key"), cost, wf)
	vimmerseCreateMu.Unlock()
	if !ok {
		writeJSON(w, http.StatusPaymentRequired, map[string]string{"message": "INSUFFICIENT_CREDIT"})
		return
	}
	if !c.holdCreate(r) {
		return
	}
	v, _ := c.peek(t.id)
	obj := c.vimmerseObject(r, v, false)
	if c.missingID() {
		obj["workflow_id"] = obj["id"]
		delete(obj, "id")
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": obj})
}

// peek is lookup without counting a request or marking the task reported.
func (c *call) peek(id string) (taskView, bool) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	t, ok := c.p.tasks[id]
	if !ok || t.deleted {
		return taskView{}, false
	}
	now := c.s.now()
	v := taskView{t: t, elapsed: now.Sub(t.created)}
	if total := t.doneAt.Sub(t.created); total > 0 && now.Before(t.doneAt) {
		v.progress = float64(int(100 * float64(now.Sub(t.created)) / float64(total)))
	}
	return v, true
}

func (s *Server) vimmerseGet(w http.ResponseWriter, r *http.Request) {
	c, ok := s.enter(s.vimmerseGate("poll"), w, r)
	if !ok {
		return
	}
	v, ok := c.lookup("poll", r.PathValue("id"))
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "NOT_FOUND"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": c.vimmerseObject(r, v, c.cancelled(v.t))})
}

// cancelled reads a task's cancelled flag under the lock.
func (c *call) cancelled(t *task) bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return t.cancelled
}

func (s *Server) vimmerseUpdate(w http.ResponseWriter, r *http.Request) {
	c, ok := s.enter(s.vimmerseGate("update"), w, r)
	if !ok {
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		s.count(c.p, "update", 400)
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "BAD_REQUEST"})
		return
	}
	v, ok := c.peek(r.PathValue("id"))
	if !ok {
		s.count(c.p, "update", 404)
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "NOT_FOUND"})
		return
	}
	s.count(c.p, "update", 200)
	wf := v.t.data.(*vimmerseWorkflow)
	wf.mu.Lock()
	for k, val := range body {
		str, _ := val.(string)
		switch k {
		case "title":
			wf.title = str
		case "description":
			wf.description = str
		case "visibility_status":
			wf.visibility = str
		case "rating":
			wf.rating = str
		}
	}
	wf.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": c.vimmerseObject(r, v, c.cancelled(v.t))})
}

func (s *Server) vimmerseDelete(w http.ResponseWriter, r *http.Request) {
	c, ok := s.enter(s.vimmerseGate("cancel"), w, r)
	if !ok {
		return
	}
	v, ok := c.peek(r.PathValue("id"))
	if !ok {
		s.count(c.p, "cancel", 404)
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "NOT_FOUND"})
		return
	}
	c.cancel(v.t.id, true)
	s.count(c.p, "cancel", 200)
	v.done, v.fail = true, true
	writeJSON(w, http.StatusOK, map[string]any{"data": c.vimmerseObject(r, v, true)})
}

// vimmerseObject renders the documented workflow object at one moment.
func (c *call) vimmerseObject(r *http.Request, v taskView, cancelled bool) map[string]any {
	wf := v.t.data.(*vimmerseWorkflow)
	wf.mu.Lock()
	defer wf.mu.Unlock()
	id := v.t.id
	file := func(name string) string { return c.outputURL(r, v.t, name) }
	status, progress := "queue_bullet", v.progress
	completions := []map[string]any{}
	result := []map[string]string{}
	mediaResult := []map[string]any{}
	updated := v.t.created.Add(v.elapsed)
	switch {
	case v.done && cancelled:
		status = "cancel"
	case v.done && v.fail:
		status = "fail"
	case v.done:
		status, progress = "success", 100
		for _, st := range []struct{ flow, ct, file string }{
			{"crop_to_content", "image/png", "step1_cropped.png"},
			{"replace_alpha_with_gray", "image/png", "step2_processed.png"},
			{"upscale", "image/png", "step3_upscaled.png"},
			{"create_media", "video/mp4", "step4_animated.mp4"},
			{"video_overlay", "video/mp4", "final_output.mp4"},
		} {
			completions = append(completions, map[string]any{"flow": st.flow, "result": []map[string]string{{"content_type": st.ct, "url": file(st.file)}}})
		}
		result = []map[string]string{{"content_type": "video/mp4", "url": file("final_output.mp4")}}
		mediaResult = []map[string]any{{"updated_at": v.t.doneAt.UTC().Format("2006-01-02 15:04:05-07:00"), "size": len(avMP4), "url": file("final_output.mp4")}}
		updated = v.t.doneAt
	case v.progress >= 20:
		status = "processing_bullet"
	}
	images := wf.images
	if images == nil {
		images = []string{}
	}
	return map[string]any{
		"id": id, "title": wf.title, "description": wf.description, "visibility_status": wf.visibility,
		"model": wf.template, "options": wf.options, "images": images, "rating": wf.rating,
		"primary_user_id": "user@example.com", "customer_id": "customer-sim",
		"processing_status": status, "progress_percentage": int(progress),
		"completions": completions, "result": result, "media_result": mediaResult,
		"created_at": v.t.created.UTC().Format(VimmerseTimeLayout),
		"updated_at": updated.UTC().Format(VimmerseTimeLayout),
	}
}
