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
	hc, callCtx := c.Client, ctx
	if t := hc.Timeout; t > 0 {
		// The client's timeout, as a deadline on the request's context: for
		// a client whose RoundTripper is not net/http's own (the guard, the
		// worker's limiter), net/http enforces Client.Timeout with two
		// goroutines, two channels and a timer per request. The body is
		// read before cancel, so the deadline covers it as Timeout did.
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
		plain := *hc
		plain.Timeout = 0
		hc = &plain
	}
	req = req.WithContext(callCtx)
	resp, err := hc.Do(req)
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
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, c.redirectError(op, req, resp)
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
// treated as transient: the provider may be mid-deploy. Never use it for a
// submit, whose 2xx may mean a paid task: see [Caller.UnknownSubmission].
func (c *Caller) Decode(op string, err error) error {
	return &Error{Provider: c.Provider, Op: op, Class: ErrRetryable, Message: "unexpected response", Cause: redactError{err, c.Secrets}}
}

// UnknownSubmission reports a submit answered 2xx without a usable task id
// (a renamed field, a body that is not the documented JSON): the provider
// may have started, and charged for, a task that can never be polled, so
// the submit must not be repeated automatically. why says what was
// missing; the message keeps the provider's answer, trimmed and redacted.
func (c *Caller) UnknownSubmission(resp *Response, why string) error {
	msg := why
	if b := c.clipTo(string(resp.Body), maxAnswer); b != "" {
		msg += "; the answer was: " + b
	}
	return &Error{Provider: c.Provider, Op: "submit", StatusCode: resp.StatusCode, Class: ErrUnknownSubmission, Message: msg}
}

// redirectError reports a 3xx that the client did not follow (see
// [Config.Client]). A GET or a cancel can be retried. So can a submit
// answered 307 or 308, which ask for the request to be repeated
// elsewhere and so were not acted on; any other 3xx to a submit (303 See
// Other, or a 301/302 used the same way) may mean the task was created,
// so it is an unknown submission, never resubmitted automatically.
func (c *Caller) redirectError(op string, req *http.Request, resp *http.Response) error {
	where := "a Location that is not followed"
	if loc, err := resp.Location(); err == nil {
		if loc.Host == req.URL.Host && strings.EqualFold(loc.Scheme, req.URL.Scheme) {
			where = "the same host, which is not followed"
		} else {
			where = fmt.Sprintf("%s://%s, which is not followed", loc.Scheme, loc.Host)
		}
	}
	msg := fmt.Sprintf("HTTP %d redirect to %s", resp.StatusCode, where)
	class := ErrRetryable
	if op == "submit" && resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect {
		class = ErrUnknownSubmission
		msg += "; the provider may have accepted the submission"
	}
	return &Error{Provider: c.Provider, Op: op, StatusCode: resp.StatusCode, Class: class, Message: Redact(msg, c.Secrets)}
}

func (c *Caller) transportError(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The caller gave up: report that, not a provider fault.
		return fmt.Errorf("%s %s: %w", c.Provider, op, context.Cause(ctx))
	}
	msg := "network error"
	var ne net.Error
	switch {
	case errors.Is(err, ErrCredentialsRefused):
		msg = "request not sent"
	case errors.As(err, &ne) && ne.Timeout():
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
	return c.clip(m)
}

// maxMessage bounds the provider text kept in an error; maxAnswer the
// answer kept in an unknown submission, which an operator may need to
// find the task by hand.
const (
	maxMessage = 300
	maxAnswer  = 4 << 10
)

// clip collapses whitespace, redacts secrets and truncates m to
// maxMessage bytes (on a rune boundary).
func (c *Caller) clip(m string) string { return c.clipTo(m, maxMessage) }

func (c *Caller) clipTo(m string, limit int) string {
	return ClipText(Redact(m, c.Secrets), limit)
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
