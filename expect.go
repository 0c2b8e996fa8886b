package reelq

import (
	"fmt"
	"math"
	"mime"
	"strings"
)

// Expect is what a job's outputs must be as media. The worker inspects
// each output while it archives it (or, with archiving off, while it
// downloads and discards it) and checks it against the provider's
// expectation for the output (its folder's Spec: the content type, the
// duration the input asked for, ...) with the fields set here replacing
// the provider's. A failed check gives the output a ValidationError, and
// the run what the provider's P_OUTPUT_POLICY says (fail by default).
//
// Expect is not part of the job's identity (its digest and content id).
type Expect struct {
	// Types lists the media types allowed, exactly ("video/mp4") or by
	// class ("video/*"); "application/json" admits JSON. Compared with
	// what the bytes are, not what the server declared.
	Types []string `json:"types,omitempty"`
	// Duration is the playing time wanted, in seconds; 0 turns off the
	// provider's duration check.
	Duration *float64 `json:"duration,omitempty"`
	// Tolerance is how far from Duration the output may be, in seconds
	// (unset: 10% of Duration, at least half a second).
	Tolerance *float64 `json:"tolerance,omitempty"`
	// Audio requires (true) or stops requiring (false) an audio track
	// that holds samples.
	Audio *bool `json:"audio,omitempty"`
	// MinBytes is the smallest output accepted, in bytes.
	MinBytes int64 `json:"min_bytes,omitempty"`
}

// MaxExpectDuration bounds Expect.Duration and Expect.Tolerance (seconds).
const MaxExpectDuration = 24 * 3600

// check says what is wrong with e, naming the field.
func (e *Expect) check(bad *problems) {
	if e == nil {
		return
	}
	if len(e.Types) > 16 {
		bad.addf("expect.types lists %d types; at most 16", len(e.Types))
	}
	for i, t := range e.Types {
		mt, _, err := mime.ParseMediaType(t)
		if err != nil || !strings.Contains(mt, "/") || strings.HasPrefix(mt, "*") {
			bad.addf("expect.types[%d] %q is not a media type (e.g. video/mp4 or video/*)", i, t)
		}
	}
	seconds := func(field string, v *float64) {
		if v != nil && (math.IsNaN(*v) || *v < 0 || *v > MaxExpectDuration) {
			bad.addf("expect.%s %g must be between 0 and %d seconds", field, *v, MaxExpectDuration)
		}
	}
	seconds("duration", e.Duration)
	seconds("tolerance", e.Tolerance)
	if e.MinBytes < 0 {
		bad.addf("expect.min_bytes %d must not be negative", e.MinBytes)
	}
}

// ValidationError says why an output failed its media check: a stable
// Code (one of the Validation* constants) and words.
type ValidationError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Codes of ValidationError.
const (
	ValidationEmpty            = "empty"             // no bytes, or fewer than Expect.MinBytes
	ValidationTruncated        = "truncated"         // fewer bytes than a declared size says
	ValidationNotMedia         = "not_media"         // an HTML page, JSON, unknown or malformed bytes
	ValidationWrongType        = "wrong_type"        // media, but not of an expected type
	ValidationMissingAudio     = "missing_audio"     // no audio track, or an empty one, when audio was expected
	ValidationDurationMismatch = "duration_mismatch" // not within the tolerance of the duration expected
)

// MediaInfo is what an output's bytes turned out to be.
type MediaInfo struct {
	// Type is the media type the bytes show ("video/mp4", "text/html").
	Type string `json:"type"`
	// Duration is the playing time in seconds, where the format has one.
	Duration float64 `json:"duration,omitempty"`
	Width    int     `json:"width,omitempty"`
	Height   int     `json:"height,omitempty"`
	// Video and Audio are the tracks' codecs ("h264", "aac").
	Video []string `json:"video,omitempty"`
	Audio []string `json:"audio,omitempty"`
	// Bytes is how many bytes arrived; Complete whether every declared
	// size matched them.
	Bytes    int64 `json:"bytes"`
	Complete bool  `json:"complete"`
}

func (v *ValidationError) String() string { return fmt.Sprintf("%s: %s", v.Code, v.Message) }
