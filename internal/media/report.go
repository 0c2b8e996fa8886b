package media

import (
	"math"
	"time"
)

// Kind is the container or file format the bytes turned out to be.
type Kind string

// Kinds an Inspector tells apart.
const (
	Unknown  Kind = "unknown"
	MP4      Kind = "mp4"
	MOV      Kind = "mov"
	WebM     Kind = "webm"
	Matroska Kind = "matroska"
	WAV      Kind = "wav"
	FLAC     Kind = "flac"
	MP3      Kind = "mp3"
	Ogg      Kind = "ogg"
	JSON     Kind = "json"
	PNG      Kind = "png"
	JPEG     Kind = "jpeg"
	GIF      Kind = "gif"
	WebP     Kind = "webp"
	HTML     Kind = "html"
)

// Report is what an Inspector saw.
type Report struct {
	// Kind is the format the bytes are; Type the media type they show
	// ("video/mp4", or "audio/mp4" for an MP4 without a video track,
	// "text/html", "text/plain; charset=utf-8" for unknown text).
	Kind Kind   `json:"kind"`
	Type string `json:"type,omitempty"`
	// DeclaredType and DeclaredLength are what the server said
	// (Content-Type, Content-Length; -1 when it sent none).
	DeclaredType   string `json:"declared_type,omitempty"`
	DeclaredLength int64  `json:"declared_length"`
	// Bytes is how many bytes arrived.
	Bytes int64 `json:"bytes"`
	// Complete is true when every declared size (Content-Length, box,
	// chunk, element, page, frame) matched what arrived; Cut says where
	// it fell short.
	Complete bool   `json:"complete"`
	Cut      string `json:"cut,omitempty"`
	// Malformed says how the bytes break their format's rules ("" if
	// they don't): a box overrunning its parent, no movie header, an
	// invalid JSON document.
	Malformed string `json:"malformed,omitempty"`
	// Duration is the playing time the container declares (0: none or
	// not a timed format).
	Duration time.Duration `json:"duration,omitempty"`
	// Width and Height are the first video track's, or the image's.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// Video and Audio are the tracks, in file order.
	Video []Track `json:"video,omitempty"`
	Audio []Track `json:"audio,omitempty"`
}

// Track is one video or audio track.
type Track struct {
	// Codec is a short name ("h264", "aac", "opus", "vp8", "pcm"), or
	// the container's own code when there is no short name for it.
	Codec string `json:"codec,omitempty"`
	// Duration is the track's own, where the container keeps one.
	Duration   time.Duration `json:"duration,omitempty"`
	Width      int           `json:"width,omitempty"`
	Height     int           `json:"height,omitempty"`
	SampleRate int           `json:"sample_rate,omitempty"`
	Channels   int           `json:"channels,omitempty"`
	// Empty is true when the container says the track holds no samples.
	Empty bool `json:"empty,omitempty"`
}

// mediaType is the media type of a kind, given whether it has video.
func mediaType(k Kind, video bool) string {
	av := func(v, a string) string {
		if video {
			return v
		}
		return a
	}
	switch k {
	case MP4, MOV:
		return av(map[Kind]string{MP4: "video/mp4", MOV: "video/quicktime"}[k], "audio/mp4")
	case WebM:
		return av("video/webm", "audio/webm")
	case Matroska:
		return av("video/x-matroska", "audio/x-matroska")
	case Ogg:
		return av("video/ogg", "audio/ogg")
	}
	return map[Kind]string{WAV: "audio/wav", FLAC: "audio/flac", MP3: "audio/mpeg", JSON: "application/json",
		PNG: "image/png", JPEG: "image/jpeg", GIF: "image/gif", WebP: "image/webp", HTML: "text/html"}[k]
}

// span is n ticks of a clock running at rate ticks per second, or 0 when
// the rate is unknown; it saturates instead of overflowing.
func span(n, rate uint64) time.Duration {
	if rate == 0 {
		return 0
	}
	return nanos(float64(n) / float64(rate) * float64(time.Second))
}

// nanos is f nanoseconds, saturating; 0 when f is not positive (or NaN).
func nanos(f float64) time.Duration {
	switch {
	case !(f > 0):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	}
	return time.Duration(f)
}
