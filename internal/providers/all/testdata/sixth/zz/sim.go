package zz

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/providers/zz/input"
	"github.com/reelq/reelq/internal/providersim"
)

// simRoutes is zz's API on the simulator's core.
func simRoutes(s *providersim.Server, mux *http.ServeMux) {
	gate := func(op string) providersim.Gate {
		return providersim.Gate{Provider: Name, Op: op,
			Auth: func(r *http.Request) (string, bool) {
				h := r.Header.Get("Authorization")
				return strings.TrimPrefix(h, "Bearer "), h != ""
			},
			Deny: func(w http.ResponseWriter, _ bool) {
				providersim.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid key"})
			},
			Limited: func(w http.ResponseWriter, ra time.Duration) {
				w.Header().Set("Retry-After", strconv.Itoa(max(1, int(ra/time.Second))))
				providersim.WriteJSON(w, http.StatusTooManyRequests, map[string]string{"error": "slow down"})
			},
			Fault: func(w http.ResponseWriter, status int) {
				providersim.WriteJSON(w, status, map[string]string{"error": "try again"})
			}}
	}
	mux.HandleFunc("POST /zz/clips", func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.Enter(gate("submit"), w, r)
		if !ok {
			return
		}
		var in input.Input
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Seconds < 1 {
			c.Count("submit", 400)
			providersim.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "bad clip"})
			return
		}
		if c.Unavailable(w, in.Prompt) {
			return
		}
		if c.Forbidden(in.Prompt) {
			providersim.WriteJSON(w, http.StatusForbidden, map[string]string{"error": "this prompt is not allowed"})
			return
		}
		t, ok := c.NewTask("submit", in.Prompt, r.Header.Get("Idempotency-Key"), float64(in.Seconds)*2, nil)
		if !ok {
			providersim.WriteJSON(w, http.StatusPaymentRequired, map[string]string{"error": "no credits"})
			return
		}
		if !c.HoldCreate(r) {
			return
		}
		if c.MissingID() {
			providersim.WriteJSON(w, http.StatusOK, map[string]string{"clip": t.ID})
			return
		}
		providersim.WriteJSON(w, http.StatusOK, map[string]string{"id": t.ID})
	})
	mux.HandleFunc("GET /zz/clips/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.Enter(gate("poll"), w, r)
		if !ok {
			return
		}
		v, ok := c.Lookup("poll", r.PathValue("id"))
		switch {
		case !ok:
			providersim.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "no such clip"})
		case v.Done && v.Fail:
			providersim.WriteJSON(w, http.StatusOK, map[string]string{"status": "failed"})
		case v.Done:
			providersim.WriteJSON(w, http.StatusOK, map[string]string{"status": "done", "url": c.OutputURL(r, v.Task, "clip.mp4")})
		default:
			providersim.WriteJSON(w, http.StatusOK, map[string]string{"status": "running"})
		}
	})
}
