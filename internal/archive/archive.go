// Package archive copies a job's output files from the provider's
// short-lived URLs into durable storage, so that a result event can carry
// a copy that outlives the provider's link (Segmind's expire after about an
// hour, Camb's audio after 24 hours).
//
// # Design
//
// An [Archiver] joins a [Fetcher] (the download side) and a [Store] (the
// upload side). Archive streams the response body straight into the store:
// nothing holds a whole file in memory, and the SHA-256 and size are
// computed on the way through. The result is a [Copy], the JSON that goes
// into the result event. Objects are named by [Key] as
// "<job_id>/<run>/<index>", so archiving the same output again replaces the
// object instead of adding a second one.
//
// Two stores exist:
//
//   - [JetStreamStore], the default: a JetStream object store (bucket
//     [DefaultBucket]) on the cluster reelq already runs. [BucketConfig]
//     gives the bucket's configuration to whoever creates streams. Objects
//     are written in the object store's own format, so any object store
//     client reads them, by the store's own publisher, which keeps at most
//     32 chunks of [DefaultChunkSize] unacknowledged per upload (see
//     [JetStreamStore.Put] for why not nats.go's ObjectStore.Put).
//   - [S3Store]: any S3-compatible service (AWS, MinIO, Ceph, R2, ...)
//     through github.com/minio/minio-go/v7. minio-go was chosen over
//     aws-sdk-go-v2 for its small dependency tree, because it talks to any
//     S3-compatible endpoint without per-service configuration, and for
//     its plain path-style bucket addressing. Credentials come the way AWS
//     tools take them: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
//     AWS_SESSION_TOKEN, then the shared credentials file (AWS_PROFILE,
//     AWS_SHARED_CREDENTIALS_FILE), then the IAM instance or container
//     role. Uploads of unknown size go out as multipart uploads with a
//     fixed part size ([DefaultPartSize]), so memory stays at about one
//     part per upload.
//
// [NewStore] builds either from a small [Config]; Kind "off" disables
// archiving. [Discard] is a store that keeps nothing: with it an Archiver
// still downloads and inspects each output (the worker's validation with
// archiving off).
//
// Every download is inspected as media while it streams into the store
// (internal/media): [Copy.Media] says what the bytes are, their
// duration, tracks and whether they arrived whole.
//
// Concurrency and bandwidth limits are the caller's: [Slots] and
// [Bandwidth] are interfaces (the worker supplies cluster-wide ones);
// [NewSlots] and [NewBandwidth] are in-process ones.
//
// # Safety rules
//
// Output URLs come from third parties, so the [Fetcher] treats them as
// untrusted: only http and https, no user info in the URL, at most
// [DefaultMaxRedirects] redirects with each target checked again, and no
// connection to loopback, link-local, private (RFC 1918, fc00::/7),
// carrier-grade NAT, unspecified, broadcast or multicast addresses unless
// [FetchConfig] allows them. The check runs on the address actually
// dialed (a net.Dialer Control function), after DNS resolution, so a name
// that resolves, or later re-resolves, to an internal address is refused
// (DNS rebinding). Proxies from the environment are not used, since the
// address dialed would then be the proxy's. Sizes are limited (default
// [DefaultMaxSize]) by Content-Length before reading and by counting bytes
// while reading; downloads have an overall timeout and an idle-read
// timeout. URLs in errors and logs carry no query string, where signed
// URLs keep their tokens.
//
// # Errors
//
// Errors are classed with errors.Is: [ErrGone] (the source answered 403,
// 404 or 410: the link expired), [ErrRejected] (another 4xx),
// [ErrTooLarge] and [ErrUnsafeURL] are permanent ([Permanent] reports
// them); everything else (connection errors, 5xx, 408, 429, a body cut
// short, timeouts, store failures) is transient and retried by Archive
// with exponential backoff within [Retry.Budget].
//
// # Retention
//
// The JetStream bucket keeps an object for the retention given to
// [BucketConfig] (the object store's TTL, i.e. the stream's MaxAge),
// counted from the last time the object was written. An S3 bucket keeps
// objects as its own lifecycle rules say; this package sets none.
//
// # Clients
//
// [Download] fetches a [Copy] back to a local file (temporary file, then
// rename), checks its size and SHA-256, and skips a file that is already
// complete. [FileName] names such files "<job_id>-<n>.<ext>".
package archive

import (
	"errors"
	"fmt"
	"mime"
	"path"
	"strings"

	"github.com/reelq/reelq/internal/media"
	"github.com/reelq/reelq/internal/netguard"
)

// Copy is an archived copy of one output, as it goes into a result event.
type Copy struct {
	// Store is the kind of store: "jetstream" or "s3".
	Store string `json:"store"`
	// Bucket is the JetStream object store bucket or the S3 bucket.
	Bucket string `json:"bucket"`
	// Key is the object's name in the bucket (see [Key]).
	Key string `json:"key"`
	// Size is the object's size in bytes.
	Size int64 `json:"size"`
	// ContentType is the media type of the object.
	ContentType string `json:"content_type,omitempty"`
	// SHA256 is the hex SHA-256 of the object's bytes. It is always set in
	// a Copy returned by Put or Archive; S3's Stat and Open cannot know it
	// and leave it empty.
	SHA256 string `json:"sha256,omitempty"`
	// Media is what Archive found the bytes to be (not stored with the
	// object; nil from Put, Stat and Open).
	Media *media.Report `json:"-"`
}

