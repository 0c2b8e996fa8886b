package dashboard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/archive"
)

// output streams output n (from 1) of a job's current run from its
// archived copy, with single-range requests (a <video> element seeks
// with them). Only video, audio and raster images are served inline, as
// their own type; anything else is a download (an archived "text/html"
// must never run as this site's page).
func (s *Server) output(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n, err := strconv.Atoi(r.PathValue("n"))
	if !reelq.ValidID(id) || err != nil || n < 1 {
		http.Error(w, "no such output", http.StatusNotFound)
		return
	}
	st, err := s.c.Get(r.Context(), id)
	if errors.Is(err, reelq.ErrNotFound) {
		http.Error(w, "no such job", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, "the job state could not be read", http.StatusBadGateway)
		return
	}
	outs := currentOutputs(st)
	if n > len(outs) || outs[n-1].Archive == nil {
		http.Error(w, "this output has no archived copy", http.StatusNotFound)
		return
	}
	cp := *outs[n-1].Archive
	ct := cp.ContentType
	if ct == "" {
		ct = outs[n-1].ContentType
	}
	h := w.Header()
	if mediaKind(ct) == "file" {
		ct = "application/octet-stream"
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", inspect.OutputFile(id, n, outs[n-1].ContentType)))
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "private, max-age=3600")
	if cp.SHA256 != "" {
		etag := `"` + cp.SHA256 + `"`
		h.Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	start, end, partial, ok := parseRange(r.Header.Get("Range"), cp.Size)
	if !ok {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", cp.Size))
		http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
		return
	}
	if ir := r.Header.Get("If-Range"); ir != "" && ir != h.Get("ETag") {
		start, end, partial = 0, cp.Size-1, false
	}
	length := end - start + 1
	if cp.Size == 0 {
		length = 0
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, cp.Size))
	}
	if r.Method == http.MethodHead {
		if partial {
			w.WriteHeader(http.StatusPartialContent)
		}
		return
	}
	rc, err := s.r.openOutput(r.Context(), cp, start, s.cfg.S3)
	if err != nil {
		s.log.Warn("dashboard: output", "job_id", id, "output", n, "err", err)
		h.Del("Content-Length")
		h.Del("Content-Range")
		http.Error(w, "the archived copy could not be read", http.StatusBadGateway)
		return
	}
	defer rc.Close()
	if partial {
		w.WriteHeader(http.StatusPartialContent)
	}
	if _, err := io.CopyN(w, rc, length); err != nil && r.Context().Err() == nil {
		s.log.Warn("dashboard: output cut short", "job_id", id, "output", n, "err", err)
	}
}

// parseRange reads a single "bytes=" range of a size-byte object; no
// header (or one this server does not do, several ranges) means the whole.
func parseRange(h string, size int64) (start, end int64, partial, ok bool) {
	if size == 0 {
		return 0, -1, false, true
	}
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if h == "" || !found || strings.Contains(spec, ",") {
		return 0, size - 1, false, true
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	var err error
	switch {
	case a == "": // the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false, false
		}
		start, end = max(size-n, 0), size-1
	default:
		if start, err = strconv.ParseInt(a, 10, 64); err != nil || start < 0 || start >= size {
			return 0, 0, false, false
		}
		end = size - 1
		if b != "" {
			e, err := strconv.ParseInt(b, 10, 64)
			if err != nil || e < start {
				return 0, 0, false, false
			}
			end = min(e, size-1)
		}
	}
	return start, end, true, true
}

// openOutput opens an archived output for reading from byte offset on (0:
// from the start). JetStream copies are read over the dashboard's
// connection (an ordered consumer on the object's chunks); the bytes
// before offset are read and dropped, so a seek costs what precedes it.
// s3 is needed for copies in an S3 archive. The reader's total length is
// cp.Size-offset; a read from the start to the end of a JetStream copy
// checks its SHA-256.
func (r *reads) openOutput(ctx context.Context, cp reelq.ArchivedCopy, offset int64, s3 *inspect.S3Options) (io.ReadCloser, error) {
	if offset < 0 || offset > cp.Size {
		return nil, fmt.Errorf("reelq: output %s: offset %d outside its %d bytes", cp.Key, offset, cp.Size)
	}
	conf := archive.Config{Kind: cp.Store, Bucket: cp.Bucket}
	switch cp.Store {
	case archive.KindJetStream:
	case archive.KindS3:
		if s3 == nil {
			return nil, fmt.Errorf("reelq: %s is in an S3 archive: give its endpoint (REELQ_ARCHIVE_S3_ENDPOINT)", cp.Key)
		}
		conf.S3 = archive.S3Config{Endpoint: s3.Endpoint, Region: s3.Region, DisableTLS: s3.DisableTLS, PathStyle: s3.PathStyle}
	default:
		return nil, fmt.Errorf("reelq: unknown archive store %q", cp.Store)
	}
	store, err := archive.NewStore(ctx, conf, r.js)
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
