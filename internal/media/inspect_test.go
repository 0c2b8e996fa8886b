package media

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestValidFiles checks what the Inspector reads from each valid file:
// its kind and type, duration (ffprobe's, within a millisecond), tracks
// and size, and that it passes the zero Expect.
func TestValidFiles(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, c := range []struct {
		file, typ    string
		kind         Kind
		dur          time.Duration
		video, audio string // codecs, comma-separated
		w, h         int
	}{
		{"video.mp4", "video/mp4", MP4, 1000 * ms, "h264", "", 160, 96},
		{"av.mp4", "video/mp4", MP4, 1000 * ms, "h264", "aac", 160, 96},
		{"moovlast.mp4", "video/mp4", MP4, 1000 * ms, "h264", "aac", 160, 96},
		{"frag.mp4", "video/mp4", MP4, 1064 * ms, "h264", "aac", 160, 96},
		{"av.mov", "video/quicktime", MOV, 1000 * ms, "h264", "aac", 160, 96},
		{"av.webm", "video/webm", WebM, 2008 * ms, "vp8", "opus", 160, 96},
		{"live.webm", "video/webm", WebM, 1000 * ms, "vp8", "opus", 160, 96},
		{"av.mkv", "video/x-matroska", Matroska, 1016 * ms, "h264", "vorbis", 160, 96},
		{"tone.mp3", "audio/mpeg", MP3, 1080 * ms, "", "mp3", 0, 0},
		{"tone.ogg", "audio/ogg", Ogg, 1000 * ms, "", "vorbis", 0, 0},
		{"tone.opus", "audio/ogg", Ogg, 1000 * ms, "", "opus", 0, 0},
		{"tone.flac", "audio/flac", FLAC, 1000 * ms, "", "flac", 0, 0},
		{"tone.wav", "audio/wav", WAV, 1000 * ms, "", "pcm", 0, 0},
		{"image.webp", "image/webp", WebP, 0, "", "", 64, 36},
		{"image.png", "image/png", PNG, 0, "", "", 64, 36},
		{"image.jpg", "image/jpeg", JPEG, 0, "", "", 64, 36},
		{"image.gif", "image/gif", GIF, 0, "", "", 64, 36},
	} {
		b := file(t, c.file)
		r := inspect(b, "application/octet-stream", int64(len(b)), 0)
		codecs := func(ts []Track) string {
			var s []string
			for _, t := range ts {
				s = append(s, t.Codec)
			}
			return strings.Join(s, ",")
		}
		d := r.Duration - c.dur
		if r.Kind != c.kind || r.Type != c.typ || d < -ms || d > ms || codecs(r.Video) != c.video || codecs(r.Audio) != c.audio ||
			r.Width != c.w || r.Height != c.h || !r.Complete || r.Malformed != "" || r.Bytes != int64(len(b)) {
			t.Errorf("%s: %+v", c.file, r)
		}
		if err := r.Check(Expect{}); err != nil {
			t.Errorf("%s: %v", c.file, err)
		}
	}
}

// TestWriteSizes checks that how the bytes are split into writes does not
// change the report: every file written a byte at a time, in 7-byte and
// 4 KiB writes, and whole.
func TestWriteSizes(t *testing.T) {
	t.Parallel()
	for _, name := range fixtureNames {
		b := file(t, name)
		want := inspect(b, "", -1, 0)
		for _, chunk := range []int{1, 7, 4096} {
			if got := inspect(b, "", -1, chunk); !reflect.DeepEqual(got, want) {
				t.Errorf("%s in %d-byte writes:\n%+v\nwhole:\n%+v", name, chunk, got, want)
			}
		}
	}
}

// TestEveryPrefixFails cuts each file at every length short of its end
// and checks that, with no Content-Length to go by, the cut is caught:
// the check fails with truncated (or not_media when the cut left a
// well-formed file that lacks a part, such as an MP4 without its moov).
// A live WebM (sizes unknown) cut between two elements and a GIF cut
// after a 0x3B byte look whole; they are left out here.
func TestEveryPrefixFails(t *testing.T) {
	t.Parallel()
	for _, name := range fixtureNames {
		if name == "live.webm" || name == "image.gif" {
			continue
		}
		b := file(t, name)
		if name == "frag.mp4" {
			b = b[:boxAt(t, b, "mfra")] // the random access index at the end is optional: cut before it
		}
		for n := range len(b) {
			err := inspect(b[:n], "", -1, 0).Check(Expect{})
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Code != CodeTruncated && ve.Code != CodeNotMedia && ve.Code != CodeEmpty {
				t.Errorf("%s cut at %d of %d bytes: %v", name, n, len(b), err)
				break
			}
		}
	}
}

