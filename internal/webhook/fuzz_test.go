package webhook

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// Whatever the headers, Verify never panics, and it accepts only when
// the signature list holds the signature of exactly these id, timestamp
// and body within the window.
func FuzzStandardVerify(f *testing.F) {
	f.Add(exID, "1614265330", exSig, []byte(exBody))
	f.Add(exID, "1614265330", "v1,Zm9v "+exSig, []byte(exBody))
	f.Add("", "", "", []byte{})
	f.Add(exID, "-1", "v1,", []byte(exBody))
	f.Add(exID, "99999999999999999999", "v1,,,  v1", []byte(exBody))
	s, err := NewSecrets(exSecret)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(exTS, 0)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		if s.Verify(h, body, now) != nil {
			return
		}
		// http.Header.Set keeps the value as given; Get returns it.
		if checkTimestamp(ts, now) != nil {
			t.Fatalf("accepted a timestamp outside the window: %q", ts)
		}
		want := s.Sign(id, parseUnix(t, ts), body)
		if !slices.Contains(strings.Split(sig, " "), want) {
			t.Fatalf("accepted %q for id %q ts %q body %q; the signature is %q", sig, id, ts, body, want)
		}
	})
}

func parseUnix(t *testing.T, s string) time.Time {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("accepted timestamp %q", s)
		}
		n = n*10 + int64(c-'0')
	}
	return time.Unix(n, 0)
}

// Whatever the headers, the fal verifier never panics, and it accepts
// only a signature the key made over exactly this message.
func FuzzFalVerify(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	now := time.Unix(1750000000, 0)
	body := []byte(`{"request_id":"r","status":"OK"}`)
	good := falHeaders(priv, "r", "u", now, body)
	f.Add("r", "u", "1750000000", good.Get(FalHeaderSignature), body)
	f.Add("r", "u", "1750000000", strings.Repeat("0", 128), body)
	f.Add("", "", "", "", []byte{})
	f.Add("r\n", "u", "1750000000", "zz", body)
	v := &Fal{keys: []ed25519.PublicKey{pub}, fetched: now}
	f.Fuzz(func(t *testing.T, reqID, userID, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(FalHeaderRequestID, reqID)
		h.Set(FalHeaderUserID, userID)
		h.Set(FalHeaderTimestamp, ts)
		h.Set(FalHeaderSignature, sig)
		if v.Verify(context.Background(), h, body, now) != nil {
			return
		}
		raw, err := hex.DecodeString(sig)
		if err != nil || !ed25519.Verify(pub, FalMessage(reqID, userID, ts, body), raw) {
			t.Fatalf("accepted a signature the key did not make: %q %q %q %q", reqID, userID, ts, sig)
		}
	})
}

// ParseJWKS never panics and returns only 32-byte keys.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA"},{"x":"AAAA"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseJWKS(b)
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no key")
		}
		for _, k := range keys {
			if len(k) != ed25519.PublicKeySize {
				t.Fatalf("a %d-byte key", len(k))
			}
		}
	})
}
