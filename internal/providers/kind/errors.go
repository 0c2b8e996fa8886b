package kind

import (
	"errors"
	"fmt"
	"strings"
	"time"
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
	// ErrForbidden is a 403 that concerns one job (a private workflow, a
	// template the account may not use, a task the provider refuses as
	// forbidden): the job fails; the provider keeps running.
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
	// Ambiguous says the answer to a submit does not tell whether the
	// provider started a paid task (Replicate's 5xx to a create, which its
	// own clients never retry): the worker treats the submission's outcome
	// as unknown, as it does a timeout.
	Ambiguous bool
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

// Invalid returns an ErrInvalidInput error for a rule broken before any call.
func Invalid(provider, format string, args ...any) error {
	return &Error{Provider: provider, Op: "validate", Class: ErrInvalidInput, Message: fmt.Sprintf(format, args...)}
}
