package dashboard

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
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
	rc, err := s.i.OpenOutput(r.Context(), cp, start, s.cfg.S3)
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
