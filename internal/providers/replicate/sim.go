package replicate

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/providers/replicate/input"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/webhook"
)

// Replicate's predictions API as its HTTP reference and clients describe
// it, with the problem bodies users quoted (401, 402, 422). Served under
// /replicate/v1, the base URL an adapter pointed at the simulator uses.

const simBase = "/replicate/v1"

func problem(title, detail string, status int) map[string]any {
	return map[string]any{"title": title, "detail": detail, "status": status}
}

func (s *sim) gate(op string) providersim.Gate {
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
		Deny: func(w http.ResponseWriter, _ bool) {
			providersim.WriteJSON(w, http.StatusUnauthorized, problem("Unauthenticated", "You did not pass a valid authentication token", 401))
		},
		Limited: func(w http.ResponseWriter, ra time.Duration) {
			secs := int(ra.Round(time.Second) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			providersim.WriteJSON(w, http.StatusTooManyRequests, map[string]string{"detail": "Request was throttled. Your rate limit resets in ~" + strconv.Itoa(secs) + "s."})
		},
		Fault: func(w http.ResponseWriter, status int) {
			providersim.WriteJSON(w, status, problem("Internal Server Error", "An unexpected error occurred.", status))
		},
	}
}

// sim is Replicate's simulated API on the simulator's core, with the
// account's webhook secret (GET /v1/webhooks/default/secret).
type sim struct {
	*providersim.Server
	secret  string
	signers *webhook.Secrets
}

// simRoutes registers Replicate's simulated API (Spec.Sim).
func simRoutes(srv *providersim.Server, mux *http.ServeMux) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	s := &sim{Server: srv, secret: "whsec_" + base64.StdEncoding.EncodeToString(key)}
	s.signers, _ = webhook.NewSecrets(s.secret)
	mux.HandleFunc("GET "+simBase+"/webhooks/default/secret", s.webhookSecret)
	mux.HandleFunc("POST "+simBase+"/models/{owner}/{name}/predictions", s.create)
	mux.HandleFunc("POST "+simBase+"/predictions", s.create)
	mux.HandleFunc("GET "+simBase+"/predictions/{id}", s.get)
	mux.HandleFunc("POST "+simBase+"/predictions/{id}/cancel", s.cancel)
}

func (s *sim) create(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.gate("submit"), w, r)
	if !ok {
		return
	}
	var body struct {
		Version string          `json:"version"`
		Input   json.RawMessage `json:"input"`
		Webhook string          `json:"webhook"`
		Filter  []string        `json:"webhook_events_filter"`
	}
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err := json.Unmarshal(raw, &body); err != nil {
		c.Count("submit", 400)
		providersim.WriteJSON(w, http.StatusBadRequest, problem("Bad Request", "Invalid JSON body.", 400))
		return
	}
	in := input.Input{Version: body.Version}
	if r.PathValue("owner") != "" {
		in.Model = r.PathValue("owner") + "/" + r.PathValue("name")
	}
	cat, _ := input.Options{}.Catalog()
	key := input.Key(in, cat)
	switch {
	case !cat.Known(key) && in.Model != "":
		c.Count("submit", 404)
		providersim.WriteJSON(w, http.StatusNotFound, problem("Not found", "The requested resource could not be found.", 404))
		return
	case !cat.Known(key):
		c.Count("submit", 422)
		providersim.WriteJSON(w, http.StatusUnprocessableEntity, problem("Invalid version or not permitted", "The specified version does not exist (or perhaps you don't have permission to use it?)", 422))
		return
	}
	if probs := cat.Check(key, body.Input, "input"); len(probs) > 0 {
		c.Count("submit", 422)
		fields := make([]map[string]string, len(probs))
		detail := ""
		for i, p := range probs {
			f, d, _ := strings.Cut(p, ": ")
			fields[i] = map[string]string{"type": "invalid", "field": f, "description": d}
			detail += "- " + f + ": " + d + "\n"
		}
		b := problem("Input validation failed", detail, 422)
		b["invalid_fields"] = fields
		providersim.WriteJSON(w, http.StatusUnprocessableEntity, b)
		return
	}
	dec := json.NewDecoder(strings.NewReader(string(body.Input)))
	dec.UseNumber()
	_ = dec.Decode(&in.Input)
	prompt, _ := in.Input["prompt"].(string)
	if c.Unavailable(w, prompt) {
		return
	}
	if c.Forbidden(prompt) {
		providersim.WriteJSON(w, http.StatusForbidden, problem("Forbidden", "You do not have permission to run this model.", 403))
		return
	}
	cost := input.Price(in, input.Options{})
	t, ok := c.NewTask("submit", prompt, "", max(cost.Amount, 0.01), nil)
	if !ok {
		providersim.WriteJSON(w, http.StatusPaymentRequired, problem("Insufficient credit",
			"You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit. Once you purchase credit, please wait a few minutes before trying again.", 402))
		return
	}
	if d, ok := in.Input["duration"].(json.Number); ok {
		if secs, err := d.Float64(); err == nil {
			c.SetDuration(t, time.Duration(secs*float64(time.Second)))
		}
	}
	if body.Webhook != "" && (len(body.Filter) == 0 || slices.Contains(body.Filter, "completed")) {
		c.CallBack(t, func(ctx context.Context, v providersim.TaskView) { s.callBack(ctx, c, body.Webhook, r, key, v) })
	}
	if !c.HoldCreate(r) {
		return
	}
	p := s.prediction(r, t.ID, key, "starting", nil, nil)
	if c.MissingID() {
		p["uuid"] = p["id"]
		delete(p, "id")
	}
	providersim.WriteJSON(w, http.StatusCreated, p)
}

