package callback

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/webhook"
)

// Defaults of Handler.
const (
	DefaultMaxBody   = 1 << 20 // a Replicate prediction with its logs fits
	DefaultRate      = 50      // requests per second per source
	DefaultBurst     = 100
	lookupTimeout    = 5 * time.Second
	verifyKeyTimeout = 10 * time.Second
)

// Verify checks a provider's signature of a callback received at now
// (webhook.Fal's Verify, webhook.Secrets' Verify). It returns one of the
// webhook package's errors.
type Verify func(ctx context.Context, h http.Header, body []byte, now time.Time) error

// Provider is what the endpoint knows of a provider with callbacks on.
type Provider struct {
	// Verify checks the provider's signature; nil for a provider that
	// does not sign (Samsar, Vimmerse): the URL's MAC is then all the
	// proof there is.
	Verify Verify
}

// Phase answers where job id is: its provider and phase, or found false
// when there is no state for it.
type Phase func(ctx context.Context, id string) (provider string, phase reelq.Phase, found bool, err error)

// Handler serves POST /hooks/<provider>/<job id>/<MAC> and nothing else.
type Handler struct {
	Minter    *Minter
	Providers map[string]Provider
	Phase     Phase
	// Wake publishes a wake-up for job id at provider.
	Wake func(provider, id string) error
	// MaxBody bounds a callback's body (default DefaultMaxBody).
	MaxBody int64
	// Rate and Burst bound each source's requests (default DefaultRate,
	// DefaultBurst).
	Rate  float64
	Burst int
	Now   func() time.Time
	Log   *slog.Logger

	limits *sourceLimits
}

// Init fills the defaults; call it once before serving.
func (h *Handler) Init() *Handler {
	if h.MaxBody <= 0 {
		h.MaxBody = DefaultMaxBody
	}
	if h.Rate <= 0 {
		h.Rate = DefaultRate
	}
	if h.Burst <= 0 {
		h.Burst = DefaultBurst
	}
	if h.Now == nil {
		h.Now = time.Now
	}
	if h.Log == nil {
		h.Log = slog.New(slog.DiscardHandler)
	}
	h.limits = newSourceLimits(h.Rate, h.Burst)
	return h
}

// ServeHTTP implements http.Handler. The answers: 202 a wake was
// published; 200 the job is past polling (nothing to wake); 401 a bad
// MAC, signature or timestamp; 404 any other path, a provider without
// callbacks, an unknown job; 405 not a POST; 413 a body over MaxBody;
// 429 the source's rate; 503 the state or the provider's keys could not
// be read (the provider retries).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.Now()
	if !h.limits.allow(r, now) {
		http.Error(w, "too many requests", http.StatusTooManyRequests)
		return
	}
	provider, id, mac, ok := parsePath(r.URL.Path)
	p, on := h.Providers[provider]
	if !ok || !on {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	log := h.Log.With("provider", provider, "job_id", id)
	if !reelq.ValidID(id) || !h.Minter.Valid(provider, id, mac) {
		log.Warn("callback refused: bad MAC", "remote", r.RemoteAddr)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	body, err := readBody(w, r, h.MaxBody)
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if p.Verify != nil {
		vctx, cancel := context.WithTimeout(r.Context(), verifyKeyTimeout)
		err := p.Verify(vctx, r.Header, body, now)
		cancel()
		switch {
		case errors.Is(err, webhook.ErrKeys):
			log.Warn("callback not checked: the provider's keys are unavailable", "err", err)
			http.Error(w, "try again later", http.StatusServiceUnavailable)
			return
		case err != nil:
			log.Warn("callback refused: bad signature", "err", err, "remote", r.RemoteAddr)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	lctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	prov, phase, found, err := h.Phase(lctx, id)
	cancel()
	switch {
	case err != nil:
		log.Warn("callback not handled: job state unavailable", "err", err)
		http.Error(w, "try again later", http.StatusServiceUnavailable)
		return
	case !found || prov != provider:
		http.NotFound(w, r)
		return
	case phase != reelq.PhaseSubmitting && phase != reelq.PhaseSubmitted:
		w.WriteHeader(http.StatusOK) // past polling (or held): nothing to wake
		return
	}
	if err := h.Wake(provider, id); err != nil {
		log.Warn("callback not handled: wake not published", "err", err)
		http.Error(w, "try again later", http.StatusServiceUnavailable)
		return
	}
	log.Debug("callback: job woken")
	w.WriteHeader(http.StatusAccepted)
}

// parsePath reads /hooks/<provider>/<id>/<mac>.
func parsePath(path string) (provider, id, mac string, ok bool) {
	rest, found := strings.CutPrefix(path, "/hooks/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}
