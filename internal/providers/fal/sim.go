package fal

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/providers/fal/input"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/webhook"
)

// fal's queue API as its documents describe it (queue, request errors,
// model errors, media expiration) and as users quoted its answers (the
// 401 and the 403 of a locked account). Served under /fal, the base URL
// an adapter pointed at the simulator uses.

func (s *sim) gate(op string) providersim.Gate {
	return providersim.Gate{
		Provider: Name,
		Op:       op,
		Auth: func(r *http.Request) (string, bool) {
			h := r.Header.Get("Authorization")
			if h == "" {
				return "", false
			}
			return strings.TrimSpace(strings.TrimPrefix(h, "Key ")), true
		},
		Deny: func(w http.ResponseWriter, present bool) {
			if !present {
				providersim.WriteJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Invalid Key Authorization header format. Expected '<key_id>:<key_secret>'."})
				return
			}
			providersim.WriteJSON(w, http.StatusUnauthorized, map[string]string{"detail": "No user found for Key ID and Secret"})
		},
		Limited: func(w http.ResponseWriter, ra time.Duration) {
			w.Header().Set("Retry-After", strconv.Itoa(int(ra.Round(time.Second)/time.Second)))
			providersim.WriteJSON(w, http.StatusTooManyRequests, map[string]string{"detail": "Too many requests", "error_type": "rate_limited"})
		},
		Fault: func(w http.ResponseWriter, status int) {
			w.Header().Set("X-Fal-Error-Type", "runner_server_error")
			providersim.WriteJSON(w, status, map[string]string{"detail": "Internal server error", "error_type": "runner_server_error"})
		},
	}
}

// sim is fal's simulated API on the simulator's core, with the key it
// signs webhooks with (its public half at /fal/.well-known/jwks.json).
type sim struct {
	*providersim.Server
	key ed25519.PrivateKey
}

// falTask is what a simulated request keeps: its lifecycle header.
type falTask struct{ lifecycle string }

// simRoutes registers fal's simulated API (Spec.Sim).
func simRoutes(srv *providersim.Server, mux *http.ServeMux) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s := &sim{Server: srv, key: key}
	mux.HandleFunc("GET /fal/.well-known/jwks.json", s.jwks)
	mux.HandleFunc("POST /fal/{model...}", s.submit)
	mux.HandleFunc("GET /fal/{owner}/{app}/requests/{id}/status", s.status)
	mux.HandleFunc("GET /fal/{owner}/{app}/requests/{id}", s.response)
	mux.HandleFunc("PUT /fal/{owner}/{app}/requests/{id}/cancel", s.cancel)
	mux.HandleFunc("GET /fal/{rest...}", s.notFound)
}

func (s *sim) submit(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.gate("submit"), w, r)
	if !ok {
		return
	}
	model := r.PathValue("model")
	cat, _ := input.Options{}.Catalog()
	if !cat.Known(model) {
		c.Count("submit", 404)
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Application '" + model + "' not found"})
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if probs := cat.Check(model, body, "body"); len(probs) > 0 {
		c.Count("submit", 422)
		items := make([]map[string]any, len(probs))
		for i, p := range probs {
			loc, msg, _ := strings.Cut(p, ": ")
			items[i] = map[string]any{"loc": strings.Split(loc, "."), "msg": msg, "type": "value_error"}
		}
		providersim.WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": items})
		return
	}
	var in map[string]any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	_ = dec.Decode(&in)
	prompt, _ := in["prompt"].(string)
	if c.Unavailable(w, prompt) {
		return
	}
	if c.Forbidden(prompt) {
		providersim.WriteJSON(w, http.StatusForbidden, map[string]string{"detail": "Forbidden: this model is not available on your plan"})
		return
	}
	cost := cat.Estimate(model, in)
	t, ok := c.NewTask("submit", prompt, "", max(cost.Amount, 0.01), &falTask{lifecycle: r.Header.Get("X-Fal-Object-Lifecycle-Preference")})
	if !ok {
		providersim.WriteJSON(w, http.StatusForbidden, map[string]string{"detail": "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."})
		return
	}
	if secs, err := strconv.ParseFloat(strings.TrimSuffix(text(in["duration"]), "s"), 64); err == nil {
		c.SetDuration(t, time.Duration(secs*float64(time.Second)))
	}
	if hook := r.URL.Query().Get("fal_webhook"); hook != "" {
		c.CallBack(t, func(ctx context.Context, v providersim.TaskView) { s.callBack(ctx, c, hook, providersim.BaseURL(r), v) })
	}
	if !c.HoldCreate(r) {
		return
	}
	if c.MissingID() {
		providersim.WriteJSON(w, http.StatusOK, map[string]string{"status": "IN_QUEUE", "requestId": t.ID})
		return
	}
	base := providersim.BaseURL(r) + "/fal/" + input.App(model) + "/requests/" + t.ID
	providersim.WriteJSON(w, http.StatusOK, map[string]any{
		"status": "IN_QUEUE", "request_id": t.ID, "gateway_request_id": t.ID, "queue_position": 0,
		"response_url": base, "status_url": base + "/status", "cancel_url": base + "/cancel",
	})
}

