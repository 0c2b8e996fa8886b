package vimmerse

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/reelq/reelq/internal/providers/vimmerse/input"
	"github.com/reelq/reelq/internal/providersim"
)

// Vimmerse's legacy Workflow API, as documented by its OpenAPI spec
// (fern-demo/vimmerse fern/swagger.json) and seeds 002 and 004.

// VimmerseTimeLayout is how Vimmerse writes timestamps:
// "2025-04-11 18:33:59.780864+00:00".
const VimmerseTimeLayout = "2006-01-02 15:04:05.000000-07:00"

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

func (s *sim) vimmerseGate(op string) providersim.Gate {
	return providersim.Gate{
		Provider: Name,
		Op:       op,
		Auth: func(r *http.Request) (string, bool) {
			k := r.Header.Get("X-Api-Key")
			return k, k != ""
		},
		Deny: func(w http.ResponseWriter, _ bool) {
			providersim.WriteJSON(w, http.StatusUnauthorized, map[string]string{"message": "UNAUTHORIZED"})
		},
		Limited: func(w http.ResponseWriter, ra time.Duration) {
			vimmerseTooMany(w, ra)
		},
		Fault: func(w http.ResponseWriter, status int) {
			providersim.WriteJSON(w, status, map[string]string{"message": "Please retry or contact support"})
		},
	}
}

func vimmerseTooMany(w http.ResponseWriter, ra time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(ra.Round(time.Second)/time.Second))))
	providersim.WriteJSON(w, http.StatusTooManyRequests, map[string]string{"message": "Too Many Requests. Rate limit exceeded or concurrency limit reached."})
}

// sim is vimmerse's simulated API on the simulator's core.
type sim struct{ *providersim.Server }

// simRoutes registers vimmerse's simulated API (Spec.Sim).
func simRoutes(srv *providersim.Server, mux *http.ServeMux) {
	s := &sim{srv}
	mux.HandleFunc("POST /workflow", s.vimmerseCreate)
	mux.HandleFunc("GET /workflow/{id}", s.vimmerseGet)
	mux.HandleFunc("PUT /workflow/{id}", s.vimmerseUpdate)
	mux.HandleFunc("DELETE /workflow/{id}", s.vimmerseDelete)
}

// fastAPIError writes a FastAPI validation error.
func fastAPIError(w http.ResponseWriter, field, msg, typ string) {
	providersim.WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []map[string]any{
		{"loc": []string{"body", field}, "msg": msg, "type": typ},
	}})
}

func (s *sim) vimmerseCreate(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.vimmerseGate("submit"), w, r)
	if !ok {
		return
	}
	if err := r.ParseMultipartForm(8 << 20); err != nil && err != http.ErrNotMultipart {
		c.Count("submit", 422)
		fastAPIError(w, "form", "Invalid form body", "value_error")
		return
	} else if err == http.ErrNotMultipart {
		if err := r.ParseForm(); err != nil {
			c.Count("submit", 422)
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
		c.Count("submit", 422)
		fastAPIError(w, "options", "Options must be a JSON string of an object", "value_error.json")
		return
	}
	if !slices.Contains([]string{"0", "1", "2"}, wf.visibility) {
		c.Count("submit", 422)
		fastAPIError(w, "visibility_status", "Visibility status must be one of '0', '1', '2'", "value_error")
		return
	}
	if !vimmerseTemplateRe.MatchString(wf.template) {
		c.Count("submit", 404)
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"message": "NOT_FOUND"})
		return
	}
	if c.Unavailable(w, wf.title, wf.template, opts) {
		return
	}
	if c.Forbidden(wf.title, wf.template, opts) {
		providersim.WriteJSON(w, http.StatusForbidden, map[string]string{"message": "FORBIDDEN: template " + wf.template + " is not available to this account"})
		return
	}
	cost, ok := input.TemplateCredits[wf.template]
	if !ok {
		cost = input.DefaultCredits
	}
	vimmerseCreateMu.Lock()
	if limit := c.Knobs().MaxActive; limit > 0 && c.ActiveTasks() >= limit {
		vimmerseCreateMu.Unlock()
		c.Count("submit", 429)
		vimmerseTooMany(w, time.Second)
		return
	}
	t, ok := c.NewTask("submit", wf.title, r.Header.Get("Idempotency-Key"), cost.Float(), wf)
	vimmerseCreateMu.Unlock()
	if !ok {
		providersim.WriteJSON(w, http.StatusPaymentRequired, map[string]string{"message": "INSUFFICIENT_CREDIT"})
		return
	}
	if hook := f.Get("webhook_url"); hook != "" {
		// The documented story webhook's shape (unsigned).
		c.CallBack(t, func(ctx context.Context, v providersim.TaskView) {
			status := "success"
			if v.Fail {
				status = "fail"
			}
			b, _ := json.Marshal(map[string]string{"customer_id": "sim", "batch_id": v.Task.ID, "status": status})
			c.Post(ctx, hook, nil, b)
		})
	}
	if !c.HoldCreate(r) {
		return
	}
	v, _ := c.Peek(t.ID)
	obj := vimmerseObject(c, r, v, false)
	if c.MissingID() {
		obj["workflow_id"] = obj["id"]
		delete(obj, "id")
	}
	providersim.WriteJSON(w, http.StatusOK, map[string]any{"data": obj})
}