func (s *sim) prediction(r *http.Request, id, model, status string, output, errMsg any) map[string]any {
	get := providersim.BaseURL(r) + simBase + "/predictions/" + id
	return map[string]any{"id": id, "model": model, "version": "hidden", "status": status, "output": output, "error": errMsg,
		"logs": "", "source": "api", "data_removed": false, "created_at": s.Now().UTC().Format(time.RFC3339Nano),
		"urls": map[string]string{"get": get, "cancel": get + "/cancel", "web": "https://replicate.com/p/" + id}}
}

func (s *sim) get(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.gate("poll"), w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	v, ok := c.Lookup("poll", id)
	if !ok {
		providersim.WriteJSON(w, http.StatusNotFound, problem("Not found", "The requested resource could not be found.", 404))
		return
	}
	switch {
	case v.Done && c.Cancelled(v.Task):
		providersim.WriteJSON(w, http.StatusOK, s.prediction(r, id, "", "canceled", nil, nil))
	case v.Done && v.Fail:
		providersim.WriteJSON(w, http.StatusOK, s.prediction(r, id, "", "failed", nil, c.FailMessage("CUDA out of memory. Tried to allocate 2.00 GiB")))
	case v.Done:
		providersim.WriteJSON(w, http.StatusOK, s.prediction(r, id, "", "succeeded", c.OutputURL(r, v.Task, "output.mp4"), nil))
	case v.Progress < 10:
		providersim.WriteJSON(w, http.StatusOK, s.prediction(r, id, "", "starting", nil, nil))
	default:
		providersim.WriteJSON(w, http.StatusOK, s.prediction(r, id, "", "processing", nil, nil))
	}
}

func (s *sim) cancel(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.gate("cancel"), w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	v, ok := c.Peek(id)
	switch {
	case !ok:
		c.Count("cancel", 404)
		providersim.WriteJSON(w, http.StatusNotFound, problem("Not found", "The requested resource could not be found.", 404))
	case !v.Task.DoneAt.After(c.Now()) && !c.Cancelled(v.Task):
		c.Count("cancel", 200) // a finished prediction comes back unchanged
		providersim.WriteJSON(w, http.StatusOK, s.prediction(r, id, "", "succeeded", nil, nil))
	default:
		c.Cancel(id, false)
		c.Count("cancel", 200)
		providersim.WriteJSON(w, http.StatusOK, s.prediction(r, id, "", "canceled", nil, nil))
	}
}

// webhookSecret answers the account's webhook signing secret.
func (s *sim) webhookSecret(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Enter(s.gate("secret"), w, r)
	if !ok {
		return
	}
	c.Count("secret", 200)
	providersim.WriteJSON(w, http.StatusOK, map[string]string{"key": s.secret})
}

// callBack sends Replicate's "completed" webhook: the prediction as GET
// returns it, signed as Replicate signs (Standard Webhooks, the same
// webhook-id on every attempt).
func (s *sim) callBack(ctx context.Context, c *providersim.Call, hook string, r *http.Request, model string, v providersim.TaskView) {
	var p map[string]any
	switch {
	case v.Fail:
		p = s.prediction(r, v.Task.ID, model, "failed", nil, "CUDA out of memory")
	default:
		p = s.prediction(r, v.Task.ID, model, "succeeded", c.OutputURL(r, v.Task, "output.mp4"), nil)
	}
	b, _ := json.Marshal(p)
	h := http.Header{}
	s.signers.SetHeaders(h, "msg_"+v.Task.ID, time.Now(), b)
	c.Post(ctx, hook, h, b)
}
