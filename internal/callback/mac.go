// Package callback is reelq's inbound endpoint for provider callbacks.
//
// A callback is only a wake-up: it never changes a job. Each job's
// callback URL is a capability only reelq can mint,
// <base>/hooks/<provider>/<job id>/<MAC>, the MAC an HMAC-SHA256 of the
// provider and the job id under a secret of the worker's. The endpoint
// refuses a bad MAC, a bad provider signature (fal, Replicate) or a
// stale timestamp (401), an unknown job (404), and otherwise publishes a
// wake on the job's wake subject; the replica holding the job polls it
// at once, and that poll (rate-limited and validated as every poll)
// decides. docs/webhooks.md ("Inbound callbacks") and SECURITY.md say
// how it is exposed.
package callback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// MinSecretBytes is the shortest callback secret accepted.
const MinSecretBytes = 32

// Minter mints and checks the jobs' callback URLs.
type Minter struct {
	base string
	key  []byte
}

// NewMinter returns a Minter for URLs under base (an http(s) URL without
// query or fragment, e.g. https://hooks.example.com/reelq) keyed with
// secret. It never echoes the secret.
func NewMinter(base, secret string) (*Minter, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("secret: %d bytes; at least %d", len(secret), MinSecretBytes)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("base URL: must be an http(s) URL without user, query or fragment")
	}
	return &Minter{base: strings.TrimRight(base, "/"), key: []byte(secret)}, nil
}

// URL is the callback URL of job id at provider.
func (m *Minter) URL(provider, id string) string {
	return m.base + "/hooks/" + provider + "/" + id + "/" + m.mac(provider, id)
}

// Valid reports whether mac is the MAC of provider and id (in constant
// time).
func (m *Minter) Valid(provider, id, mac string) bool {
	return hmac.Equal([]byte(mac), []byte(m.mac(provider, id)))
}

func (m *Minter) mac(provider, id string) string {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte(provider + "/" + id)) // neither may hold a '/'
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
