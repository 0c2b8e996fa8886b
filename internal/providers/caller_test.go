package providers_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/providers"
)

// TestCallerTimeout checks that the client's Timeout bounds a whole call,
// the wait for the answer and the read of its body, and that a call cut
// short by it is a retryable timeout, while one whose caller gave up says
// so.
func TestCallerTimeout(t *testing.T) {
	t.Parallel()
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "10")
			_, _ = w.Write([]byte("12345"))
			w.(http.Flusher).Flush()
		}
		if r.URL.Path == "/cancel" {
			arrived <- struct{}{}
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := &providers.Caller{Provider: "p", Client: providers.Config{RequestTimeout: 100 * time.Millisecond}.Client(srv.URL)}
	for _, path := range []string{"/head", "/body"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		start := time.Now()
		_, err := c.Do(context.Background(), "poll", req)
		var pe *providers.Error
		if !errors.As(err, &pe) || !errors.Is(err, providers.ErrRetryable) || pe.Message != "timeout" {
			t.Errorf("%s: err = %v, want a retryable timeout", path, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: the call took %v with a 100ms timeout", path, d)
		}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("shutting down")
	go func() { <-arrived; cancel(cause) }() // ends the call mid-way
	c.Client.Timeout = time.Minute
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/cancel", nil)
	_, err := c.Do(ctx, "poll", req)
	var pe *providers.Error
	if errors.As(err, &pe) || !errors.Is(err, cause) {
		t.Errorf("cancelled by the caller: err = %v, want the caller's cause", err)
	}
}
