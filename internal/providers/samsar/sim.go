package samsar

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/reelq/reelq/internal/providers/samsar/input"
	"github.com/reelq/reelq/internal/providersim"
)

// Samsar, as documented by the create_movie seed (March 2025), with the
// later /v1/video/create and /v1/status routes and response shapes.

func (s *sim) samsarGate(op string) providersim.Gate {
	return providersim.Gate{
		Provider: Name,
		Op:       op,
		Auth: func(r *http.Request) (string, bool) {
			h := r.Header.Get("Authorization")
			if h == "" {
				return "", false
			}
			return strings.TrimSpace(strings.TrimPrefix(h, "Bearer ")), true
		},
		Deny: func(w http.ResponseWriter, present bool) {
			if !present {
				providersim.WriteJSON(w, http.StatusBadRequest, map[string]string{"message": "API key is missing or empty."})
				return
			}
			providersim.WriteJSON(w, http.StatusUnauthorized, map[string]string{"message": "Invalid API key."})
		},
		Limited: func(w http.ResponseWriter, ra time.Duration) {
			w.Header().Set("Retry-After", strconv.Itoa(int(ra.Round(time.Second)/time.Second)))
			providersim.WriteJSON(w, http.StatusTooManyRequests, map[string]string{"message": "Too many requests."})
		},
		Fault: func(w http.ResponseWriter, status int) {
			providersim.WriteJSON(w, status, map[string]string{"message": "Internal server error while processing the request."})
		},
	}
}

// sim is samsar's simulated API on the simulator's core.
type sim struct{ *providersim.Server }

// simRoutes registers samsar's simulated API (Spec.Sim).
func simRoutes(srv *providersim.Server, mux *http.ServeMux) {
	s := &sim{srv}
	mux.HandleFunc("POST /v1/video/create_movie", s.samsarCreate(false))
	mux.HandleFunc("POST /v1/video/create", s.samsarCreate(true))
	mux.HandleFunc("GET /v1/video/status", s.samsarStatus)
	mux.HandleFunc("GET /v1/status", s.samsarStatus)
	mux.HandleFunc("GET /v1/credits", s.samsarCredits)
}

type samsarInput struct {
	Prompt      string   `json:"prompt"`
	AspectRatio string   `json:"aspect_ratio"`
	ImageModel  string   `json:"image_model"`
	VideoModel  string   `json:"video_model"`
	Duration    *float64 `json:"duration"`
}

