package forwarder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/netguard"
	"github.com/reelq/reelq/internal/webhook"
)

// ErrRefused means a receiver's URL is not allowed (an internal address
// without an exception, a bad scheme): retrying cannot help, so the
// delivery is dead-lettered at once.
var ErrRefused = errors.New("forwarder: receiver refused by the network rules")

// sender POSTs signed webhooks through the SSRF guard.
type sender struct {
	client    *http.Client
	transport *http.Transport
	secrets   *webhook.Secrets
	now       func() time.Time
}

func newSender(g *netguard.Guard, secrets *webhook.Secrets, timeout time.Duration, now func() time.Time) *sender {
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would be the address dialed, defeating the guard
		DialContext:           g.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}
	return &sender{
		transport: tr,
		client: &http.Client{Transport: tr, Timeout: timeout,
			// Standard Webhooks senders follow no redirect: a 3xx is a
			// failed delivery (and a redirect could lead past the guard's
			// URL rules).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		secrets: secrets,
		now:     now,
	}
}

func (s *sender) close() { s.transport.CloseIdleConnections() }

// attempt is the outcome of one POST.
type attempt struct {
	Status int   // the HTTP status, 0 when none came
	Err    error // nil on a 2xx
}

// post delivers body to rawURL as webhook id, signed at the current
// time (each attempt is signed anew, so a receiver's replay window holds
// for retries).
func (s *sender) post(ctx context.Context, rawURL, id string, body []byte) attempt {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return attempt{Err: fmt.Errorf("%w: %s: %v", ErrRefused, netguard.RedactURL(rawURL), err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "reelq-forwarder/"+buildinfo.Version())
	s.secrets.SetHeaders(req.Header, id, s.now(), body)
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, netguard.ErrUnsafe) {
			return attempt{Err: fmt.Errorf("%w: %v", ErrRefused, redactErr(err, rawURL))}
		}
		return attempt{Err: redactErr(err, rawURL)}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10) // lets a short answer keep the connection
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return attempt{Status: resp.StatusCode}
	}
	msg := fmt.Sprintf("status %d", resp.StatusCode)
	if t := printable(snippet); t != "" {
		msg += ": " + t
	}
	return attempt{Status: resp.StatusCode, Err: errors.New(msg)}
}

// redactErr rewrites the client's error with the URL redacted (its
// query may hold a credential).
func redactErr(err error, rawURL string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = netguard.RedactURL(rawURL)
	}
	return err
}

// printable keeps the first line of a response body, without control
// characters, for the dead letter's last error.
func printable(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.TrimSpace(s)
}
