// Package webhook signs and verifies webhooks.
//
// Standard Webhooks (https://www.standardwebhooks.com, the Svix scheme,
// which Replicate uses too): the headers webhook-id, webhook-timestamp
// (Unix seconds) and webhook-signature, a space-separated list of
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" entries, one per secret;
// secrets are "whsec_<base64>". The HMAC itself comes from the reference
// implementation (github.com/standard-webhooks/standard-webhooks/libraries,
// by the scheme's authors: one file, no dependencies); this package adds a
// clock of its own for the replay window (the library reads time.Now),
// several secrets for rotation, and error classes.
//
// fal.ai's scheme (ED25519 over the request id, user id, timestamp and
// the body's SHA-256, keys from a JWKS URL) is verified by [Fal].
package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Tolerance is how far a webhook's timestamp may be from now, either way,
// before it is refused as a replay (or a clock too far off).
const Tolerance = 5 * time.Minute

// Verification errors. ErrMissingHeaders, ErrBadTimestamp, ErrStale and
// ErrBadSignature are answers to the sender (401); ErrKeys means the
// verifier could not get its keys (try again later).
var (
	ErrMissingHeaders = errors.New("webhook: missing signature headers")
	ErrBadTimestamp   = errors.New("webhook: unreadable timestamp")
	ErrStale          = errors.New("webhook: timestamp outside the tolerance (replay?)")
	ErrBadSignature   = errors.New("webhook: no matching signature")
	ErrKeys           = errors.New("webhook: verification keys unavailable")
)

// Secrets signs and verifies Standard Webhooks with one or more secrets.
// Signing adds one signature per secret, so a receiver can move from an
// old secret to a new one while both are configured; verifying accepts a
// signature made with any of them.
type Secrets struct {
	keys []*standardwebhooks.Webhook
}

// NewSecrets parses secrets, each "whsec_<base64>" (the prefix is
// optional, as the scheme allows). It names the secret (by position) that
// is not valid; it never echoes a secret.
func NewSecrets(secrets ...string) (*Secrets, error) {
	if len(secrets) == 0 {
		return nil, errors.New("webhook: no secret")
	}
	s := &Secrets{}
	for i, sec := range secrets {
		k, err := DecodeSecret(sec)
		if err != nil {
			return nil, fmt.Errorf("webhook: secret %d of %d: %w", i+1, len(secrets), err)
		}
		wh, err := standardwebhooks.NewWebhookRaw(k)
		if err != nil {
			return nil, fmt.Errorf("webhook: secret %d of %d: %w", i+1, len(secrets), err)
		}
		s.keys = append(s.keys, wh)
	}
	return s, nil
}

// DecodeSecret returns the key bytes of a "whsec_<base64>" secret.
func DecodeSecret(secret string) ([]byte, error) {
	b64 := strings.TrimPrefix(strings.TrimSpace(secret), "whsec_")
	if b64 == "" {
		return nil, errors.New("empty")
	}
	k, err := base64Std.DecodeString(b64)
	if err != nil {
		return nil, errors.New("not whsec_ followed by standard base64")
	}
	return k, nil
}

// Sign returns the webhook-signature value for id, ts and body: one
// "v1,<base64>" entry per secret, space-separated.
func (s *Secrets) Sign(id string, ts time.Time, body []byte) string {
	sigs := make([]string, 0, len(s.keys))
	for _, k := range s.keys {
		sig, _ := k.Sign(id, ts, body) // the library's Sign cannot fail
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " ")
}

// SetHeaders sets the three Standard Webhooks headers on h.
func (s *Secrets) SetHeaders(h http.Header, id string, ts time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, s.Sign(id, ts, body))
}

// Verify checks h's signature of body at time now: the headers are
// present, the timestamp is within Tolerance of now, and one of the
// signature's entries was made with one of the secrets (compared in
// constant time). body must be the raw bytes received.
func (s *Secrets) Verify(h http.Header, body []byte, now time.Time) error {
	id, ts, sig := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sig == "" {
		return ErrMissingHeaders
	}
	if err := checkTimestamp(ts, now); err != nil {
		return err
	}
	for _, k := range s.keys {
		if k.VerifyIgnoringTimestamp(body, h) == nil { // the window was checked above, against now
			return nil
		}
	}
	return ErrBadSignature
}

// checkTimestamp refuses a Unix-seconds timestamp more than Tolerance
// away from now.
func checkTimestamp(ts string, now time.Time) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec < 0 || strconv.FormatInt(sec, 10) != ts {
		return ErrBadTimestamp // only the canonical form: the signed text is the header's
	}
	d := now.Sub(time.Unix(sec, 0))
	if d > Tolerance || d < -Tolerance {
		return fmt.Errorf("%w: %ds from now", ErrStale, int64(d/time.Second))
	}
	return nil
}
