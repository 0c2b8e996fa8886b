package webhook

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// SetFalHeaders signs body as fal.ai signs a webhook, with priv, and sets
// the four X-Fal-Webhook-* headers on h (for the simulator and tests).
func SetFalHeaders(h http.Header, priv ed25519.PrivateKey, requestID, userID string, ts time.Time, body []byte) {
	t := strconv.FormatInt(ts.Unix(), 10)
	h.Set(FalHeaderRequestID, requestID)
	h.Set(FalHeaderUserID, userID)
	h.Set(FalHeaderTimestamp, t)
	h.Set(FalHeaderSignature, hex.EncodeToString(ed25519.Sign(priv, FalMessage(requestID, userID, t, body))))
}

// JWKS is the JSON Web Key Set of keys, as fal.ai publishes its own.
func JWKS(keys ...ed25519.PublicKey) []byte {
	type key struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
	}
	set := struct {
		Keys []key `json:"keys"`
	}{Keys: []key{}}
	for i, k := range keys {
		set.Keys = append(set.Keys, key{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k), Kid: "k" + strconv.Itoa(i)})
	}
	b, _ := json.Marshal(set)
	return b
}
