package archive

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/reelq/reelq/internal/netguard"
)

// Fetcher defaults.
const (
	// DefaultMaxSize is the largest download accepted: 4 GiB.
	DefaultMaxSize = 4 << 30
	// DefaultMaxRedirects is how many redirects a download may follow.
	DefaultMaxRedirects = 3
	// DefaultTimeout bounds one download from request to last byte.
	DefaultTimeout = 30 * time.Minute
	// DefaultIdleTimeout bounds the wait for response headers and for
	// each read of the body.
	DefaultIdleTimeout = time.Minute
	// DefaultMinRate is the slowest download accepted, in bytes per
	// second of waiting for the source: 16 KiB/s.
	DefaultMinRate = 16 << 10
	// DefaultMinRateWindow is how long the source may be waited for
	// before its rate is judged, and then each further stretch.
	DefaultMinRateWindow = 30 * time.Second
)

// FetchConfig configures a Fetcher. The zero value is the safe default.
type FetchConfig struct {
	// AllowPrivate lets downloads reach internal addresses: loopback,
	// link-local, private, carrier-grade NAT. Unspecified, broadcast and
	// multicast addresses stay refused. Meant for development only.
	AllowPrivate bool
	// AllowHosts lists exceptions to the internal-address rule. An entry
	// is a host name (matched exactly, case-insensitively, against the
	// URL's host: any address it resolves to is then allowed), an IP
	// address, or a CIDR prefix (an address in it is allowed whatever the
	// name). The provider simulator on loopback needs "127.0.0.1" or
	// "127.0.0.0/8" here.
	AllowHosts []string
	// MaxSize is the largest download in bytes (default DefaultMaxSize).
	MaxSize int64
	// MaxRedirects is how many redirects may be followed (default and at
	// most DefaultMaxRedirects; negative: none).
	MaxRedirects int
	// Timeout bounds one download, headers to last byte (default
	// DefaultTimeout).
	Timeout time.Duration
	// IdleTimeout bounds the wait for response headers and for each read
	// of the body (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MinRate is the slowest download accepted, in bytes per second,
	// judged over each MinRateWindow spent waiting for the source (time
	// spent waiting for our own bandwidth limit or store does not count):
	// a source that trickles is cut off with ErrTooSlow instead of holding
	// a transfer slot until Timeout. Default DefaultMinRate; negative: no
	// minimum.
	MinRate int64
	// MinRateWindow is the stretch MinRate is judged over (default
	// DefaultMinRateWindow).
	MinRateWindow time.Duration
	// UserAgent is sent with each request (default "reelq-archive").
	UserAgent string
	// TLSConfig replaces the TLS client configuration (tests, custom CAs).
	TLSConfig *tls.Config
}

// Fetcher downloads output URLs under the package's safety rules. It is
// safe for concurrent use; Close releases its idle connections.
type Fetcher struct {
	cfg       FetchConfig
	guard     *netguard.Guard
	transport *http.Transport
	client    *http.Client
}