// Key returns the object key of output index of run run of job jobID:
// "<job_id>/<run>/<index>". It is deterministic, so a repeated upload of
// the same output replaces the object rather than duplicating it.
func Key(jobID string, run, index int) string {
	return fmt.Sprintf("%s/%d/%d", jobID, run, index)
}

// Error classes. Test with errors.Is.
var (
	// ErrGone means the source answered 403, 404 or 410: the provider's
	// link has expired or never existed. Permanent.
	ErrGone = errors.New("source gone")
	// ErrRejected means the source refused the request with another 4xx
	// status (not 408 or 429). Permanent.
	ErrRejected = errors.New("source rejected the request")
	// ErrTooLarge means the source is larger than the size limit.
	// Permanent.
	ErrTooLarge = errors.New("source too large")
	// ErrUnsafeURL means the URL, a redirect, or the address it resolved
	// to is not allowed (scheme, user info, redirect count, internal
	// address). Permanent.
	ErrUnsafeURL = netguard.ErrUnsafe
	// ErrTimeout means a download took longer than its overall timeout or
	// received nothing for longer than its idle timeout. Transient.
	ErrTimeout = errors.New("download timed out")
	// ErrTooSlow means the source sent less than the minimum rate
	// (FetchConfig.MinRate). Permanent: a source that trickles would hold
	// a transfer slot for every retry.
	ErrTooSlow = errors.New("source too slow")
	// ErrNotFound means the store has no object under the key.
	ErrNotFound = errors.New("object not found")
	// ErrMismatch means downloaded bytes do not match a Copy's size or
	// SHA-256.
	ErrMismatch = errors.New("archived copy does not match")
)

// Permanent reports whether err is of a class that retrying cannot fix:
// ErrGone, ErrRejected, ErrTooLarge, ErrUnsafeURL or ErrTooSlow.
func Permanent(err error) bool {
	return errors.Is(err, ErrGone) || errors.Is(err, ErrRejected) ||
		errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnsafeURL) || errors.Is(err, ErrTooSlow)
}

// knownExt maps the media types reelq's providers return to the file
// extension people expect (mime.ExtensionsByType may list several, in
// alphabetical rather than customary order).
var knownExt = map[string]string{
	"video/mp4":        ".mp4",
	"video/webm":       ".webm",
	"video/quicktime":  ".mov",
	"video/x-matroska": ".mkv",
	"audio/mpeg":       ".mp3",
	"audio/mp3":        ".mp3",
	"audio/wav":        ".wav",
	"audio/x-wav":      ".wav",
	"audio/wave":       ".wav",
	"audio/flac":       ".flac",
	"audio/ogg":        ".ogg",
	"audio/aac":        ".aac",
	"audio/mp4":        ".m4a",
	"image/png":        ".png",
	"image/jpeg":       ".jpg",
	"image/gif":        ".gif",
	"image/webp":       ".webp",
	"application/json": ".json",
	"text/plain":       ".txt",
}

// knownType is knownExt reversed, for the content type fallback.
var knownType = map[string]string{
	".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime",
	".mkv": "video/x-matroska", ".mp3": "audio/mpeg", ".wav": "audio/wav", ".flac": "audio/flac",
	".ogg": "audio/ogg", ".aac": "audio/aac", ".m4a": "audio/mp4", ".png": "image/png",
	".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
	".json": "application/json", ".txt": "text/plain",
}

// Ext returns the file extension, with its dot, for a media type: ".mp4"
// for "video/mp4", ".bin" for any type not among the media reelq's
// providers deliver. The type comes from the provider (its CDN's
// Content-Type), so nothing else is trusted: "text/html", "image/svg+xml"
// or an executable's type would otherwise name a file that a double click
// opens in a browser or runs.
func Ext(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ".bin"
	}
	if e, ok := knownExt[mt]; ok {
		return e
	}
	return ".bin"
}

// FileName returns the local file name for output n of job jobID:
// "<job_id>-<n><ext>" with the extension from contentType (see [Ext]).
// Characters other than letters, digits, '-', '_' and '.' in jobID become
// '_', so the name never leaves its directory.
func FileName(jobID string, n int, contentType string) string {
	safe := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, jobID)
	if safe == "" || strings.Trim(safe, ".") == "" {
		safe = "_" + safe
	}
	return fmt.Sprintf("%s-%d%s", safe, n, Ext(contentType))
}

// contentTypeFor picks the content type of a download: the response's
// unless it is missing or generic, else by the URL path's extension, else
// application/octet-stream.
func contentTypeFor(header, urlPath string) string {
	if header != "" {
		if mt, params, err := mime.ParseMediaType(header); err == nil {
			switch mt {
			case "application/octet-stream", "binary/octet-stream", "application/binary":
			default:
				return mime.FormatMediaType(mt, params)
			}
		}
	}
	ext := strings.ToLower(path.Ext(urlPath))
	if t, ok := knownType[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); ext != "" && t != "" {
		return t
	}
	return "application/octet-stream"
}
