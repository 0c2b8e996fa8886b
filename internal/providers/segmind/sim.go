package segmind

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/providers/segmind/input"
	"github.com/reelq/reelq/internal/providersim"
)

// Segmind PixelFlow workflows, as documented by the workflow API page
// (seed 000), the segmind-python SDK and the account-and-billing docs.

// segmindDefaultBalance is what get-user-credits reports when the credits
// knob is unlimited.
const segmindDefaultBalance = 100.0

var segmindWorkflowRe = regexp.MustCompile(`^[0-9a-f]{24}-v[0-9]+$`)

type segmindTask struct {
	workflow string
	inputs   map[string]any
}

func (s *sim) segmindGate(op string) providersim.Gate {
	return providersim.Gate{
		Provider: Name,
		Op:       op,
		Auth: func(r *http.Request) (string, bool) {
			// The gateway takes either header (SDK: x-api-key; docs: Bearer).
			if k := r.Header.Get("x-api-key"); k != "" {
				return k, true
			}
			if h := r.Header.Get("Authorization"); h != "" {
				return strings.TrimSpace(strings.TrimPrefix(h, "Bearer ")), true
			}
			return "", false
		},
		Deny: func(w http.ResponseWriter, present bool) {
			if !present {
				providersim.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "Missing Authorization or x-api-key in header"})
				return
			}
			providersim.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unauthorized. API key is invalid or may have expired. Please check your API key."})
		},
		Limited: func(w http.ResponseWriter, ra time.Duration) {
			// No Retry-After: Segmind says when the window resets instead.
			w.Header().Set("x-rate-limit-remaining", "0")
			w.Header().Set("x-rate-limit-reset-at-utc", s.Now().Add(ra).UTC().Format(time.RFC3339))
			providersim.WriteJSON(w, http.StatusTooManyRequests, map[string]string{"error": "Rate limit exceeded. Please try again later."})
		},
		Fault: func(w http.ResponseWriter, status int) {
			providersim.WriteJSON(w, status, map[string]string{"error": http.StatusText(status)})
		},
	}
}

// sim is segmind's simulated API on the simulator's core.
type sim struct{ *providersim.Server }

// simRoutes registers segmind's simulated API (Spec.Sim).
func simRoutes(srv *providersim.Server, mux *http.ServeMux) {
	s := &sim{srv}
	mux.HandleFunc("POST /workflows/{workflow}", s.segmindCreate)
	mux.HandleFunc("GET /workflows/request/{id}", s.segmindStatus)
	mux.HandleFunc("GET /v1/get-user-credits", s.segmindCredits)
}

func (s *sim) segmindCreate(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.segmindGate("submit"), w, r)
	if !ok {
		return
	}
	wf := r.PathValue("workflow")
	if !segmindWorkflowRe.MatchString(wf) {
		c.Count("submit", 404)
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "Workflow not found"})
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		c.Count("submit", 406)
		providersim.WriteJSON(w, http.StatusNotAcceptable, map[string]string{"error": "Invalid content type"})
		return
	}
	var inputs map[string]any
	if err := json.NewDecoder(r.Body).Decode(&inputs); err != nil || inputs == nil {
		c.Count("submit", 400)
		providersim.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "Invalid request body: expected a JSON object of workflow inputs"})
		return
	}
	if c.Unavailable(w, segmindKey(inputs)) {
		return
	}
	if c.Forbidden(segmindKey(inputs)) {
		providersim.WriteJSON(w, http.StatusForbidden, map[string]string{"error": "Forbidden: workflow " + wf + " is private or not shared with this account"})
		return
	}
	t, ok := c.NewTask("submit", segmindKey(inputs), r.Header.Get("Idempotency-Key"), input.DefaultPricePerRun.Float(), segmindTask{workflow: wf, inputs: inputs})
	if !ok {
		bal := 0.0
		if cr := c.Knobs().Credits; cr != nil {
			bal = *cr
		}
		providersim.WriteJSON(w, http.StatusNotAcceptable, map[string]string{"error": fmt.Sprintf(
			"Insufficient credits. Your balance is $%.4f and this request needs $%.4f.", bal, input.DefaultPricePerRun.Float())})
		return
	}
	if !c.HoldCreate(r) {
		return
	}
	w.Header().Set("x-request-id", t.ID)
	if c.MissingID() {
		providersim.WriteJSON(w, http.StatusOK, map[string]string{"requestId": t.ID, "status": "QUEUED", "message": "Request queued."})
		return
	}
	providersim.WriteJSON(w, http.StatusOK, map[string]string{
		"request_id": t.ID,
		"poll_url":   providersim.BaseURL(r) + "/workflows/request/" + t.ID,
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

func (s *sim) segmindStatus(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.segmindGate("poll"), w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	v, ok := c.Lookup("poll", id)
	if !ok {
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("Request %s not found", id)})
		return
	}
	switch {
	case v.Done && v.Fail:
		msg := c.FailMessage("Node 'Video Generator' failed: upstream model returned an error")
		if c.Cancelled(v.Task) {
			msg = "Request was cancelled"
		}
		// Both spellings: the seed reads error, the SDK error_message.
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "FAILED", "request_id": id, "error": msg,
			"error_message": map[string]string{"message": msg, "node": "Video Generator"}})
	case v.Done:
		items := []map[string]any{
			{"keyname": "Storyboard", "value": map[string]string{"data": c.OutputURL(r, v.Task, "storyboard.png"), "type": "image"}},
			{"keyname": "Video", "value": map[string]string{"data": c.OutputURL(r, v.Task, "story.mp4"), "type": "video"}},
		}
		out, _ := json.Marshal(items)
		// output is a JSON string, as the seed's json.loads shows.
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "COMPLETED", "request_id": id, "output": string(out)})
	case v.Progress < 20:
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "QUEUED", "request_id": id,
			"poll_url": providersim.BaseURL(r) + "/workflows/request/" + id, "message": "Request is queued"})
	default:
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "PROCESSING", "request_id": id, "output": ""})
	}
}

func (s *sim) segmindCredits(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.segmindGate("credits"), w, r)
	if !ok {
		return
	}
	if c.BalanceFault(w, func(st int) any { return map[string]string{"error": http.StatusText(st)} }) {
		return
	}
	c.Count("credits", 200)
	bal := segmindDefaultBalance
	if cr := c.Knobs().Credits; cr != nil {
		bal = *cr
	}
	w.Header().Set("x-remaining-credits", strconv.FormatFloat(bal, 'f', -1, 64))
	providersim.WriteJSON(w, http.StatusOK, map[string]float64{"credits": bal, "free-credits": 0})
}