func (s *sim) samsarCreate(legacyCreate bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.Enter(s.samsarGate("submit"), w, r)
		if !ok {
			return
		}
		var body struct {
			Input      samsarInput `json:"input"`
			WebhookURL string      `json:"webhookUrl"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			c.Count("submit", 400)
			providersim.WriteJSON(w, http.StatusBadRequest, map[string]string{"message": "Invalid JSON body."})
			return
		}
		in := body.Input
		if msg := samsarValidate(in); msg != "" {
			c.Count("submit", 400)
			providersim.WriteJSON(w, http.StatusBadRequest, map[string]string{"message": msg})
			return
		}
		if c.Unavailable(w, in.Prompt) {
			return
		}
		if c.Forbidden(in.Prompt) {
			providersim.WriteJSON(w, http.StatusForbidden, map[string]string{"message": "Forbidden: your plan does not allow this request."})
			return
		}
		cost := *in.Duration * 10
		t, ok := c.NewTask("submit", in.Prompt, r.Header.Get("Idempotency-Key"), cost, nil)
		if !ok {
			if legacyCreate {
				// The current server keeps the 402 status on /create but
				// replaces the body with a generic message.
				providersim.WriteJSON(w, http.StatusPaymentRequired, map[string]string{"message": "Internal server error while creating video."})
				return
			}
			providersim.WriteJSON(w, http.StatusPaymentRequired, map[string]string{"message": fmt.Sprintf(
				"Insufficient credits or no credits remaining. Estimated required credits: %g. Please call /v1/credits/recharge.", cost)})
			return
		}
		c.SetDuration(t, time.Duration(*in.Duration*float64(time.Second)))
		if hook := body.WebhookURL; hook != "" {
			// The notes' guess at Samsar's callback (unsigned): the
			// status JSON with the request id.
			c.CallBack(t, func(ctx context.Context, v providersim.TaskView) {
				status := "COMPLETED"
				if v.Fail {
					status = "FAILED"
				}
				b, _ := json.Marshal(map[string]string{"request_id": v.Task.ID, "status": status})
				c.Post(ctx, hook, nil, b)
			})
		}
		if !c.HoldCreate(r) {
			return
		}
		w.Header().Set("x-credits-charged", strconv.FormatFloat(cost, 'f', -1, 64))
		if c.MissingID() {
			providersim.WriteJSON(w, http.StatusOK, map[string]string{"requestId": t.ID})
			return
		}
		if legacyCreate {
			providersim.WriteJSON(w, http.StatusOK, map[string]string{"request_id": t.ID, "session_id": t.ID})
			return
		}
		providersim.WriteJSON(w, http.StatusOK, map[string]string{"request_id": t.ID})
	}
}

func samsarValidate(in samsarInput) string {
	switch {
	case strings.TrimSpace(in.Prompt) == "":
		return "prompt is required."
	case utf8.RuneCountInString(in.Prompt) > 500:
		return "prompt cannot exceed 500 characters."
	case !slices.Contains(input.DefaultImageModels, in.ImageModel):
		return "Invalid image_model. Must be an express model."
	case !slices.Contains(input.DefaultVideoModels, in.VideoModel):
		return "Invalid video_model."
	case in.Duration == nil:
		return "duration is required."
	case *in.Duration > 120 || *in.Duration <= 0:
		return "duration must be a number not exceeding 120."
	case in.AspectRatio != "" && in.AspectRatio != "16:9" && in.AspectRatio != "9:16":
		return "Invalid aspect_ratio."
	}
	return ""
}

var samsarStages = []string{"prompt_generation", "image_generation", "audio_generation", "video_generation", "lip_sync_generation"}

func (s *sim) samsarStatus(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.samsarGate("poll"), w, r)
	if !ok {
		return
	}
	id := r.URL.Query().Get("request_id")
	if id == "" {
		id = r.URL.Query().Get("session_id")
	}
	if id == "" {
		c.Count("poll", 400)
		providersim.WriteJSON(w, http.StatusBadRequest, map[string]string{"message": "request_id query parameter is missing."})
		return
	}
	v, ok := c.Lookup("poll", id)
	if !ok {
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"message": "Request not found."})
		return
	}
	switch {
	case v.Done && v.Fail:
		status := "FAILED"
		if c.Cancelled(v.Task) {
			status = "CANCELLED"
		}
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"request_id": id, "status": status, "message": c.FailMessage("Video generation failed at video_generation stage.")})
	case v.Done:
		url := c.OutputURL(r, v.Task, "video.mp4")
		// Answer in the three documented shapes in turn.
		var body map[string]any
		switch n, _ := strconv.Atoi(strings.Split(id, "-")[1]); n % 3 {
		case 0: // seed: result.url
			body = map[string]any{"status": "COMPLETED", "details": []string{}, "result": map[string]string{"status": "COMPLETED", "url": url}}
		case 1: // June 2025 docs: top-level url
			body = map[string]any{"status": "COMPLETED", "url": url}
		default: // current server
			body = map[string]any{"session_id": id, "request_id": id, "status": "COMPLETED", "type": "video",
				"result_url": url, "result_urls": []string{url}, "remoteURL": url, "creditsCharged": v.Task.Cost}
		}
		providersim.WriteJSON(w, http.StatusOK, body)
	default:
		details := map[string]string{}
		done := int(v.Progress) * len(samsarStages) / 100
		for i, st := range samsarStages {
			switch {
			case i < done:
				details[st] = "COMPLETED"
			case i == done:
				details[st] = "PENDING"
			default:
				details[st] = "INIT"
			}
		}
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "PENDING", "details": details})
	}
}

func (s *sim) samsarCredits(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.samsarGate("credits"), w, r)
	if !ok {
		return
	}
	if c.BalanceFault(w, func(st int) any { return map[string]string{"message": http.StatusText(st)} }) {
		return
	}
	c.Count("credits", 200)
	remaining := 5000.0
	if cr := c.Knobs().Credits; cr != nil {
		remaining = *cr
	}
	w.Header().Set("x-credits-remaining", strconv.FormatFloat(remaining, 'f', -1, 64))
	providersim.WriteJSON(w, http.StatusOK, map[string]any{"remainingCredits": remaining, "lastTopUp": nil})
}