// NewFetcher builds a Fetcher. It fails on an AllowHosts entry that is
// neither a host name, an address nor a prefix.
func NewFetcher(c FetchConfig) (*Fetcher, error) {
	if c.MaxSize <= 0 {
		c.MaxSize = DefaultMaxSize
	}
	switch {
	case c.MaxRedirects == 0 || c.MaxRedirects > DefaultMaxRedirects:
		c.MaxRedirects = DefaultMaxRedirects
	case c.MaxRedirects < 0:
		c.MaxRedirects = 0
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.UserAgent == "" {
		c.UserAgent = "reelq-archive"
	}
	if c.MinRate == 0 {
		c.MinRate = DefaultMinRate
	}
	if c.MinRateWindow <= 0 {
		c.MinRateWindow = DefaultMinRateWindow
	}
	g, err := netguard.New(netguard.Rules{AllowPrivate: c.AllowPrivate, AllowHosts: c.AllowHosts})
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	f := &Fetcher{cfg: c, guard: g}
	f.transport = &http.Transport{
		Proxy:                 nil, // a proxy would be the address dialed, defeating the checks
		DialContext:           g.DialContext,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       c.TLSConfig,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: c.IdleTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          32,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // store the bytes as served
	}
	f.client = &http.Client{Transport: f.transport, CheckRedirect: f.checkRedirect}
	return f, nil
}

// Close closes idle connections.
func (f *Fetcher) Close() { f.transport.CloseIdleConnections() }

// MaxSize returns the size limit in bytes.
func (f *Fetcher) MaxSize() int64 { return f.cfg.MaxSize }

// checkAddr refuses an internal address that the configuration does not
// allow (netguard's rules).
func (f *Fetcher) checkAddr(host, address string) error { return f.guard.CheckAddr(host, address) }

// internal names the kind of internal address ip is (netguard.Internal).
func internal(ip netip.Addr) (string, bool) { return netguard.Internal(ip) }

// checkURL enforces the URL rules on the first URL and on each redirect.
func checkURL(u *url.URL) error { return netguard.CheckURL(u) }

func (f *Fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > f.cfg.MaxRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrUnsafeURL, f.cfg.MaxRedirects)
	}
	if err := checkURL(req.URL); err != nil {
		return fmt.Errorf("redirect to %s: %w", redact(req.URL), err)
	}
	return nil
}

// redact returns u without user info, query or fragment: signed URLs keep
// their credentials in the query.
func redact(u *url.URL) string { return netguard.Redact(u) }

// RedactURL returns raw without user info, query or fragment, for logs
// and error messages.
func RedactURL(raw string) string { return netguard.RedactURL(raw) }

// Response is a download in progress: its body, read through the size
// limit and the idle timeout. Close it.
type Response struct {
	// Size is the Content-Length, or -1 when unknown.
	Size int64
	// ContentType is the Content-Type header as served.
	ContentType string
	// URL is the final URL after redirects, redacted (see RedactURL).
	URL string
	// Path is the final URL's path, for the content type fallback.
	Path string

	body     io.ReadCloser
	n, max   int64
	ctx      context.Context
	cancel   context.CancelCauseFunc
	idle     *time.Timer
	idleDur  time.Duration
	deadline *time.Timer
	err      error
	// The rate check: bytes and time spent inside the source's reads in
	// the current window.
	minRate           int64
	window, winWaited time.Duration
	winBytes          int64
}

// Get starts downloading rawURL. A non-200 status, an unsafe URL, a
// Content-Length above the limit or a failure to connect fail here, with
// the error classes of the package; errors during the body come from Read
// and are also kept by Err.
func (f *Fetcher) Get(ctx context.Context, rawURL string) (*Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: unparsable url", ErrUnsafeURL)
	}
	if err := checkURL(u); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", redact(u), err)
	}
	parent := ctx
	ctx, cancel := context.WithCancelCause(parent)
	deadline := time.AfterFunc(f.cfg.Timeout, func() {
		cancel(fmt.Errorf("%w: not complete within %v", ErrTimeout, f.cfg.Timeout))
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		deadline.Stop()
		cancel(nil)
		return nil, fmt.Errorf("%w: %s: %v", ErrUnsafeURL, redact(u), err)
	}
	req.Header.Set("User-Agent", f.cfg.UserAgent)
	resp, err := f.client.Do(req)
	if err != nil {
		deadline.Stop()
		cause := context.Cause(ctx)
		cancel(nil)
		return nil, f.doErr(u, err, cause, parent.Err())
	}
	final := redact(resp.Request.URL)
	fail := func(err error) (*Response, error) {
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10) // lets a small error body keep the connection
		resp.Body.Close()
		deadline.Stop()
		cancel(nil)
		return nil, err
	}
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
	case code == http.StatusForbidden || code == http.StatusNotFound || code == http.StatusGone:
		return fail(fmt.Errorf("fetch %s: %w: status %d", final, ErrGone, code))
	case code == http.StatusRequestTimeout || code == http.StatusTooEarly || code == http.StatusTooManyRequests || code >= 500:
		return fail(fmt.Errorf("fetch %s: status %d", final, code))
	default:
		return fail(fmt.Errorf("fetch %s: %w: status %d", final, ErrRejected, code))
	}
	if resp.ContentLength > f.cfg.MaxSize {
		return fail(fmt.Errorf("fetch %s: %w: Content-Length %d is over the limit of %d bytes", final, ErrTooLarge, resp.ContentLength, f.cfg.MaxSize))
	}
	r := &Response{
		Size:        resp.ContentLength,
		ContentType: resp.Header.Get("Content-Type"),
		URL:         final,
		Path:        resp.Request.URL.Path,
		body:        resp.Body,
		max:         f.cfg.MaxSize,
		ctx:         ctx,
		cancel:      cancel,
		idleDur:     f.cfg.IdleTimeout,
		deadline:    deadline,
		minRate:     f.cfg.MinRate,
		window:      f.cfg.MinRateWindow,
	}
	if r.Size < 0 {
		r.Size = -1
	}
	idle := f.cfg.IdleTimeout
	r.idle = time.AfterFunc(idle, func() {
		cancel(fmt.Errorf("%w: nothing received for %v", ErrTimeout, idle))
	})
	return r, nil
}

