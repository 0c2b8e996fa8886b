package worker

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingLimiter grants every Wait at once, or fails them with err.
type countingLimiter struct {
	waits atomic.Int64
	err   error
}

func (l *countingLimiter) Wait(context.Context) (time.Duration, error) {
	l.waits.Add(1)
	return 0, l.err
}

func (l *countingLimiter) Block(context.Context, time.Time) error { return nil }

func (l *countingLimiter) TokenTTL() time.Duration { return time.Minute }

// closeRecorder records whether a request body was closed.
type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error { c.closed.Store(true); return nil }

// The worker's token pays for a call's first request; every further
// request, and any request made without a token, waits for its own.
func TestHTTPClientTakesATokenPerRequest(t *testing.T) {
	t.Parallel()
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { served.Add(1) }))
	t.Cleanup(srv.Close)
	get := func(c *http.Client, ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	lim := &countingLimiter{}
	c := HTTPClient(lim, time.Second, 0)

	call := prepaid(context.Background(), time.Now()) // one provider call, token taken
	for range 3 {
		if err := get(c, call); err != nil {
			t.Fatal(err)
		}
	}
	if got := lim.waits.Load(); got != 2 {
		t.Errorf("a call of 3 requests with its token taken waited %d times, want 2", got)
	}
	if err := get(c, context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := lim.waits.Load(); got != 3 {
		t.Errorf("a request without a token waited %d times in all, want 3", got)
	}
	// A token held past the limiter's TokenTTL (a state write stalled in
	// between) is not used: the request waits for a fresh one.
	if err := get(c, prepaid(context.Background(), time.Now().Add(-2*time.Minute))); err != nil {
		t.Fatal(err)
	}
	if got := lim.waits.Load(); got != 4 {
		t.Errorf("a call with a stale token waited %d times in all, want 4", got)
	}

	// A failed wait sends nothing, returns the error and closes the body.
	lim.err = errors.New("shutting down")
	body := &closeRecorder{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, body)
	if _, err := c.Do(req); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("request with a failed wait: %v, want the limiter's error", err)
	}
	if !body.closed.Load() {
		t.Error("request body not closed after a failed wait")
	}
	if got := served.Load(); got != 5 {
		t.Errorf("server got %d requests, want 5", got)
	}
}
