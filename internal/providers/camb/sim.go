package camb

import (
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/reelq/reelq/internal/providers/camb/input"
	"github.com/reelq/reelq/internal/providersim"
)

// Camb.ai's Story API under /apis, as documented by docs.camb.ai and the
// cambai SDKs: POST /story (multipart), GET /story/{task_id},
// GET /story-result/{run_id}.

type cambStory struct {
	runID       int
	title       string
	chars       int
	unpaid      bool
	forbidden   bool // the ForbiddenMarker knob refused it: ERROR + FORBIDDEN
	legacyEnum  bool // report PAYMENT_REQUIRED as the old status, not ERROR + reason
	failTimeout bool // fail with TIMEOUT rather than ERROR
}

func (s *sim) cambGate(op string) providersim.Gate {
	return providersim.Gate{
		Provider: Name,
		Op:       op,
		Auth: func(r *http.Request) (string, bool) {
			k := r.Header.Get("x-api-key")
			return k, k != ""
		},
		Deny: func(w http.ResponseWriter, _ bool) {
			providersim.WriteJSON(w, http.StatusUnauthorized, map[string]any{"error": "Invalid API key", "status": 401})
		},
		Limited: func(w http.ResponseWriter, ra time.Duration) {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(ra.Round(time.Second)/time.Second))))
			providersim.WriteJSON(w, http.StatusTooManyRequests, map[string]any{"error": "Rate limit exceeded", "status": 429})
		},
		Fault: func(w http.ResponseWriter, status int) {
			providersim.WriteJSON(w, status, map[string]any{"detail": http.StatusText(status)})
		},
	}
}

// sim is camb's simulated API on the simulator's core.
type sim struct{ *providersim.Server }

// simRoutes registers camb's simulated API (Spec.Sim).
func simRoutes(srv *providersim.Server, mux *http.ServeMux) {
	s := &sim{srv}
	mux.HandleFunc("POST /apis/story", s.cambCreate)
	mux.HandleFunc("GET /apis/story/{task_id}", s.cambStatus)
	mux.HandleFunc("GET /apis/story-result/{run_id}", s.cambResult)
}

func (s *sim) cambCreate(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.cambGate("submit"), w, r)
	if !ok {
		return
	}
	invalid := func(field, msg, typ string) {
		c.Count("submit", 422)
		providersim.WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []map[string]any{
			{"loc": []string{"body", field}, "msg": msg, "type": typ},
		}})
	}
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		invalid("file", "Field required", "missing")
		return
	}
	f, _, err := r.FormFile("file")
	if err != nil {
		invalid("file", "Field required", "missing")
		return
	}
	text, err := io.ReadAll(f)
	f.Close()
	if err != nil || len(text) == 0 || !utf8.Valid(text) {
		invalid("file", "File must be a non-empty .txt or .docx document", "value_error")
		return
	}
	lang, err := strconv.Atoi(r.FormValue("source_language"))
	switch {
	case r.FormValue("source_language") == "":
		invalid("source_language", "Field required", "missing")
		return
	case err != nil || lang < 1 || lang > 148:
		invalid("source_language", "Input should be a valid language id", "enum")
		return
	}
	title := r.FormValue("title")
	if n := utf8.RuneCountInString(title); title != "" && (n < 3 || n > 255) {
		invalid("title", "String should have between 3 and 255 characters", "string_length")
		return
	}
	if n := utf8.RuneCountInString(r.FormValue("description")); n != 0 && (n < 3 || n > 5000) {
		invalid("description", "String should have between 3 and 5000 characters", "string_length")
		return
	}
	key := title
	if key == "" {
		key = string(text)
		if utf8.RuneCountInString(key) > 60 {
			key = string([]rune(key)[:60])
		}
	}
	story := &cambStory{title: title, chars: utf8.RuneCount(text)}
	var t *providersim.Task
	if c.Unavailable(w, title, string(text)) {
		return
	}
	if c.Forbidden(title, string(text)) {
		// Camb takes the request and fails the task with FORBIDDEN.
		story.forbidden = true
		t = c.UnpaidTask(key, story)
	} else if t, ok = c.NewTask("submit", key, r.Header.Get("Idempotency-Key"), input.DefaultCreditsPerTask.Float(), story); !ok {
		// Camb takes the request and fails the task when it is processed.
		story.unpaid = true
		t = c.UnpaidTask(key, story)
	}
	if !c.HoldCreate(r) {
		return
	}
	if c.MissingID() {
		providersim.WriteJSON(w, http.StatusOK, map[string]string{"taskId": t.ID})
		return
	}
	providersim.WriteJSON(w, http.StatusOK, map[string]string{"task_id": t.ID})
}

func (s *sim) cambStatus(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.cambGate("poll"), w, r)
	if !ok {
		return
	}
	v, ok := c.Lookup("poll", r.PathValue("task_id"))
	if !ok {
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Task not found"})
		return
	}
	story := cambStoryOf(c, v.Task)
	switch {
	case story.forbidden:
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "ERROR", "run_id": nil, "exception_reason": "FORBIDDEN", "message": "API key lacks access to this story"})
	case story.unpaid && story.legacyEnum:
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "PAYMENT_REQUIRED", "run_id": nil, "exception_reason": nil, "message": "Insufficient credits"})
	case story.unpaid:
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "ERROR", "run_id": nil, "exception_reason": "PAYMENT_REQUIRED", "message": "Insufficient credits to process this story"})
	case v.Done && v.Fail && story.failTimeout:
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "TIMEOUT", "run_id": nil, "exception_reason": nil, "message": "The story took too long; try splitting the document"})
	case v.Done && v.Fail:
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "ERROR", "run_id": nil, "exception_reason": "PROCESSING_ERROR", "message": "Processing failed"})
	case v.Done:
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "SUCCESS", "run_id": story.runID, "exception_reason": nil, "message": nil})
	default:
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "PENDING", "run_id": nil, "exception_reason": nil, "message": nil})
	}
}

// cambStoryOf returns a task's story, assigning its run id on first use.
// Tasks alternate between the two documented forms of a failure: TIMEOUT
// or ERROR for a failed run, the old status PAYMENT_REQUIRED or ERROR with
// that reason for an unpaid one.
func cambStoryOf(c *providersim.Call, t *providersim.Task) cambStory {
	var st cambStory
	c.With(func() {
		p := t.Data.(*cambStory)
		if p.runID == 0 {
			p.runID = t.Seq
			p.failTimeout = t.Seq%2 == 0
			p.legacyEnum = t.Seq%2 == 0
		}
		st = *p
	})
	return st
}

func (s *sim) cambResult(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.cambGate("result"), w, r)
	if !ok {
		return
	}
	run, _ := strconv.Atoi(r.PathValue("run_id"))
	found := c.FindTask(func(t *providersim.Task, now time.Time) bool {
		st := t.Data.(*cambStory)
		return st.runID == run && run > 0 && !st.unpaid && !st.forbidden && !t.Fail && !now.Before(t.DoneAt)
	})
	if found == nil {
		c.Count("result", 404)
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Run not found"})
		return
	}
	c.Count("result", 200)
	body := map[string]any{"audio_url": c.OutputURL(r, found, "story.wav"), "dialogue_url": c.OutputURL(r, found, "dialogue.wav")}
	if r.URL.Query().Get("include_transcript") == "true" {
		body["transcript"] = []map[string]any{{"start": 0.4, "end": 14.97, "text": "Once upon a time...", "speaker": "SPEAKER_0"}}
	}
	providersim.WriteJSON(w, http.StatusOK, body)
}
