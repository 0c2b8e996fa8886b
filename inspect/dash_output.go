package inspect

import (
	"context"
	"fmt"
	"io"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/archive"
)

// OpenOutput opens an archived output for reading from byte offset on (0:
// from the start), for a program that streams it (the dashboard serves
// HTTP Range requests with it). The caller closes the reader. JetStream
// copies are read over the client's connection (an ordered consumer on the
// object's chunks); the bytes before offset are read and dropped, so a
// seek costs what precedes it. s3 is needed for copies in an S3 archive.
// The reader's total length is cp.Size-offset; a read from the start to
// the end of a JetStream copy checks its SHA-256.
func (c *Inspector) OpenOutput(ctx context.Context, cp reelq.ArchivedCopy, offset int64, s3 *S3Options) (io.ReadCloser, error) {
	if offset < 0 || offset > cp.Size {
		return nil, fmt.Errorf("reelq: output %s: offset %d outside its %d bytes", cp.Key, offset, cp.Size)
	}
	var (
		store archive.Store
		err   error
	)
	switch cp.Store {
	case archive.KindJetStream:
		store, err = archive.NewJetStreamStore(ctx, c.js, cp.Bucket)
	case archive.KindS3:
		if s3 == nil {
			return nil, fmt.Errorf("reelq: %s is in an S3 archive: give its endpoint (REELQ_ARCHIVE_S3_ENDPOINT)", cp.Key)
		}
		store, err = archive.NewS3Store(archive.S3Config{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: cp.Bucket,
			DisableTLS: s3.DisableTLS, PathStyle: s3.PathStyle})
	default:
		return nil, fmt.Errorf("reelq: unknown archive store %q", cp.Store)
	}
	if err != nil {
		return nil, fmt.Errorf("reelq: archive %s/%s: %w", cp.Store, cp.Bucket, err)
	}
	rc, info, err := store.Open(ctx, cp.Key)
	if err != nil {
		return nil, fmt.Errorf("reelq: open output %s: %w", cp.Key, err)
	}
	if info.Size != cp.Size {
		rc.Close()
		return nil, fmt.Errorf("reelq: output %s: the archive holds %d bytes, the result says %d", cp.Key, info.Size, cp.Size)
	}
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, rc, offset); err != nil {
			rc.Close()
			return nil, fmt.Errorf("reelq: output %s: seek to %d: %w", cp.Key, offset, err)
		}
	}
	return rc, nil
}
