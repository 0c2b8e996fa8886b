package providersim

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Camb.ai's Story API under /apis, as documented by docs.camb.ai and the
// cambai SDKs: POST /story (multipart), GET /story/{task_id},
// GET /story-result/{run_id}.

// CambCreditsPerTask is what one story costs, matching the adapter's
// default estimate.
const CambCreditsPerTask = 1.0

type cambStory struct {
	runID       int
	title       string
	chars       int
	unpaid      bool
	forbidden   bool // the ForbiddenMarker knob refused it: ERROR + FORBIDDEN
	legacyEnum  bool // report PAYMENT_REQUIRED as the old status, not ERROR + reason
	failTimeout bool // fail with TIMEOUT rather than ERROR
}

func (s *Server) cambGate(op string) gate {
	return gate{
		provider: "camb",
		op:       op,
		auth: func(r *http.Request) (string, bool) {
			k := r.Header.Get("x-api-key")
			return k, k != ""
		},
		deny: func(w http.ResponseWriter, _ bool) {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Invalid API key", "status": 401})
		},
		limited: func(w http.ResponseWriter, ra time.Duration) {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(ra.Round(time.Second)/time.Second))))
			writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": "Rate limit exceeded", "status": 429})
		},
		fault: func(w http.ResponseWriter, status int) {
			writeJSON(w, status, map[string]any{"detail": http.StatusText(status)})
		},
	}
}

func (s *Server) cambRoutes() {
	s.mux.HandleFunc("POST /apis/story", s.cambCreate)
	s.mux.HandleFunc("GET /apis/story/{task_id}", s.cambStatus)
	s.mux.HandleFunc("GET /apis/story-result/{run_id}", s.cambResult)
}

func (s *Server) cambCreate(w http.ResponseWriter, r *http.Request) {
	c, ok := s.enter(s.cambGate("submit"), w, r)
	if !ok {
		return
	}
	invalid := func(field, msg, typ string) {
		s.count(c.p, "submit", 422)
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []map[string]any{
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
	var t *task
	if c.unavailable(w, title, string(text)) {
		return
	}
	if c.forbidden(title, string(text)) {
		// Camb takes the request and fails the task with FORBIDDEN.
		story.forbidden = true
		t = c.unpaidTask(key, story)
	} else if t, ok = c.newTask("submit", key, r.Header.Get("Idempotency-Key"), CambCreditsPerTask, story); !ok {
		// Camb takes the request and fails the task when it is processed.
		story.unpaid = true
		t = c.unpaidTask(key, story)
	}
	if !c.holdCreate(r) {
		return
	}
	if c.missingID() {
		writeJSON(w, http.StatusOK, map[string]string{"taskId": t.id})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"task_id": t.id})
}

// unpaidTask records a task that will not run (no credits, or forbidden):
// it is not charged or counted as a submission, and polls report
// PAYMENT_REQUIRED or FORBIDDEN.
func (c *call) unpaidTask(key string, story *cambStory) *task {
	s, p := c.s, c.p
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	now := s.now()
	story.legacyEnum = s.seq%2 == 0 // alternate the two documented forms
	story.runID = s.seq
	t := &task{
		id:       fmt.Sprintf("%s-%06d-%04x", p.name, s.seq, s.rng.Uint32()&0xffff),
		key:      key,
		created:  now,
		doneAt:   now,
		fail:     true,
		reported: true, // never counted as active
		data:     story,
	}
	p.tasks[t.id] = t
	return t
}

func (s *Server) cambStatus(w http.ResponseWriter, r *http.Request) {
	c, ok := s.enter(s.cambGate("poll"), w, r)
	if !ok {
		return
	}
	v, ok := c.lookup("poll", r.PathValue("task_id"))
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Task not found"})
		return
	}
	story := c.cambStory(v.t)
	switch {
	case story.forbidden:
		writeJSON(w, http.StatusOK, map[string]any{"status": "ERROR", "run_id": nil, "exception_reason": "FORBIDDEN", "message": "API key lacks access to this story"})
	case story.unpaid && story.legacyEnum:
		writeJSON(w, http.StatusOK, map[string]any{"status": "PAYMENT_REQUIRED", "run_id": nil, "exception_reason": nil, "message": "Insufficient credits"})
	case story.unpaid:
		writeJSON(w, http.StatusOK, map[string]any{"status": "ERROR", "run_id": nil, "exception_reason": "PAYMENT_REQUIRED", "message": "Insufficient credits to process this story"})
	case v.done && v.fail && story.failTimeout:
		writeJSON(w, http.StatusOK, map[string]any{"status": "TIMEOUT", "run_id": nil, "exception_reason": nil, "message": "The story took too long; try splitting the document"})
	case v.done && v.fail:
		writeJSON(w, http.StatusOK, map[string]any{"status": "ERROR", "run_id": nil, "exception_reason": "PROCESSING_ERROR", "message": "Processing failed"})
	case v.done:
		writeJSON(w, http.StatusOK, map[string]any{"status": "SUCCESS", "run_id": story.runID, "exception_reason": nil, "message": nil})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "PENDING", "run_id": nil, "exception_reason": nil, "message": nil})
	}
}

// cambStory returns a task's story, assigning its run id on first use.
func (c *call) cambStory(t *task) cambStory {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	st := t.data.(*cambStory)
	if st.runID == 0 {
		n, _ := strconv.Atoi(strings.Split(t.id, "-")[1])
		st.runID = n
		st.failTimeout = n%2 == 0
	}
	return *st
}

func (s *Server) cambResult(w http.ResponseWriter, r *http.Request) {
	c, ok := s.enter(s.cambGate("result"), w, r)
	if !ok {
		return
	}
	run, _ := strconv.Atoi(r.PathValue("run_id"))
	s.mu.Lock()
	var found *task
	for _, t := range c.p.tasks {
		if st := t.data.(*cambStory); st.runID == run && run > 0 && !st.unpaid && !st.forbidden && !t.fail && !s.now().Before(t.doneAt) {
			found = t
			break
		}
	}
	s.mu.Unlock()
	if found == nil {
		s.count(c.p, "result", 404)
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Run not found"})
		return
	}
	s.count(c.p, "result", 200)
	body := map[string]any{"audio_url": c.outputURL(r, found, "story.wav"), "dialogue_url": c.outputURL(r, found, "dialogue.wav")}
	if r.URL.Query().Get("include_transcript") == "true" {
		body["transcript"] = []map[string]any{{"start": 0.4, "end": 14.97, "text": "Once upon a time...", "speaker": "SPEAKER_0"}}
	}
	writeJSON(w, http.StatusOK, body)
}
