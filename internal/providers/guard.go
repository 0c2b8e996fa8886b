package providers

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ErrCredentialsRefused is wrapped by the error of a request that the
// client from [Config.Client] refused to send because it carried
// credentials to a host other than the configured base URL's (or over
// plain http to a non-loopback host). Nothing was sent.
var ErrCredentialsRefused = errors.New("refused to send credentials")

// maxRedirects bounds the same-host redirects a GET follows.
const maxRedirects = 10

// credentialHeaders are the headers that carry credentials, whatever the
// provider; a request with any of them only goes to the base host.
var credentialHeaders = []string{"Authorization", "X-Api-Key", "Proxy-Authorization", "Cookie"}

// guard is the RoundTripper and CheckRedirect of [Config.Client].
type guard struct {
	scheme   string // base URL's scheme, lower case
	host     string // base URL's host:port, lower case; "" if base is unusable
	key      string
	insecure bool
	next     http.RoundTripper
}

func newGuard(base, key string, insecure bool, next http.RoundTripper) *guard {
	if next == nil {
		next = http.DefaultTransport
	}
	g := &guard{key: key, insecure: insecure, next: next}
	if u, err := url.Parse(base); err == nil && u.Hostname() != "" {
		g.scheme = strings.ToLower(u.Scheme)
		g.host = hostPort(u)
	}
	return g
}

// hostPort is u's host and port (the scheme's default if absent), lower case.
func hostPort(u *url.URL) string {
	p := u.Port()
	if p == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			p = "80"
		case "https":
			p = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), p)
}

// sameOrigin reports whether u has the base URL's scheme, host and port.
func (g *guard) sameOrigin(u *url.URL) bool {
	return g.host != "" && strings.EqualFold(u.Scheme, g.scheme) && hostPort(u) == g.host
}

// RoundTrip implements http.RoundTripper.
func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if g.credentialed(req) {
		var why string
		switch {
		case !g.sameOrigin(req.URL):
			why = fmt.Sprintf("to %s://%s, which is not the configured API host", req.URL.Scheme, req.URL.Host)
		case strings.EqualFold(req.URL.Scheme, "http") && !g.insecure && !IsLoopback(req.URL.Hostname()):
			why = fmt.Sprintf("over plain http to %s (not loopback; AllowInsecure is off)", req.URL.Host)
		}
		if why != "" {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, fmt.Errorf("%w %s", ErrCredentialsRefused, why)
		}
	}
	return g.next.RoundTrip(req)
}

// credentialed reports whether req carries a credential header, or the
// API key anywhere in its headers or URL.
func (g *guard) credentialed(req *http.Request) bool {
	for _, h := range credentialHeaders {
		if req.Header.Get(h) != "" {
			return true
		}
	}
	if g.key == "" {
		return false
	}
	if strings.Contains(req.URL.String(), g.key) || strings.Contains(req.URL.String(), url.QueryEscape(g.key)) {
		return true
	}
	for _, vs := range req.Header {
		for _, v := range vs {
			if strings.Contains(v, g.key) {
				return true
			}
		}
	}
	return false
}

// checkRedirect follows a redirect only for a GET or HEAD, and only to the
// base URL's scheme and host. Otherwise the 3xx response itself is
// returned, and [Caller.Do] turns it into an error.
func (g *guard) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return http.ErrUseLastResponse
	}
	if m := via[0].Method; m != http.MethodGet && m != http.MethodHead {
		return http.ErrUseLastResponse
	}
	if !g.sameOrigin(req.URL) {
		return http.ErrUseLastResponse
	}
	return nil
}

// IsLoopback reports whether host (a name or an IP, without a port) is
// loopback: localhost, 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// SameOrigin reports whether raw is an absolute URL on base's scheme, host
// and port: the only place an adapter may send its key. Adapters check the
// URLs a provider's answer gives them (a status or cancel URL) with it,
// and build the URL from base instead when it says no.
func SameOrigin(base, raw string) bool {
	g := newGuard(base, "", false, nil)
	u, err := url.Parse(raw)
	return err == nil && u.User == nil && g.sameOrigin(u)
}
