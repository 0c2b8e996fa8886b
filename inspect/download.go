package inspect

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/archive"
)

// S3Options reach an S3-compatible archive (AWS S3, MinIO, Ceph, R2...).
// Credentials come the way AWS tools take them: AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), the shared credentials
// file (AWS_PROFILE), or an instance role.
type S3Options struct {
	// Endpoint is host[:port] or an http(s):// URL; empty means AWS.
	Endpoint string
	Region   string
	// DisableTLS talks plain HTTP to an Endpoint given without a scheme.
	DisableTLS bool
	// PathStyle addresses the bucket in the path (MinIO and most
	// self-hosted services).
	PathStyle bool
}

// OutputFile is the file name DownloadOutputs gives output n (from 1) of
// job id: <job_id>-<n>.<ext>.
func OutputFile(id string, n int, contentType string) string {
	return archive.FileName(id, n, contentType)
}

// DownloadOutput writes an archived output to path (through a temporary
// file, renamed once its size and SHA-256 match the archived copy). A file
// already complete is skipped (skipped=true). s3 is needed for copies in
// an S3 archive; JetStream copies are read over the client's connection.
func (c *Inspector) DownloadOutput(ctx context.Context, cp reelq.ArchivedCopy, path string, s3 *S3Options) (skipped bool, err error) {
	var store archive.Store
	switch cp.Store {
	case archive.KindJetStream:
		store, err = archive.NewJetStreamStore(ctx, c.js, cp.Bucket)
	case archive.KindS3:
		if s3 == nil {
			return false, fmt.Errorf("reelq: %s is in an S3 archive: give its endpoint (REELQ_ARCHIVE_S3_ENDPOINT)", cp.Key)
		}
		store, err = archive.NewS3Store(archive.S3Config{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: cp.Bucket,
			DisableTLS: s3.DisableTLS, PathStyle: s3.PathStyle})
	default:
		return false, fmt.Errorf("reelq: unknown archive store %q", cp.Store)
	}
	if err != nil {
		return false, fmt.Errorf("reelq: archive %s/%s: %w", cp.Store, cp.Bucket, err)
	}
	return archive.Download(ctx, store, archive.Copy{Store: cp.Store, Bucket: cp.Bucket, Key: cp.Key, Size: cp.Size,
		ContentType: cp.ContentType, SHA256: cp.SHA256}, filepath.Clean(path))
}