// TestBroken checks each kind of broken output gets its code and words
// that say what was wrong.
func TestBroken(t *testing.T) {
	t.Parallel()
	av, moovLast := file(t, "av.mp4"), file(t, "moovlast.mp4")
	mdat, moov := boxAt(t, av, "mdat"), boxAt(t, moovLast, "moov")
	html := []byte("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n")
	for _, c := range []struct {
		name   string
		body   []byte
		ct     string
		cl     int64
		expect Expect
		code   Code
		words  string
	}{
		{"MP4 cut mid-mdat", av[:mdat+500], "video/mp4", -1, Expect{}, CodeTruncated, "the mdat box at offset"},
		{"MP4 cut mid-mdat, short of Content-Length", av[:mdat+500], "video/mp4", int64(len(av)), Expect{}, CodeTruncated,
			fmt.Sprintf("%d of the %d bytes the Content-Length declares arrived", mdat+500, len(av))},
		{"MP4 cut mid-moov (moov after mdat)", moovLast[:moov+300], "video/mp4", -1, Expect{}, CodeTruncated, "the moov box at offset"},
		{"MP4 cut before its moov", moovLast[:moov], "video/mp4", -1, Expect{}, CodeNotMedia, "no moov box"},
		{"HTML page served with 200 as video/mp4", html, "video/mp4", int64(len(html)), Expect{}, CodeNotMedia,
			"the body is an HTML page, not media (served as video/mp4)"},
		{"zero length", nil, "video/mp4", 0, Expect{}, CodeEmpty, "no bytes arrived (served as video/mp4)"},
		{"zero length, Content-Length promised more", nil, "video/mp4", 4096, Expect{}, CodeEmpty, "no bytes arrived"},
		{"wrong duration", av, "video/mp4", -1, Expect{Duration: 8 * time.Second}, CodeDurationMismatch, "the duration is 1s, want 8s ± 800ms"},
		{"video without audio", file(t, "video.mp4"), "video/mp4", -1, Expect{Audio: true}, CodeMissingAudio,
			"the mp4 has a video track (h264) and no audio track"},
		{"audio when video is expected", file(t, "tone.wav"), "audio/wav", -1, Expect{Types: []string{"video/*"}}, CodeWrongType,
			"the body is a audio/wav file, want video/*"},
		{"MP4 without video when video is expected", audioOnly(t, av), "video/mp4", -1, Expect{Types: []string{"video/mp4"}}, CodeWrongType,
			"audio/mp4"},
		{"JSON error body", []byte(`{"error":"quota exceeded"}`), "video/mp4", -1, Expect{}, CodeNotMedia, "a JSON document, not media"},
		{"text", []byte("Internal Server Error\n"), "video/mp4", -1, Expect{}, CodeNotMedia, "not a known format (text/plain; charset=utf-8)"},
		{"too small", file(t, "tone.wav"), "audio/wav", -1, Expect{MinBytes: 1 << 20}, CodeEmpty, "8044 bytes arrived, want at least 1048576"},
		{"WAV without samples", wavFile(8000, 0), "audio/wav", -1, Expect{Audio: true}, CodeMissingAudio, "holds no samples"},
	} {
		err := inspect(c.body, c.ct, c.cl, 0).Check(c.expect)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Code != c.code || !strings.Contains(ve.Message, c.words) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v; want %s: ...%s...", c.name, err, c.code, c.words)
		}
	}
}