func (s *sim) vimmerseGet(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.vimmerseGate("poll"), w, r)
	if !ok {
		return
	}
	v, ok := c.Lookup("poll", r.PathValue("id"))
	if !ok {
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"message": "NOT_FOUND"})
		return
	}
	providersim.WriteJSON(w, http.StatusOK, map[string]any{"data": vimmerseObject(c, r, v, c.Cancelled(v.Task))})
}

func (s *sim) vimmerseUpdate(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.vimmerseGate("update"), w, r)
	if !ok {
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		c.Count("update", 400)
		providersim.WriteJSON(w, http.StatusBadRequest, map[string]string{"message": "BAD_REQUEST"})
		return
	}
	v, ok := c.Peek(r.PathValue("id"))
	if !ok {
		c.Count("update", 404)
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"message": "NOT_FOUND"})
		return
	}
	c.Count("update", 200)
	wf := v.Task.Data.(*vimmerseWorkflow)
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
	providersim.WriteJSON(w, http.StatusOK, map[string]any{"data": vimmerseObject(c, r, v, c.Cancelled(v.Task))})
}

func (s *sim) vimmerseDelete(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.vimmerseGate("cancel"), w, r)
	if !ok {
		return
	}
	v, ok := c.Peek(r.PathValue("id"))
	if !ok {
		c.Count("cancel", 404)
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"message": "NOT_FOUND"})
		return
	}
	c.Cancel(v.Task.ID, true)
	c.Count("cancel", 200)
	v.Done, v.Fail = true, true
	providersim.WriteJSON(w, http.StatusOK, map[string]any{"data": vimmerseObject(c, r, v, true)})
}

// vimmerseObject renders the documented workflow object at one moment.
func vimmerseObject(c *providersim.Call, r *http.Request, v providersim.TaskView, cancelled bool) map[string]any {
	wf := v.Task.Data.(*vimmerseWorkflow)
	wf.mu.Lock()
	defer wf.mu.Unlock()
	id := v.Task.ID
	file := func(name string) string { return c.OutputURL(r, v.Task, name) }
	status, progress := "queue_bullet", v.Progress
	completions := []map[string]any{}
	result := []map[string]string{}
	mediaResult := []map[string]any{}
	updated := v.Task.Created.Add(v.Elapsed)
	switch {
	case v.Done && cancelled:
		status = "cancel"
	case v.Done && v.Fail:
		status = "fail"
	case v.Done:
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
		mediaResult = []map[string]any{{"updated_at": v.Task.DoneAt.UTC().Format("2006-01-02 15:04:05-07:00"), "size": providersim.ClipSize(), "url": file("final_output.mp4")}}
		updated = v.Task.DoneAt
	case v.Progress >= 20:
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
		"created_at": v.Task.Created.UTC().Format(VimmerseTimeLayout),
		"updated_at": updated.UTC().Format(VimmerseTimeLayout),
	}
}
