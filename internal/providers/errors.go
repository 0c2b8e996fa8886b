package providers

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/reelq/reelq/internal/providers/kind"
)

// The error classes and the error type live in package kind (the
// HTTP-free half of the contract, which the public package imports); they
// are repeated here so adapters read them as providers.X.
var (
	ErrRetryable         = kind.ErrRetryable
	ErrRateLimited       = kind.ErrRateLimited
	ErrInvalidInput      = kind.ErrInvalidInput
	ErrAuth              = kind.ErrAuth
	ErrCreditsExhausted  = kind.ErrCreditsExhausted
	ErrNotFound          = kind.ErrNotFound
	ErrTaskFailed        = kind.ErrTaskFailed
	ErrForbidden         = kind.ErrForbidden
	ErrUnknownSubmission = kind.ErrUnknownSubmission
)

// Error is the error every adapter returns for a failed call (see [kind.Error]).
type Error = kind.Error

// Code returns the stable snake_case name of err's class (see [kind.Code]).
func Code(err error) string { return kind.Code(err) }

// Invalid returns an ErrInvalidInput error for a rule broken before any call.
func Invalid(provider, format string, args ...any) error {
	return kind.Invalid(provider, format, args...)
}

// Retryable reports whether err is worth trying again later without any
// operator action: transient failures and rate limits.
func Retryable(err error) bool {
	return errors.Is(err, ErrRetryable) || errors.Is(err, ErrRateLimited)
}

// RetryAfter returns the wait the provider asked for, if err carries one.
func RetryAfter(err error) time.Duration {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.RetryAfter
	}
	return 0
}

// ClassifyStatus maps an HTTP status to the class shared by all four
// providers. Adapters override it where a provider differs (Segmind's 406,
// Samsar's 400 for a missing key). A 403 is ErrForbidden: without the body
// it cannot be told to be about the key; adapters that have the body use
// [ClassifyForbidden].
func ClassifyStatus(status int) error {
	switch {
	case status == http.StatusTooManyRequests:
		return ErrRateLimited
	case status == http.StatusUnauthorized:
		return ErrAuth
	case status == http.StatusForbidden:
		return ErrForbidden
	case status == http.StatusPaymentRequired:
		return ErrCreditsExhausted
	case status == http.StatusNotFound || status == http.StatusGone:
		return ErrNotFound
	case status == http.StatusRequestTimeout:
		return ErrRetryable
	case status >= 500:
		return ErrRetryable
	case status >= 400:
		return ErrInvalidInput
	}
	return nil
}

// ParseRetryAfter reads a Retry-After header value, either delta-seconds or
// an HTTP date, relative to now. It returns 0 for an absent or bad value.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var secs float64
	if _, err := fmt.Sscanf(v, "%g", &secs); err == nil && !strings.ContainsAny(v, " ,:") {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// ClassifyForbidden classifies a 403 by the provider's message: ErrAuth
// when it says the key is invalid, missing or expired (an account-level
// failure that pauses the provider), else ErrForbidden (this job may not
// be run: a private workflow, a template the plan excludes).
func ClassifyForbidden(msg string) error {
	if KeyRejected(msg) {
		return ErrAuth
	}
	return ErrForbidden
}

var (
	keySubjectRe = regexp.MustCompile(`\b(api[ _-]?key|x-api-key|access[ _-]?key|secret[ _-]?key|key|token|credentials?|authorization|bearer)\b`)
	keyProblemRe = regexp.MustCompile(`\b(invalid|missing|expired|revoked|malformed|incorrect|wrong|unknown|required|not (valid|provided|found|recognized|recognised)|no longer valid|empty|absent)\b`)
	unauthRe     = regexp.MustCompile(`\b(not authenticated|unauthenticated|authentication (failed|required))\b`)
)

// KeyRejected reports whether a provider's error message says that the
// API key itself is invalid, missing or expired ("Invalid API key",
// "Missing Authorization or x-api-key in header", "Not authenticated"),
// as opposed to a key that is fine but may not do this one thing ("API key
// lacks story access").
func KeyRejected(msg string) bool {
	m := strings.ToLower(msg)
	return unauthRe.MatchString(m) || (keySubjectRe.MatchString(m) && keyProblemRe.MatchString(m))
}

// MaxTaskIDLen bounds a usable task id.
const MaxTaskIDLen = 256

// UsableID reports whether id can identify a task: non-empty, at most
// MaxTaskIDLen bytes, without spaces or control characters.
func UsableID(id string) bool {
	if id == "" || len(id) > MaxTaskIDLen {
		return false
	}
	for _, r := range id {
		if r <= ' ' || r == 0x7f || unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// ClassifyBalance maps a failed call to a balance endpoint (a
// [CreditChecker]) to a class. Such a failure says nothing about the
// balance, so it is never ErrCreditsExhausted: 401, and any 4xx whose
// message rejects the key, are ErrAuth; 429 is ErrRateLimited; 404 and
// 410 are ErrNotFound (the endpoint moved: check its path option); the
// rest (5xx, 402, 403, other 4xx) are ErrRetryable.
func ClassifyBalance(status int, msg string) error {
	switch {
	case status == http.StatusUnauthorized:
		return ErrAuth
	case status == http.StatusTooManyRequests:
		return ErrRateLimited
	case status == http.StatusNotFound || status == http.StatusGone:
		return ErrNotFound
	case status >= 400 && status < 500 && KeyRejected(msg):
		return ErrAuth
	}
	return ErrRetryable
}

// BalanceDecode reports a 2xx balance answer that could not be read (a
// renamed field, not JSON): retryable, and never read as a balance.
func (c *Caller) BalanceDecode(op string, resp *Response, err error) error {
	return &Error{Provider: c.Provider, Op: op, StatusCode: resp.StatusCode, Class: ErrRetryable,
		Message: "unreadable balance: " + c.clip(string(resp.Body)), Cause: redactError{err, c.Secrets}}
}
