package providers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// MaxBodyBytes bounds how much of a provider response is read.
const MaxBodyBytes = 4 << 20

// Response is a provider reply that arrived with a 2xx status.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// Caller performs HTTP calls for one adapter and turns every failure into an
// [*Error]. The zero value is not usable; set Provider and Client.
type Caller struct {
	// Provider names the adapter in errors.
	Provider string
	// Client sends the requests. It should have a timeout.
	Client *http.Client
	// Classify maps a non-2xx response to a class. Nil means ClassifyStatus.
	Classify func(status int, body []byte) error
	// Message extracts the provider's error text from a non-2xx body. Nil
	// means the trimmed body.
	Message func(body []byte) string
	// RetryAfter extracts the wait a 429 asks for. Nil means the standard
	// Retry-After header.
	RetryAfter func(h http.Header, now time.Time) time.Duration
	// Secrets are values that must never appear in an error message (the
	// API key); they are replaced with "[REDACTED]".
	Secrets []string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Do sends req and returns the response if its status is 2xx. Any other
// outcome is an *Error whose class says what the worker should do.
func (c *Caller) Do(ctx context.Context, op string, req *http.Request) (*Response, error) {
	req = req.WithContext(ctx)
	resp, err := c.Client.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes))
	if err != nil {
		return nil, c.transportError(ctx, op, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: body}, nil
	}
	classify := c.Classify
	if classify == nil {
		classify = func(status int, _ []byte) error { return ClassifyStatus(status) }
	}
	class := classify(resp.StatusCode, body)
	if class == nil {
		class = ErrRetryable
	}
	e := &Error{Provider: c.Provider, Op: op, StatusCode: resp.StatusCode, Class: class, Message: c.message(body)}
	if errors.Is(class, ErrRateLimited) || resp.StatusCode == http.StatusServiceUnavailable {
		e.RetryAfter = c.retryAfter(resp.Header)
	}
	return nil, e
}

// Decode reports a 2xx body that could not be understood. Such replies are
// treated as transient: the provider may be mid-deploy.
func (c *Caller) Decode(op string, err error) error {
	return &Error{Provider: c.Provider, Op: op, Class: ErrRetryable, Message: "unexpected response", Cause: err}
}

func (c *Caller) transportError(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The caller gave up: report that, not a provider fault.
		return fmt.Errorf("%s %s: %w", c.Provider, op, context.Cause(ctx))
	}
	msg := "network error"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		msg = "timeout"
	}
	return &Error{Provider: c.Provider, Op: op, Class: ErrRetryable, Message: msg, Cause: redactError{err, c.Secrets}}
}

func (c *Caller) message(body []byte) string {
	var m string
	if c.Message != nil {
		m = c.Message(body)
	}
	if m == "" {
		m = string(body)
	}
	m = strings.Join(strings.Fields(m), " ")
	if len(m) > 300 {
		m = m[:300] + "..."
	}
	return Redact(m, c.Secrets)
}

func (c *Caller) retryAfter(h http.Header) time.Duration {
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	if c.RetryAfter != nil {
		return c.RetryAfter(h, now)
	}
	return ParseRetryAfter(h.Get("Retry-After"), now)
}

// Redact replaces every non-empty secret in s with [REDACTED].
func Redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}

type redactError struct {
	err     error
	secrets []string
}

func (r redactError) Error() string { return Redact(r.err.Error(), r.secrets) }
func (r redactError) Unwrap() error { return r.err }
