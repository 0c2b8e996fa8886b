package webhook

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

var base64Std = base64.StdEncoding

// fal.ai's webhook headers.
const (
	FalHeaderRequestID = "X-Fal-Webhook-Request-Id"
	FalHeaderUserID    = "X-Fal-Webhook-User-Id"
	FalHeaderTimestamp = "X-Fal-Webhook-Timestamp"
	FalHeaderSignature = "X-Fal-Webhook-Signature"
)

// FalJWKSURL is where fal.ai publishes its webhook keys.
const FalJWKSURL = "https://rest.alpha.fal.ai/.well-known/jwks.json"

// FalKeysMaxAge is how long fetched keys are used before they are fetched
// again (fal's guidance: at most 24 hours).
const FalKeysMaxAge = 24 * time.Hour

// falRefetchAfter is how old the keys must be before a signature that
// none of them verifies makes the verifier fetch them again (a key
// rotated since): at most one fetch per interval, so forged requests
// cannot make it hammer the JWKS URL.
const falRefetchAfter = 5 * time.Minute

// maxJWKSBytes bounds the key set read.
const maxJWKSBytes = 64 << 10

// Fal verifies fal.ai webhooks: an ED25519 signature (hex, in
// X-Fal-Webhook-Signature) over request id, user id and timestamp and the
// hex SHA-256 of the raw body, joined by newlines, made with any key of
// the JWKS at JWKSURL. Keys are cached for FalKeysMaxAge. Safe for
// concurrent use.
type Fal struct {
	// JWKSURL defaults to FalJWKSURL.
	JWKSURL string
	// Client fetches the keys (default: a client with a 10 s timeout).
	Client *http.Client

	mu      sync.Mutex
	keys    []ed25519.PublicKey
	fetched time.Time
}

// Verify checks a fal webhook received at now. It refuses missing
// headers and a timestamp more than Tolerance (300 s) from now before
// fetching any key.
func (f *Fal) Verify(ctx context.Context, h http.Header, body []byte, now time.Time) error {
	reqID, userID, ts, sigHex := h.Get(FalHeaderRequestID), h.Get(FalHeaderUserID), h.Get(FalHeaderTimestamp), h.Get(FalHeaderSignature)
	if reqID == "" || userID == "" || ts == "" || sigHex == "" {
		return ErrMissingHeaders
	}
	if err := checkTimestamp(ts, now); err != nil {
		return err
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: %s is not a hex ED25519 signature", ErrBadSignature, FalHeaderSignature)
	}
	msg := FalMessage(reqID, userID, ts, body)
	keys, fetched, err := f.keySet(ctx, now, false)
	if err != nil {
		return err
	}
	if verifyAny(keys, msg, sig) {
		return nil
	}
	if now.Sub(fetched) < falRefetchAfter {
		return ErrBadSignature
	}
	if keys, _, err = f.keySet(ctx, now, true); err != nil {
		return err
	}
	if verifyAny(keys, msg, sig) {
		return nil
	}
	return ErrBadSignature
}

// FalMessage is what fal signs: request id, user id, timestamp and the
// hex SHA-256 of the raw body, each followed by a newline but the last.
func FalMessage(requestID, userID, timestamp string, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte(requestID + "\n" + userID + "\n" + timestamp + "\n" + hex.EncodeToString(sum[:]))
}

func verifyAny(keys []ed25519.PublicKey, msg, sig []byte) bool {
	for _, k := range keys {
		if ed25519.Verify(k, msg, sig) {
			return true
		}
	}
	return false
}

// keySet returns the cached keys, fetching them when there are none,
// they are older than FalKeysMaxAge, or refresh is set.
func (f *Fal) keySet(ctx context.Context, now time.Time, refresh bool) ([]ed25519.PublicKey, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !refresh && len(f.keys) > 0 && now.Sub(f.fetched) < FalKeysMaxAge {
		return f.keys, f.fetched, nil
	}
	keys, err := f.fetch(ctx)
	if err != nil {
		if len(f.keys) > 0 && now.Sub(f.fetched) < FalKeysMaxAge {
			return f.keys, f.fetched, nil // a failed refresh keeps keys still in date
		}
		return nil, time.Time{}, err
	}
	f.keys, f.fetched = keys, now
	return keys, now, nil
}

func (f *Fal) fetch(ctx context.Context) ([]ed25519.PublicKey, error) {
	u, c := f.JWKSURL, f.Client
	if u == "" {
		u = FalJWKSURL
	}
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeys, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeys, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: GET %s: status %d", ErrKeys, u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %v", ErrKeys, u, err)
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("%w: GET %s: more than %d bytes", ErrKeys, u, maxJWKSBytes)
	}
	keys, err := ParseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeys, u, err)
	}
	return keys, nil
}

// ParseJWKS reads the ED25519 public keys of a JSON Web Key Set: each
// key's "x" is the base64url (unpadded) 32-byte key. Keys of other types
// are skipped; a set without any ED25519 key is an error.
func ParseJWKS(b []byte) ([]ed25519.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Crv string `json:"crv"`
			X   string `json:"x"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	var out []ed25519.PublicKey
	for i, k := range set.Keys {
		if (k.Kty != "" && k.Kty != "OKP") || (k.Crv != "" && k.Crv != "Ed25519") {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.X, "="))
		if err != nil {
			return nil, fmt.Errorf("key %d: x is not base64url", i)
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key %d: x is %d bytes, want %d", i, len(x), ed25519.PublicKeySize)
		}
		out = append(out, ed25519.PublicKey(x))
	}
	if len(out) == 0 {
		return nil, errors.New("key set: no Ed25519 key")
	}
	return out, nil
}
