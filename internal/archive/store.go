package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Store keeps archived objects. Implementations are safe for concurrent
// use.
type Store interface {
	// Name is the kind of store, as in Copy.Store: "jetstream" or "s3".
	Name() string
	// Bucket is the bucket objects go to, as in Copy.Bucket.
	Bucket() string
	// Put stores r's bytes under key, replacing any object there, and
	// returns the copy with its size and SHA-256. size is the exact number
	// of bytes r yields, or -1 when unknown; when it is given, a reader
	// that yields fewer or more bytes fails the Put and nothing is stored.
	// A failed Put leaves no partial object behind.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (Copy, error)
	// Open returns the object under key and its copy. The caller closes
	// the reader. It fails with ErrNotFound when there is no such object.
	Open(ctx context.Context, key string) (io.ReadCloser, Copy, error)
	// Stat returns the copy of the object under key, or ErrNotFound.
	Stat(ctx context.Context, key string) (Copy, error)
	// Delete removes the object under key. Deleting a missing object is
	// not an error.
	Delete(ctx context.Context, key string) error
	// Check verifies that the bucket exists and can be reached.
	Check(ctx context.Context) error
}

// Store kinds for Config.Kind.
const (
	KindJetStream = "jetstream"
	KindS3        = "s3"
	KindOff       = "off"
)

// Config selects and configures a store.
type Config struct {
	// Kind is "jetstream" (the default when empty), "s3" or "off".
	Kind string
	// Bucket is the bucket name. For "jetstream" it defaults to
	// DefaultBucket; for "s3" it is required.
	Bucket string
	// S3 configures the "s3" kind.
	S3 S3Config
}

// Enabled reports whether the configuration archives at all (Kind is not
// "off").
func (c Config) Enabled() bool { return strings.ToLower(strings.TrimSpace(c.Kind)) != KindOff }

// NewStore builds the store c describes. js is the JetStream context for
// the "jetstream" kind (unused otherwise). For Kind "off" it returns a nil
// Store and a nil error: archiving is disabled. Errors name the field that
// is wrong.
func NewStore(ctx context.Context, c Config, js jetstream.JetStream) (Store, error) {
	switch kind := strings.ToLower(strings.TrimSpace(c.Kind)); kind {
	case "", KindJetStream:
		if js == nil {
			return nil, errors.New("archive: store kind \"jetstream\" needs a JetStream connection")
		}
		bucket := c.Bucket
		if bucket == "" {
			bucket = DefaultBucket
		}
		return NewJetStreamStore(ctx, js, bucket)
	case KindS3:
		s3 := c.S3
		if s3.Bucket == "" {
			s3.Bucket = c.Bucket
		}
		return NewS3Store(s3)
	case KindOff:
		return nil, nil
	default:
		return nil, fmt.Errorf("archive: unknown store kind %q (want \"jetstream\", \"s3\" or \"off\")", c.Kind)
	}
}

// putReader wraps the reader given to Put: it hashes and counts the bytes
// and, when the size is known, fails on a short or long stream, so a store
// never commits an object with the wrong length.
type putReader struct {
	r    io.Reader
	size int64 // -1: unknown
	n    int64
	h    hash.Hash
	done bool // the source reached its end
}

func newPutReader(r io.Reader, size int64) *putReader {
	return &putReader{r: r, size: size, h: sha256.New()}
}

// errShort and errLong are returned by putReader. They never equal
// io.ErrUnexpectedEOF, which some uploaders take as a normal end.
var (
	errShort = errors.New("stream ended before its declared size")
	errLong  = errors.New("stream is longer than its declared size")
)

func (p *putReader) Read(b []byte) (int, error) {
	if p.done {
		return 0, io.EOF
	}
	if p.size >= 0 {
		if p.n == p.size {
			// Size 0, or a caller reading again at the declared size.
			return 0, p.probe()
		}
		if int64(len(b)) > p.size-p.n {
			b = b[:p.size-p.n]
		}
	}
	if len(b) == 0 {
		return 0, nil
	}
	n, err := p.r.Read(b)
	p.h.Write(b[:n])
	p.n += int64(n)
	switch {
	case err == nil && p.size >= 0 && p.n == p.size:
		// Confirm the end before handing over the last bytes: an uploader
		// that has sent all the declared bytes may have completed the
		// object, so a long stream must fail while one is still missing.
		if perr := p.probe(); perr != io.EOF {
			return 0, perr
		}
		return n, nil
	case err == io.EOF && p.size >= 0 && p.n < p.size:
		return n, fmt.Errorf("%w: %d of %d bytes", errShort, p.n, p.size)
	case err == io.EOF:
		p.done = true
	}
	return n, err
}

// probe reads one byte past the declared size: io.EOF when there is
// none, errLong when there is.
func (p *putReader) probe() error {
	var one [1]byte
	for {
		n, err := p.r.Read(one[:])
		if n > 0 {
			return fmt.Errorf("%w (%d bytes)", errLong, p.size)
		}
		if err == io.EOF {
			p.done = true
			return io.EOF
		}
		if err != nil {
			return err
		}
	}
}

func (p *putReader) sum() string { return hex.EncodeToString(p.h.Sum(nil)) }

// checkKey rejects keys no store can hold.
func checkKey(key string) error {
	if key == "" {
		return errors.New("archive: empty object key")
	}
	if strings.HasPrefix(key, "/") || strings.Contains(key, "//") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("archive: object key %q has an empty path element", key)
	}
	return nil
}
