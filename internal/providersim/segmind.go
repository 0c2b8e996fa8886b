package providersim

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Segmind PixelFlow workflows, as documented by the workflow API page
// (seed 000), the segmind-python SDK and the account-and-billing docs.

// SegmindPricePerRun is what one workflow run costs (USD), matching the
// adapter's estimate for the default storyboard workflow.
const SegmindPricePerRun = 2.4066

// segmindDefaultBalance is what get-user-credits reports when the credits
// knob is unlimited.
const segmindDefaultBalance = 100.0

var segmindWorkflowRe = regexp.MustCompile(`^[0-9a-f]{24}-v[0-9]+$`)

type segmindTask struct {
	workflow string
	inputs   map[string]any
}

func (s *Server) segmindGate(op string) gate {
	return gate{
		provider: "segmind",
		op:       op,
		auth: func(r *http.Request) (string, bool) {
			// The gateway takes either header (SDK: x-api-key; docs: Bearer).
			if k := r.Header.Get("x-api-key"); k != "" {
				return k, true
			}
			if h := r.Header.Get("Authorization"); h != "" {
				return strings.TrimSpace(strings.TrimPrefix(h, "Bearer ")), true
			}
			return "", false
		},
		deny: func(w http.ResponseWriter, present bool) {
			if !present {
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Missing Authorization or x-api-key in header"})
				return
			}
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unauthorized. API key is invalid or may have expired. Please check your API key."})
		},
		limited: func(w http.ResponseWriter, ra time.Duration) {
			// No Retry-After: Segmind says when the window resets instead.
			w.Header().Set("x-rate-limit-remaining", "0")
			w.Header().Set("x-rate-limit-reset-at-utc", s.now().Add(ra).UTC().Format(time.RFC3339))
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "Rate limit exceeded. Please try again later."})
		},
		fault: func(w http.ResponseWriter, status int) {
			writeJSON(w, status, map[string]string{"error": http.StatusText(status)})
		},
	}
}

func (s *Server) segmindRoutes() {
	s.mux.HandleFunc("POST /workflows/{workflow}", s.segmindCreate)
	s.mux.HandleFunc("GET /workflows/request/{id}", s.segmindStatus)
	s.mux.HandleFunc("GET /v1/get-user-credits", s.segmindCredits)
}

func (s *Server) segmindCreate(w http.ResponseWriter, r *http.Request) {
	c, ok := s.enter(s.segmindGate("submit"), w, r)
	if !ok {
		return
	}
	wf := r.PathValue("workflow")
	if !segmindWorkflowRe.MatchString(wf) {
		s.count(c.p, "submit", 404)
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Workflow not found"})
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.count(c.p, "submit", 406)
		writeJSON(w, http.StatusNotAcceptable, map[string]string{"error": "Invalid content type"})
		return
	}
	var inputs map[string]any
	if err := json.NewDecoder(r.Body).Decode(&inputs); err != nil || inputs == nil {
		s.count(c.p, "submit", 400)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Invalid request body: expected a JSON object of workflow inputs"})
		return
	}
	if c.unavailable(w, segmindKey(inputs)) {
		return
	}
	if c.forbidden(segmindKey(inputs)) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "Forbidden: workflow " + wf + " is private or not shared with this account"})
		return
	}
	t, ok := c.newTask("submit", segmindKey(inputs), r.Header.Get("Idempotency-Key"), SegmindPricePerRun, segmindTask{workflow: wf, inputs: inputs})
	if !ok {
		bal := 0.0
		if cr := s.Knobs("segmind").Credits; cr != nil {
			bal = *cr
		}
		writeJSON(w, http.StatusNotAcceptable, map[string]string{"error": fmt.Sprintf(
			"Insufficient credits. Your balance is $%.4f and this request needs $%.4f.", bal, SegmindPricePerRun)})
		return
	}
	if !c.holdCreate(r) {
		return
	}
	w.Header().Set("x-request-id", t.id)
	if c.missingID() {
		writeJSON(w, http.StatusOK, map[string]string{"requestId": t.id, "status": "QUEUED", "message": "Request queued."})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"request_id": t.id,
		"poll_url":   baseURL(r) + "/workflows/request/" + t.id,
		"status":     "QUEUED",
		"message":    "Request queued. Poll the poll_url for the result.",
	})
}

// segmindKey is what submissions are counted by: a prompt-like input if
// there is one, else the canonical JSON of the inputs.
func segmindKey(inputs map[string]any) string {
	for _, k := range []string{"prompt", "text", "story", "idea"} {
		if v, ok := inputs[k].(string); ok && v != "" {
			return v
		}
	}
	b, _ := json.Marshal(inputs) // map keys are sorted: canonical
	return string(b)
}

func (s *Server) segmindStatus(w http.ResponseWriter, r *http.Request) {
	c, ok := s.enter(s.segmindGate("poll"), w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	v, ok := c.lookup("poll", id)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("Request %s not found", id)})
		return
	}
	switch {
	case v.done && v.fail:
		msg := c.failMessage("Node 'Video Generator' failed: upstream model returned an error")
		if v.t.cancelled {
			msg = "Request was cancelled"
		}
		// Both spellings: the seed reads error, the SDK error_message.
		writeJSON(w, http.StatusOK, map[string]any{"status": "FAILED", "request_id": id, "error": msg,
			"error_message": map[string]string{"message": msg, "node": "Video Generator"}})
	case v.done:
		items := []map[string]any{
			{"keyname": "Storyboard", "value": map[string]string{"data": c.outputURL(r, v.t, "storyboard.png"), "type": "image"}},
			{"keyname": "Video", "value": map[string]string{"data": c.outputURL(r, v.t, "story.mp4"), "type": "video"}},
		}
		out, _ := json.Marshal(items)
		// output is a JSON string, as the seed's json.loads shows.
		writeJSON(w, http.StatusOK, map[string]any{"status": "COMPLETED", "request_id": id, "output": string(out)})
	case v.progress < 20:
		writeJSON(w, http.StatusOK, map[string]any{"status": "QUEUED", "request_id": id,
			"poll_url": baseURL(r) + "/workflows/request/" + id, "message": "Request is queued"})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "PROCESSING", "request_id": id, "output": ""})
	}
}

func (s *Server) segmindCredits(w http.ResponseWriter, r *http.Request) {
	c, ok := s.enter(s.segmindGate("credits"), w, r)
	if !ok {
		return
	}
	if c.balanceFault(w, func(st int) any { return map[string]string{"error": http.StatusText(st)} }) {
		return
	}
	s.count(c.p, "credits", 200)
	bal := segmindDefaultBalance
	if cr := s.Knobs("segmind").Credits; cr != nil {
		bal = *cr
	}
	w.Header().Set("x-remaining-credits", strconv.FormatFloat(bal, 'f', -1, 64))
	writeJSON(w, http.StatusOK, map[string]float64{"credits": bal, "free-credits": 0})
}

// baseURL is the scheme and host the request was addressed to, for the
// absolute URLs (poll_url) a real API returns.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
