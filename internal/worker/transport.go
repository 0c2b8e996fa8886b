package worker

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// HTTPClient returns the HTTP client a provider adapter should send its
// requests with, so that no request reaches the provider outside lim, the
// provider's cluster-wide rate limit, whatever the adapter does inside one
// call.
//
// The worker takes a token before each provider call (Submit, Poll,
// Cancel, Find, CheckCredits), so it can wait outside the call's timeout
// and record the wait. That token pays for the call's first HTTP request
// if the request starts within the limiter's TokenTTL of the token: a
// token held longer (a state write stalled by a NATS outage in between)
// is thrown away and the request waits for a fresh one, so calls held
// during an outage do not all go out when it ends. (A submission takes
// its fresh token before the call, outside its timeout; this is the
// safety net.)
// Every further request in the same call waits for a token of its own:
// a Poll that reads a status and then, on success, fetches the result, for
// example, is two requests to the account's budget. A
// request made with no token taken (a code path that forgot to) also waits.
// The wait counts against timeout, which bounds one HTTP call; zero means
// 60s.
//
// The transport keeps up to idle connections to the provider open for
// reuse (net/http's default keeps 2 per host, so a worker polling many
// jobs at once opened a new connection for most calls); zero means 256.
func HTTPClient(lim Limiter, timeout time.Duration, idle int) *http.Client {
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if idle <= 0 {
		idle = 256
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConns, base.MaxIdleConnsPerHost = idle, idle
	return &http.Client{Timeout: timeout, Transport: &limitedTransport{base: base, lim: lim}}
}

type limitedTransport struct {
	base http.RoundTripper
	lim  Limiter
}

type prepaidKey struct{}

// token is one token taken from the limiter at a time.
type token struct {
	at   time.Time
	used atomic.Bool
}

// prepaid marks ctx as carrying one token taken from the limiter at at,
// to be used by the first request made with it.
func prepaid(ctx context.Context, at time.Time) context.Context {
	return context.WithValue(ctx, prepaidKey{}, &token{at: at})
}

// RoundTrip implements http.RoundTripper.
func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, ok := req.Context().Value(prepaidKey{}).(*token)
	if !ok || !tok.used.CompareAndSwap(false, true) || time.Since(tok.at) > t.lim.TokenTTL() {
		if _, err := t.lim.Wait(req.Context()); err != nil {
			if req.Body != nil {
				_ = req.Body.Close() // RoundTrip must close the body, even on error
			}
			return nil, err
		}
	}
	resp, err := t.base.RoundTrip(req)
	if span := trace.SpanFromContext(req.Context()); resp != nil && span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	}
	return resp, err
}
