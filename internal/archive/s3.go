package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// DefaultPartSize is the multipart part size S3Store uploads with: the
// memory one upload holds, and with S3's 10,000 parts a limit of 156 GiB
// per object.
const DefaultPartSize = 16 << 20

// minPartSize is S3's minimum size of a part other than the last.
const minPartSize = 5 << 20

// S3Config configures an S3Store.
type S3Config struct {
	// Endpoint is "host[:port]" or "http(s)://host[:port]"; empty means
	// AWS ("s3.amazonaws.com"). A scheme, when given, decides TLS.
	Endpoint string
	// Region is the bucket's region ("us-east-1" when empty and the
	// service needs one).
	Region string
	// Bucket is the bucket name (required; NewStore fills it from
	// Config.Bucket).
	Bucket string
	// DisableTLS talks plain HTTP to an endpoint given without a scheme.
	DisableTLS bool
	// PathStyle addresses the bucket in the path (endpoint/bucket/key)
	// instead of the host name (bucket.endpoint/key), as MinIO and most
	// self-hosted services need. When false, minio-go picks: virtual-host
	// style for AWS, path style elsewhere.
	PathStyle bool
	// PartSize is the multipart part size in bytes (default
	// DefaultPartSize, at least 5 MiB).
	PartSize int64
	// Transport replaces the HTTP transport (tests, custom CAs). nil uses
	// minio-go's default.
	Transport http.RoundTripper
}

// S3Store is a Store on an S3-compatible bucket.
type S3Store struct {
	client   *minio.Client
	bucket   string
	partSize int64
}

var _ Store = (*S3Store)(nil)

// NewS3Store builds the store. It makes no request: use Check to verify
// the bucket and credentials. Credentials come from, in order, the
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
// environment variables, the shared credentials file (AWS_PROFILE,
// AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials) and the IAM role of
// the instance or container.
func NewS3Store(c S3Config) (*S3Store, error) {
	if c.Bucket == "" {
		return nil, errors.New("archive: store kind \"s3\" needs a bucket (S3.Bucket or Config.Bucket)")
	}
	host, secure, err := s3Endpoint(c.Endpoint, c.DisableTLS)
	if err != nil {
		return nil, err
	}
	part := c.PartSize
	if part == 0 {
		part = DefaultPartSize
	}
	if part < minPartSize {
		return nil, fmt.Errorf("archive: S3.PartSize %d is below S3's minimum part size of 5 MiB", part)
	}
	lookup := minio.BucketLookupAuto
	if c.PathStyle {
		lookup = minio.BucketLookupPath
	}
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{},
	})
	client, err := minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Region:       c.Region,
		BucketLookup: lookup,
		Transport:    c.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("archive: S3.Endpoint %q: %w", c.Endpoint, err)
	}
	return &S3Store{client: client, bucket: c.Bucket, partSize: part}, nil
}

// s3Endpoint splits an endpoint setting into minio-go's host and TLS flag.
func s3Endpoint(endpoint string, disableTLS bool) (host string, secure bool, err error) {
	if endpoint == "" {
		return "s3.amazonaws.com", !disableTLS, nil
	}
	if !strings.Contains(endpoint, "://") {
		if strings.ContainsAny(endpoint, "/?#@") {
			return "", false, fmt.Errorf("archive: S3.Endpoint %q: want host[:port] or http(s)://host[:port]", endpoint)
		}
		return endpoint, !disableTLS, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, fmt.Errorf("archive: S3.Endpoint %q: %w", endpoint, err)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Host == "" {
		return "", false, fmt.Errorf("archive: S3.Endpoint %q: want http(s)://host[:port] with no path, query or user", endpoint)
	}
	switch u.Scheme {
	case "https":
		if disableTLS {
			return "", false, fmt.Errorf("archive: S3.Endpoint %q is https but S3.DisableTLS is set", endpoint)
		}
		return u.Host, true, nil
	case "http":
		return u.Host, false, nil
	}
	return "", false, fmt.Errorf("archive: S3.Endpoint %q: scheme must be http or https", endpoint)
}

// Name returns "s3".
func (s *S3Store) Name() string { return KindS3 }

// Bucket returns the bucket name.
func (s *S3Store) Bucket() string { return s.bucket }

// Put uploads the object: one streaming PUT when the size is known and at
// most one part, else a multipart upload holding one part in memory at a
// time, aborted if it fails.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (Copy, error) {
	if err := checkKey(key); err != nil {
		return Copy{}, err
	}
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	pr := newPutReader(r, size)
	var body io.Reader = pr
	if size <= 0 {
		// An empty body must go out as a PUT with Content-Length: 0 (S3
		// refuses chunked transfer encoding): probe for a first byte.
		var first [1]byte
		n, err := io.ReadFull(pr, first[:])
		switch {
		case n == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF):
			body, size = bytes.NewReader(nil), 0
		case err != nil:
			return Copy{}, fmt.Errorf("archive: s3 put %s/%s: %w", s.bucket, key, err)
		default:
			body = io.MultiReader(bytes.NewReader(first[:]), pr)
		}
	}
	info, err := s.client.PutObject(ctx, s.bucket, key, body, size, minio.PutObjectOptions{
		ContentType: contentType,
		PartSize:    uint64(s.partSize),
		// Over plain HTTP minio-go signs the payload in aws-chunked
		// encoding, which for an empty body goes out without a
		// Content-Length; an empty object needs no payload signature.
		DisableContentSha256: size == 0,
	})
	if err != nil {
		return Copy{}, fmt.Errorf("archive: s3 put %s/%s: %w", s.bucket, key, err)
	}
	if info.Size != pr.n {
		return Copy{}, fmt.Errorf("archive: s3 put %s/%s: stored %d bytes, read %d", s.bucket, key, info.Size, pr.n)
	}
	return Copy{Store: KindS3, Bucket: s.bucket, Key: key, Size: pr.n, ContentType: contentType, SHA256: pr.sum()}, nil
}

// Open returns a reader of the object. S3 keeps no SHA-256 of the whole
// object, so the returned copy's SHA256 is empty; Download checks the one
// from the result event.
func (s *S3Store) Open(ctx context.Context, key string) (io.ReadCloser, Copy, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, Copy{}, s.err("get", key, err)
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, Copy{}, s.err("get", key, err)
	}
	return obj, s.copyOf(info), nil
}

// Stat returns the object's copy (without SHA256, see Open).
func (s *S3Store) Stat(ctx context.Context, key string) (Copy, error) {
	info, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Copy{}, s.err("stat", key, err)
	}
	return s.copyOf(info), nil
}

// Delete removes the object.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		if errors.Is(s.err("delete", key, err), ErrNotFound) {
			return nil
		}
		return s.err("delete", key, err)
	}
	return nil
}

// Check verifies that the bucket exists with the credentials at hand.
func (s *S3Store) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("archive: s3 bucket %q: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("archive: s3 bucket %q does not exist", s.bucket)
	}
	return nil
}

func (s *S3Store) err(op, key string, err error) error {
	resp := minio.ToErrorResponse(err)
	if resp.Code == minio.NoSuchKey || resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket {
		return fmt.Errorf("archive: s3 %s %s/%s: %w", op, s.bucket, key, ErrNotFound)
	}
	return fmt.Errorf("archive: s3 %s %s/%s: %w", op, s.bucket, key, err)
}

func (s *S3Store) copyOf(info minio.ObjectInfo) Copy {
	return Copy{Store: KindS3, Bucket: s.bucket, Key: info.Key, Size: info.Size, ContentType: info.ContentType}
}