// doErr classifies an error from the HTTP client.
func (f *Fetcher) doErr(u *url.URL, err, cause, parentErr error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if p, perr := url.Parse(ue.URL); perr == nil {
			ue.URL = redact(p)
		} else {
			ue.URL = redact(u)
		}
	}
	if errors.Is(cause, ErrTimeout) {
		return fmt.Errorf("fetch %s: %w", redact(u), cause)
	}
	var ne net.Error
	if parentErr == nil && !errors.Is(err, ErrUnsafeURL) && errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("fetch %s: %w: %w", redact(u), ErrTimeout, err)
	}
	return fmt.Errorf("fetch: %w", err)
}

// Read reads the body, enforcing the size limit and the idle timeout.
func (r *Response) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	r.idle.Reset(r.idleDur)
	start := time.Now()
	n, err := r.body.Read(p)
	r.n += int64(n)
	if r.n > r.max {
		r.err = fmt.Errorf("fetch %s: %w: more than %d bytes", r.URL, ErrTooLarge, r.max)
		return n, r.err
	}
	if r.minRate > 0 && err == nil {
		r.winWaited += time.Since(start)
		r.winBytes += int64(n)
		if r.winWaited >= r.window {
			if float64(r.winBytes) < float64(r.minRate)*r.winWaited.Seconds() {
				r.err = fmt.Errorf("fetch %s: %w: %d bytes in %v of waiting for the source (the minimum is %d bytes/s), after %d bytes",
					r.URL, ErrTooSlow, r.winBytes, r.winWaited.Round(time.Millisecond), r.minRate, r.n)
				r.cancel(r.err)
				return n, r.err
			}
			r.winWaited, r.winBytes = 0, 0
		}
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		r.idle.Stop()
		return n, io.EOF
	}
	if cause := context.Cause(r.ctx); errors.Is(cause, ErrTimeout) {
		r.err = fmt.Errorf("fetch %s: after %d bytes: %w", r.URL, r.n, cause)
	} else if errors.Is(err, io.ErrUnexpectedEOF) {
		r.err = fmt.Errorf("fetch %s: body cut short at %d of %d bytes: %w", r.URL, r.n, r.Size, err)
	} else {
		r.err = fmt.Errorf("fetch %s: reading body after %d bytes: %w", r.URL, r.n, err)
	}
	return n, r.err
}

// Err returns the error that ended the body, if any (nil after a clean
// end or while reading).
func (r *Response) Err() error { return r.err }

// Close releases the download.
func (r *Response) Close() error {
	r.idle.Stop()
	r.deadline.Stop()
	r.cancel(nil)
	return r.body.Close()
}
