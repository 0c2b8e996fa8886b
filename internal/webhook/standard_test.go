package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The worked example the Standard Webhooks authors publish (and
// Replicate's Go client tests against).
const (
	exSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	exID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	exTS     = 1614265330
	exBody   = `{"test": 2432232314}`
	exSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func exHeaders(sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, exID)
	h.Set(HeaderTimestamp, "1614265330")
	h.Set(HeaderSignature, sig)
	return h
}

func TestWorkedExample(t *testing.T) {
	s, err := NewSecrets(exSecret)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(exTS, 0)
	if got := s.Sign(exID, at, []byte(exBody)); got != exSig {
		t.Fatalf("Sign = %q, want %q", got, exSig)
	}
	// The same figure computed here by hand, not through the library.
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(exSecret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(exID + ".1614265330." + exBody))
	if hand := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); hand != exSig {
		t.Fatalf("hand-made HMAC %q, want %q", hand, exSig)
	}
	for _, tc := range []struct {
		name string
		h    http.Header
		body string
		now  time.Time
		want error
	}{
		{"valid", exHeaders(exSig), exBody, at, nil},
		{"valid 4m59s later", exHeaders(exSig), exBody, at.Add(Tolerance - time.Second), nil},
		{"valid among others", exHeaders("v1,Zm9v " + exSig + " v2,YmFy"), exBody, at, nil},
		{"replayed 5m1s later", exHeaders(exSig), exBody, at.Add(Tolerance + time.Second), ErrStale},
		{"from 5m1s in the future", exHeaders(exSig), exBody, at.Add(-Tolerance - time.Second), ErrStale},
		{"body changed", exHeaders(exSig), `{"test": 2432232315}`, at, ErrBadSignature},
		{"no v1 prefix", exHeaders(strings.TrimPrefix(exSig, "v1,")), exBody, at, ErrBadSignature},
		{"no signature", exHeaders(""), exBody, at, ErrMissingHeaders},
		{"bad timestamp", func() http.Header { h := exHeaders(exSig); h.Set(HeaderTimestamp, "16e8"); return h }(), exBody, at, ErrBadTimestamp},
		{"timestamp changed", func() http.Header { h := exHeaders(exSig); h.Set(HeaderTimestamp, "1614265331"); return h }(), exBody, at, ErrBadSignature},
		{"id changed", func() http.Header { h := exHeaders(exSig); h.Set(HeaderID, "msg_other"); return h }(), exBody, at, ErrBadSignature},
	} {
		if err := s.Verify(tc.h, []byte(tc.body), tc.now); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// Two secrets sign twice; a receiver holding either verifies.
func TestRotation(t *testing.T) {
	const other = "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"
	both, err := NewSecrets(exSecret, other)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(exTS, 0)
	h := http.Header{}
	both.SetHeaders(h, exID, at, []byte(exBody))
	if n := len(strings.Fields(h.Get(HeaderSignature))); n != 2 {
		t.Fatalf("%d signatures, want 2", n)
	}
	for _, sec := range []string{exSecret, other} {
		one, _ := NewSecrets(sec)
		if err := one.Verify(h, []byte(exBody), at); err != nil {
			t.Errorf("holder of one secret: %v", err)
		}
	}
	third, _ := NewSecrets("whsec_dGhpcmQtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY=")
	if err := third.Verify(h, []byte(exBody), at); !errors.Is(err, ErrBadSignature) {
		t.Errorf("a third secret verified: %v", err)
	}
	for _, bad := range []string{"", "whsec_", "whsec_not base64!"} {
		if _, err := NewSecrets(bad); err == nil || strings.Contains(err.Error(), "base64!") {
			t.Errorf("secret %q: %v", bad, err)
		}
	}
}
