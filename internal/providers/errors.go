package providers

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// The error classes. Adapters wrap exactly one of them with %w; the worker
// maps each class to one action (see the package documentation).
var (
	ErrRetryable        = errors.New("provider temporarily unavailable")
	ErrRateLimited      = errors.New("provider rate limit exceeded")
	ErrInvalidInput     = errors.New("invalid input")
	ErrAuth             = errors.New("provider rejected the credentials")
	ErrCreditsExhausted = errors.New("provider credits exhausted")
	ErrNotFound         = errors.New("provider task not found")
	ErrTaskFailed       = errors.New("provider task failed")
	// ErrForbidden is a 403 that concerns one job (a private Segmind
	// workflow, a Vimmerse template the account may not use, Camb
	// FORBIDDEN on one task): the job fails; the provider keeps running.
	// ErrAuth is reserved for account-level failures (a missing or invalid
	// key), which pause the provider.
	ErrForbidden = errors.New("provider refused this job")
	// ErrUnknownSubmission is a submit answered 2xx whose body has no
	// usable task id (a renamed field, say): the provider may have started
	// a paid task that can never be followed. The job fails once and is
	// never resubmitted automatically; the provider is paused.
	ErrUnknownSubmission = errors.New("provider accepted the submission but returned no task id")
)

// Error is the error every adapter returns for a failed call. It carries the
// class (one of the Err* sentinels), the HTTP status if there was a
// response, and the provider's own message. API keys never appear in it.
type Error struct {
	Provider string
	// Op is the operation that failed: "submit", "poll", "cancel", ...
	Op string
	// StatusCode is the HTTP status, or 0 when no response arrived.
	StatusCode int
	// Message is the provider's error text, trimmed.
	Message string
	// RetryAfter is how long the provider asked us to wait (429 Retry-After
	// or an equivalent header), or 0 if it did not say.
	RetryAfter time.Duration
	// Class is the sentinel this error belongs to.
	Class error
	// Cause is the underlying transport or decoding error, if any.
	Cause error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Provider)
	if e.Op != "" {
		b.WriteString(" ")
		b.WriteString(e.Op)
	}
	b.WriteString(": ")
	b.WriteString(e.Class.Error())
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Cause != nil {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
	}
	return b.String()
}

// Unwrap returns the class and the cause, so errors.Is matches both.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Class, e.Cause}
	}
	return []error{e.Class}
}

// Code is the stable snake_case name of the error's class, used as the
// result event's error code.
func (e *Error) Code() string { return Code(e) }

// Code returns the stable snake_case name of err's class: invalid_input,
// unknown_submission, forbidden, auth, credits_exhausted, rate_limited,
// unavailable, not_found, provider_failed, or "" if err has no class.
func Code(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrInvalidInput):
		return "invalid_input"
	case errors.Is(err, ErrUnknownSubmission):
		return "unknown_submission"
	case errors.Is(err, ErrForbidden):
		return "forbidden"
	case errors.Is(err, ErrAuth):
		return "auth"
	case errors.Is(err, ErrCreditsExhausted):
		return "credits_exhausted"
	case errors.Is(err, ErrRateLimited):
		return "rate_limited"
	case errors.Is(err, ErrRetryable):
		return "unavailable"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrTaskFailed):
		return "provider_failed"
	}
	return ""
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

// Invalid returns an ErrInvalidInput error for a rule broken before any call.
func Invalid(provider, format string, args ...any) error {
	return &Error{Provider: provider, Op: "validate", Class: ErrInvalidInput, Message: fmt.Sprintf(format, args...)}
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