func (s *sim) status(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.gate("poll"), w, r)
	if !ok {
		return
	}
	v, ok := c.Peek(r.PathValue("id"))
	switch {
	case !ok:
		c.Count("poll", 404)
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Request not found"})
	case v.Task.DoneAt.After(c.Now()) && !c.Cancelled(v.Task):
		c.Count("poll", 202)
		if v.Progress < 10 {
			providersim.WriteJSON(w, http.StatusAccepted, map[string]any{"status": "IN_QUEUE", "queue_position": 0, "response_url": r.URL.Path})
			return
		}
		providersim.WriteJSON(w, http.StatusAccepted, map[string]any{"status": "IN_PROGRESS", "logs": []any{}})
	default:
		c.Count("poll", 200)
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"status": "COMPLETED", "logs": []any{},
			"metrics": map[string]float64{"inference_time": v.Elapsed.Seconds()}})
	}
}

func (s *sim) response(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.gate("result"), w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	v, ok := c.Peek(id)
	switch {
	case !ok:
		c.Count("result", 404)
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Request not found"})
		return
	case v.Task.DoneAt.After(c.Now()) && !c.Cancelled(v.Task):
		c.Count("result", 400)
		providersim.WriteJSON(w, http.StatusBadRequest, map[string]string{"detail": "Request is still in progress"})
		return
	}
	v, _ = c.Lookup("result", id) // marks it reported
	switch {
	case c.Cancelled(v.Task):
		providersim.WriteJSON(w, 499, map[string]string{"detail": "Request was cancelled by the client", "error_type": "client_cancelled"})
	case v.Fail:
		providersim.WriteJSON(w, http.StatusInternalServerError, map[string]string{"detail": c.FailMessage("Model inference failed: CUDA out of memory")})
	default:
		u := c.OutputURL(r, v.Task, "output.mp4")
		providersim.WriteJSON(w, http.StatusOK, map[string]any{"video": map[string]any{
			"url": u, "content_type": "video/mp4", "file_name": "output.mp4", "file_size": providersim.ClipSize()}, "seed": 42})
	}
}

func (s *sim) cancel(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.gate("cancel"), w, r)
	if !ok {
		return
	}
	v, ok := c.Peek(r.PathValue("id"))
	switch {
	case !ok:
		c.Count("cancel", 404)
		providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"status": "NOT_FOUND"})
	case !v.Task.DoneAt.After(c.Now()):
		c.Count("cancel", 400)
		providersim.WriteJSON(w, http.StatusBadRequest, map[string]string{"status": "ALREADY_COMPLETED"})
	default:
		c.Cancel(v.Task.ID, false)
		c.Count("cancel", 202)
		providersim.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "CANCELLATION_REQUESTED"})
	}
}

// notFound answers any other path (a bare request id) as fal does.
func (s *sim) notFound(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.gate("poll"), w, r)
	if !ok {
		return
	}
	c.Count("poll", 404)
	providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Not Found"})
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return ""
}

// jwks serves the public key of the webhooks' signatures, as fal's JWKS
// URL does.
func (s *sim) jwks(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(webhook.JWKS(s.key.Public().(ed25519.PublicKey)))
}

// callBack sends fal's webhook for a finished request: the request id,
// status OK with the model's output as payload, or ERROR with the error,
// signed as fal signs (ED25519, X-Fal-Webhook-* headers).
func (s *sim) callBack(ctx context.Context, c *providersim.Call, hook, base string, v providersim.TaskView) {
	body := map[string]any{"request_id": v.Task.ID, "gateway_request_id": v.Task.ID, "status": "OK"}
	if v.Fail {
		body["status"], body["error"] = "ERROR", "Invalid status code: 500"
		body["payload"] = map[string]string{"detail": "Model inference failed"}
	} else {
		body["payload"] = map[string]any{"video": map[string]any{"url": base + "/outputs/" + Name + "/" + v.Task.ID + "/output.mp4",
			"content_type": "video/mp4", "file_name": "output.mp4"}}
	}
	b, _ := json.Marshal(body)
	h := http.Header{}
	webhook.SetFalHeaders(h, s.key, v.Task.ID, "sim-user", time.Now(), b)
	c.Post(ctx, hook, h, b)
}
