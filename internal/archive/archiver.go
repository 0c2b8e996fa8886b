package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/reelq/reelq/internal/media"
)

// Slots limits how many transfers run at once. The worker supplies a
// cluster-wide one; NewSlots is an in-process one.
type Slots interface {
	// Acquire waits for a free slot, or fails when ctx ends. The caller
	// calls release exactly once when the transfer ends.
	Acquire(ctx context.Context) (release func(), err error)
}

// Bandwidth limits the byte rate of transfers. The worker supplies a
// cluster-wide one; NewBandwidth is an in-process one.
type Bandwidth interface {
	// WaitN waits until n more bytes may pass, or fails when ctx ends.
	WaitN(ctx context.Context, n int) error
}

// BandwidthChunk is the largest n an Archiver passes to Bandwidth.WaitN:
// the body is read in pieces of at most this size.
const BandwidthChunk = 64 << 10

// Retry is the retry policy for transient failures.
type Retry struct {
	// Initial is the first wait between attempts (default 1s); waits
	// double, with jitter, up to Max (default 30s).
	Initial, Max time.Duration
	// Budget bounds the time from the first attempt's start to the start
	// of the last retry (default 10m). An attempt that is running when the
	// budget runs out finishes; no other starts.
	Budget time.Duration
	// Attempts caps the number of attempts (0: only Budget limits them).
	Attempts int
}

// Options configures an Archiver.
type Options struct {
	// Fetcher downloads the sources (required).
	Fetcher *Fetcher
	// Slots limits concurrent transfers (nil: no limit). A slot is held
	// for one attempt, not while waiting to retry.
	Slots Slots
	// Bandwidth limits the byte rate (nil: no limit).
	Bandwidth Bandwidth
	// Retry is the retry policy.
	Retry Retry
	// Logger receives a warning per retry (nil: slog.Default()).
	Logger *slog.Logger
}

// Archiver copies output URLs into a Store.
type Archiver struct {
	store Store
	opts  Options
	log   *slog.Logger
	// noInspect skips the media inspection (the benchmark's baseline).
	noInspect bool
}

// NewArchiver returns an Archiver writing to store.
func NewArchiver(store Store, o Options) (*Archiver, error) {
	if store == nil {
		return nil, errors.New("archive: NewArchiver needs a store")
	}
	if o.Fetcher == nil {
		return nil, errors.New("archive: Options.Fetcher is required")
	}
	if o.Retry.Initial <= 0 {
		o.Retry.Initial = time.Second
	}
	if o.Retry.Max <= 0 {
		o.Retry.Max = 30 * time.Second
	}
	if o.Retry.Max < o.Retry.Initial {
		o.Retry.Max = o.Retry.Initial
	}
	if o.Retry.Budget <= 0 {
		o.Retry.Budget = 10 * time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Archiver{store: store, opts: o, log: log}, nil
}

// Store returns the store copies go to.
func (a *Archiver) Store() Store { return a.store }

// Archive downloads rawURL and stores it under key (see Key), streaming:
// memory does not grow with the file's size. It returns the copy with
// size, SHA-256 and content type (the response's, else by the URL's
// extension) and, in Media, what the bytes are as media: each attempt
// inspects the body as it streams past (see internal/media), so the file
// is read once and never held. Transient failures are retried per the
// Retry policy;
// permanent ones (see Permanent) return at once. When ctx ends, the error
// wraps ctx's error.
func (a *Archiver) Archive(ctx context.Context, key, rawURL string) (Copy, error) {
	if err := checkKey(key); err != nil {
		return Copy{}, err
	}
	var (
		attempts int
		last     error
	)
	op := func() (Copy, error) {
		attempts++
		c, err := a.once(ctx, key, rawURL)
		if err == nil {
			return c, nil
		}
		last = err
		if Permanent(err) || ctx.Err() != nil {
			return Copy{}, backoff.Permanent(err)
		}
		return Copy{}, err
	}
	var b backoff.BackOff = backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(a.opts.Retry.Initial),
		backoff.WithMaxInterval(a.opts.Retry.Max),
		backoff.WithMaxElapsedTime(a.opts.Retry.Budget),
	)
	if a.opts.Retry.Attempts > 0 {
		b = backoff.WithMaxRetries(b, uint64(a.opts.Retry.Attempts-1))
	}
	notify := func(err error, wait time.Duration) {
		a.log.Warn("archive retry", "key", key, "url", RedactURL(rawURL), "attempt", attempts,
			"retry_in", wait.String(), "error", err.Error())
	}
	c, err := backoff.RetryNotifyWithData(op, backoff.WithContext(b, ctx), notify)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && last != nil && !errors.Is(last, cerr) {
			return Copy{}, fmt.Errorf("archive %s (%d attempts): %w; last error: %v", key, attempts, cerr, last)
		}
		return Copy{}, fmt.Errorf("archive %s (%d attempts): %w", key, attempts, err)
	}
	return c, nil
}

// once is one attempt: a slot, a download, an upload.
func (a *Archiver) once(ctx context.Context, key, rawURL string) (Copy, error) {
	if a.opts.Slots != nil {
		release, err := a.opts.Slots.Acquire(ctx)
		if err != nil {
			return Copy{}, fmt.Errorf("waiting for a transfer slot: %w", err)
		}
		defer release()
	}
	resp, err := a.opts.Fetcher.Get(ctx, rawURL)
	if err != nil {
		return Copy{}, err
	}
	defer resp.Close()
	var body io.Reader = resp
	if a.opts.Bandwidth != nil {
		body = &throttled{ctx: ctx, r: resp, bw: a.opts.Bandwidth}
	}
	var in *media.Inspector
	if !a.noInspect {
		in = media.New(resp.ContentType, resp.Size)
		body = io.TeeReader(body, in)
	}
	c, err := a.store.Put(ctx, key, body, resp.Size, contentTypeFor(resp.ContentType, resp.Path))
	if err != nil {
		// A failed download fails the upload; its error is the one that
		// says what happened and whether to retry.
		if serr := resp.Err(); serr != nil {
			return Copy{}, serr
		}
		return Copy{}, err
	}
	if in != nil {
		rep := in.Report()
		c.Media = &rep
	}
	return c, nil
}

// throttled reads in pieces of at most BandwidthChunk bytes and waits for
// the bandwidth limit after each.
type throttled struct {
	ctx context.Context
	r   io.Reader
	bw  Bandwidth
}

func (t *throttled) Read(p []byte) (int, error) {
	if len(p) > BandwidthChunk {
		p = p[:BandwidthChunk]
	}
	n, err := t.r.Read(p)
	if n > 0 {
		if werr := t.bw.WaitN(t.ctx, n); werr != nil {
			return n, fmt.Errorf("bandwidth limit: %w", werr)
		}
	}
	return n, err
}
