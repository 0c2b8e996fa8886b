package media

import (
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"
)

// Code names what is wrong with an output; the codes are stable.
type Code string

// The validation codes.
const (
	// CodeEmpty: no bytes, or fewer than Expect.MinBytes.
	CodeEmpty Code = "empty"
	// CodeTruncated: fewer bytes arrived than a declared size says.
	CodeTruncated Code = "truncated"
	// CodeNotMedia: not a media file (an HTML page, JSON, unknown bytes)
	// or one that breaks its format's rules.
	CodeNotMedia Code = "not_media"
	// CodeWrongType: media, but not of a type Expect.Types allows.
	CodeWrongType Code = "wrong_type"
	// CodeMissingAudio: Expect.Audio, and no audio track or an empty one.
	CodeMissingAudio Code = "missing_audio"
	// CodeDurationMismatch: the duration is not within the tolerance of
	// Expect.Duration, or cannot be read.
	CodeDurationMismatch Code = "duration_mismatch"
)

// ErrInvalid is what every ValidationError wraps: errors.Is(err,
// media.ErrInvalid) tells a failed check from other errors.
var ErrInvalid = errors.New("invalid output")

// ValidationError is a failed check: a stable code and words saying what
// was wrong.
type ValidationError struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid output (%s): %s", e.Code, e.Message)
}

// Unwrap returns ErrInvalid.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Expect is what an output should be. The zero Expect accepts any
// complete audio, video or image file.
type Expect struct {
	// Types lists the media types allowed, exactly ("video/mp4") or by
	// class ("video/*"); parameters are ignored. The type compared is the
	// one the bytes show (Report.Type), not the one the server declared.
	// "application/json" admits JSON. Empty: any audio, video or image.
	Types []string `json:"types,omitempty"`
	// Duration, when positive, is the playing time asked for; Tolerance
	// how far from it the output may be (0: 10% of Duration, at least
	// half a second).
	Duration  time.Duration `json:"duration,omitempty"`
	Tolerance time.Duration `json:"tolerance,omitempty"`
	// Audio requires an audio track that holds samples.
	Audio bool `json:"audio,omitempty"`
	// MinBytes is the smallest size accepted.
	MinBytes int64 `json:"min_bytes,omitempty"`
}

// Check holds the report against e and returns nil or a
// *ValidationError for the first thing wrong, in this order: empty,
// truncated, not media, wrong type, too small, missing audio, duration.
func (r Report) Check(e Expect) error {
	fail := func(c Code, format string, args ...any) error {
		return &ValidationError{Code: c, Message: fmt.Sprintf(format, args...)}
	}
	served := ""
	if r.DeclaredType != "" {
		served = " (served as " + r.DeclaredType + ")"
	}
	switch {
	case r.Bytes == 0:
		return fail(CodeEmpty, "no bytes arrived%s", served)
	case !r.Complete:
		return fail(CodeTruncated, "%s", r.Cut)
	case r.Kind == JSON && !e.allows("application/json") || r.Kind == HTML || r.Kind == Unknown:
		return fail(CodeNotMedia, "the body is %s, not media%s", describe(r), served)
	case r.Malformed != "":
		return fail(CodeNotMedia, "the %s is malformed: %s", r.Kind, r.Malformed)
	case len(e.Types) > 0 && !e.allows(r.Type):
		return fail(CodeWrongType, "the body is %s, want %s", describe(r), strings.Join(e.Types, " or "))
	case r.Bytes < e.MinBytes:
		return fail(CodeEmpty, "%d bytes arrived, want at least %d", r.Bytes, e.MinBytes)
	}
	if e.Audio {
		if err := r.checkAudio(); err != "" {
			return fail(CodeMissingAudio, "%s", err)
		}
	}
	if e.Duration > 0 {
		tol := e.Tolerance
		if tol <= 0 {
			tol = max(e.Duration/10, time.Second/2)
		}
		switch {
		case r.Duration == 0:
			return fail(CodeDurationMismatch, "the %s declares no duration, want %v ± %v", r.Kind, e.Duration, tol)
		case r.Duration < e.Duration-tol || r.Duration > e.Duration+tol:
			return fail(CodeDurationMismatch, "the duration is %v, want %v ± %v", r.Duration.Round(time.Millisecond), e.Duration, tol)
		}
	}
	return nil
}

// checkAudio says why the report has no audio worth the name, or "".
func (r Report) checkAudio() string {
	if len(r.Audio) == 0 {
		if len(r.Video) > 0 {
			return fmt.Sprintf("the %s has a video track (%s) and no audio track", r.Kind, r.Video[0].Codec)
		}
		return fmt.Sprintf("the %s has no audio track", r.Kind)
	}
	for _, a := range r.Audio {
		if !a.Empty {
			return ""
		}
	}
	return fmt.Sprintf("the %s's audio track (%s) holds no samples", r.Kind, r.Audio[0].Codec)
}

// allows reports whether media type t is one of e.Types.
func (e Expect) allows(t string) bool {
	t, _, _ = mime.ParseMediaType(t)
	for _, want := range e.Types {
		w, _, _ := mime.ParseMediaType(want)
		if w == t || strings.HasSuffix(w, "/*") && strings.HasPrefix(t, strings.TrimSuffix(w, "*")) {
			return true
		}
	}
	return false
}

// describe words what the bytes are.
func describe(r Report) string {
	switch r.Kind {
	case HTML:
		return "an HTML page"
	case JSON:
		return "a JSON document"
	case Unknown:
		return "not a known format (" + r.Type + ")"
	}
	return "a " + r.Type + " file"
}
