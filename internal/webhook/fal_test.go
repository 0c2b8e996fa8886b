package webhook

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jwks serves a key set on loopback and counts its fetches.
type jwks struct {
	mu      sync.Mutex
	keys    []ed25519.PublicKey
	fetches atomic.Int32
	srv     *httptest.Server
}

func newJWKS(t *testing.T, keys ...ed25519.PublicKey) *jwks {
	j := &jwks{keys: keys}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		defer j.mu.Unlock()
		fmt.Fprint(w, `{"keys":[`)
		for i, k := range j.keys {
			if i > 0 {
				fmt.Fprint(w, ",")
			}
			fmt.Fprintf(w, `{"kty":"OKP","crv":"Ed25519","x":%q,"kid":"k%d"}`, base64.RawURLEncoding.EncodeToString(k), i)
		}
		fmt.Fprint(w, `]}`)
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwks) set(keys ...ed25519.PublicKey) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.keys = keys
}

func falHeaders(priv ed25519.PrivateKey, reqID, userID string, ts time.Time, body []byte) http.Header {
	t := strconv.FormatInt(ts.Unix(), 10)
	h := http.Header{}
	h.Set(FalHeaderRequestID, reqID)
	h.Set(FalHeaderUserID, userID)
	h.Set(FalHeaderTimestamp, t)
	h.Set(FalHeaderSignature, hex.EncodeToString(ed25519.Sign(priv, FalMessage(reqID, userID, t, body))))
	return h
}

func TestFalVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	j := newJWKS(t, otherPub, pub)
	f := &Fal{JWKSURL: j.srv.URL, Client: j.srv.Client()}
	ctx := context.Background()
	now := time.Now()
	body := []byte(`{"request_id":"r-1","status":"OK","payload":{"video":{"url":"https://x/v.mp4"}}}`)
	h := falHeaders(priv, "r-1", "u-1", now, body)

	if err := f.Verify(ctx, h, body, now); err != nil {
		t.Fatalf("valid: %v", err)
	}
	if err := f.Verify(ctx, falHeaders(otherPriv, "r-1", "u-1", now, body), body, now); err != nil {
		t.Fatalf("valid with the set's other key: %v", err)
	}
	for _, tc := range []struct {
		name string
		h    func() http.Header
		body []byte
		now  time.Time
		want error
	}{
		{"body changed", func() http.Header { return h }, []byte(`{"status":"ERROR"}`), now, ErrBadSignature},
		{"request id changed", func() http.Header { c := h.Clone(); c.Set(FalHeaderRequestID, "r-2"); return c }, body, now, ErrBadSignature},
		{"replayed 301 s later", func() http.Header { return h }, body, now.Add(301 * time.Second), ErrStale},
		{"301 s early", func() http.Header { return h }, body, now.Add(-301 * time.Second), ErrStale},
		{"no user id", func() http.Header { c := h.Clone(); c.Del(FalHeaderUserID); return c }, body, now, ErrMissingHeaders},
		{"no signature", func() http.Header { c := h.Clone(); c.Del(FalHeaderSignature); return c }, body, now, ErrMissingHeaders},
		{"signature not hex", func() http.Header { c := h.Clone(); c.Set(FalHeaderSignature, "zz"); return c }, body, now, ErrBadSignature},
	} {
		if err := f.Verify(ctx, tc.h(), tc.body, tc.now); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Every check above used the keys fetched once; a forged signature
	// minutes later does not make it fetch again (the keys are recent)...
	if n := j.fetches.Load(); n != 1 {
		t.Errorf("%d key fetches, want 1 (cached)", n)
	}
	// ... but a rotated key is found once the cached set is older than
	// the refetch interval, and the cache ends after 24 hours.
	newPub, newPriv, _ := ed25519.GenerateKey(rand.Reader)
	j.set(newPub)
	later := now.Add(10 * time.Minute)
	if err := f.Verify(ctx, falHeaders(newPriv, "r-3", "u-1", later, body), body, later); err != nil {
		t.Errorf("rotated key: %v", err)
	}
	if n := j.fetches.Load(); n != 2 {
		t.Errorf("%d key fetches after a rotation, want 2", n)
	}
	day := now.Add(FalKeysMaxAge + time.Hour)
	if err := f.Verify(ctx, falHeaders(newPriv, "r-4", "u-1", day, body), body, day); err != nil {
		t.Errorf("a day later: %v", err)
	}
	if n := j.fetches.Load(); n != 3 {
		t.Errorf("%d key fetches after 25 h, want 3 (cache at most 24 h)", n)
	}
	// Keys that cannot be fetched are ErrKeys, not a bad signature.
	j.srv.Close()
	empty := &Fal{JWKSURL: j.srv.URL}
	if err := empty.Verify(ctx, h, body, now); !errors.Is(err, ErrKeys) {
		t.Errorf("no key set: %v, want ErrKeys", err)
	}
}

func TestParseJWKS(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	x := base64.RawURLEncoding.EncodeToString(pub)
	for _, tc := range []struct {
		in   string
		keys int
	}{
		{`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}]}`, 1},
		{`{"keys":[{"kty":"RSA","n":"AQAB"},{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}]}`, 1},
		{`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `="}]}`, 1},
		{`{"keys":[]}`, 0},
		{`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`, 0},
		{`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"***"}]}`, 0},
		{`not json`, 0},
	} {
		keys, err := ParseJWKS([]byte(tc.in))
		if len(keys) != tc.keys || (tc.keys == 0) != (err != nil) {
			t.Errorf("%s: %d keys, %v; want %d", tc.in, len(keys), err, tc.keys)
		}
	}
}
