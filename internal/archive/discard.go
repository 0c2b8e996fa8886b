package archive

import (
	"context"
	"fmt"
	"io"
)

// Discard returns a Store that keeps nothing: Put reads the bytes (an
// Archiver inspects them on the way) and drops them. Its Name is "off".
// The worker archives to it when REELQ_ARCHIVE=off, so outputs are still
// validated as media.
func Discard() Store { return discard{} }

type discard struct{}

func (discard) Name() string   { return KindOff }
func (discard) Bucket() string { return "" }

func (discard) Put(_ context.Context, key string, r io.Reader, size int64, contentType string) (Copy, error) {
	if err := checkKey(key); err != nil {
		return Copy{}, err
	}
	p := newPutReader(r, size)
	n, err := io.Copy(io.Discard, p)
	if err != nil {
		return Copy{}, fmt.Errorf("discard %s: %w", key, err)
	}
	return Copy{Store: KindOff, Key: key, Size: n, ContentType: contentType, SHA256: p.sum()}, nil
}

func (discard) Open(context.Context, string) (io.ReadCloser, Copy, error) {
	return nil, Copy{}, ErrNotFound
}
func (discard) Stat(context.Context, string) (Copy, error) { return Copy{}, ErrNotFound }
func (discard) Delete(context.Context, string) error       { return nil }
func (discard) Check(context.Context) error                { return nil }