// TestTruncatedFormats cuts each valid file at three quarters and checks the
// words say which part of the format fell short.
func TestTruncatedFormats(t *testing.T) {
	t.Parallel()
	for name, words := range map[string]string{
		"av.webm":    "element SimpleBlock at offset 14309 declares 50 bytes; the file ends after 30",
		"av.mkv":     "element SimpleBlock at offset",
		"live.webm":  "element SimpleBlock at offset", // a block's size is known even in a live file
		"tone.wav":   `the "data" chunk at offset 36 declares 8000 bytes; the file ends after`,
		"tone.mp3":   "the MPEG frame at offset",
		"tone.ogg":   "the page at offset",
		"tone.opus":  "the page at offset",
		"tone.flac":  "the last frame (at offset",
		"image.png":  "the IDAT chunk at offset",
		"image.webp": "the RIFF header declares",
		"image.jpg":  "end-of-image marker",
		"frag.mp4":   "box at offset",
	} {
		b := file(t, name)
		err := inspect(b[:len(b)*3/4], "", -1, 0).Check(Expect{})
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Code != CodeTruncated || !strings.Contains(ve.Message, words) {
			t.Errorf("%s cut at 3/4: %v; want truncated: ...%s...", name, err, words)
		}
	}
}

// TestCheck checks how Expect is applied to a valid file.
func TestCheck(t *testing.T) {
	t.Parallel()
	r := inspect(file(t, "av.mp4"), "video/mp4", -1, 0)
	json := inspect([]byte(`{"dialogue":[{"speaker":1,"text":"hi"}]}`), "application/json", -1, 0)
	for _, c := range []struct {
		r    Report
		e    Expect
		pass bool
	}{
		{r, Expect{Types: []string{"video/mp4"}, Audio: true, Duration: time.Second, MinBytes: 1000}, true},
		{r, Expect{Types: []string{"audio/*", "video/*"}}, true},
		{r, Expect{Types: []string{"video/webm"}}, false},
		{r, Expect{Duration: 1500 * time.Millisecond}, true},  // within the default half a second
		{r, Expect{Duration: 1600 * time.Millisecond}, false}, // beyond it
		{r, Expect{Duration: 9 * time.Second}, false},
		{r, Expect{Duration: 2 * time.Second, Tolerance: time.Second}, true},
		{r, Expect{Duration: 1100 * time.Millisecond, Tolerance: 50 * time.Millisecond}, false},
		{json, Expect{Types: []string{"application/json"}}, true},
		{json, Expect{}, false},
		{inspect(file(t, "image.png"), "", -1, 0), Expect{Duration: time.Second}, false}, // no duration to read
	} {
		if err := c.r.Check(c.e); (err == nil) != c.pass {
			t.Errorf("%s with %+v: %v", c.r.Type, c.e, err)
		}
	}
}

// boxAt is the offset of the first top-level MP4 box of type typ.
func boxAt(t testing.TB, b []byte, typ string) int {
	for off := 0; off+8 <= len(b); off += int(be.Uint32(b[off:])) {
		if string(b[off+4:off+8]) == typ {
			return off
		}
	}
	t.Fatalf("no %s box", typ)
	return 0
}

// audioOnly is the MP4 with its video track's handler renamed, so that
// the track is neither video nor audio.
func audioOnly(t *testing.T, b []byte) []byte {
	b = append([]byte(nil), b...)
	i := strings.Index(string(b), "vide")
	if i < 0 {
		t.Fatal("no vide handler")
	}
	copy(b[i:], "meta")
	return b
}

// TestUnknownSizes checks a WebM as a browser's MediaRecorder writes it:
// a Segment and Clusters of unknown size, each Cluster ending where the
// next begins. Twelve of them read as one valid file (not as Clusters
// nested twelve deep), and a cut inside a block is still caught.
func TestUnknownSizes(t *testing.T) {
	t.Parallel()
	live := file(t, "live.webm")
	at := strings.Index(string(live), "\x1f\x43\xb6\x75") // the first Cluster, with a 2-byte size
	size := int(be.Uint16(live[at+4:]) & 0x3fff)
	cluster := append([]byte(nil), live[at:at+6+size]...)
	cluster[4], cluster[5] = 0x7f, 0xff // unknown
	b := append([]byte(nil), live[:at]...)
	for range 12 {
		b = append(b, cluster...)
	}
	r := inspect(b, "video/webm", -1, 0)
	if err := r.Check(Expect{Audio: true, Duration: time.Second}); err != nil || r.Kind != WebM || len(r.Video) != 1 {
		t.Errorf("%+v: %v", r, err)
	}
	var ve *ValidationError
	if err := inspect(b[:len(b)-5], "video/webm", -1, 0).Check(Expect{}); !errors.As(err, &ve) || ve.Code != CodeTruncated {
		t.Errorf("cut inside the last block: %v", err)
	}
}
