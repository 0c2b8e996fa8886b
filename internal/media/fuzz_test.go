package media

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

// Fuzz tests: each walker is run over hostile and truncated input (seeded
// with the valid fixtures, whole and cut) and must not panic or ask for
// more than maxWant bytes at once (want panics), must give the same report
// whether the bytes come in one write or in writes of the fuzzer's size,
// and Check must return nil or a ValidationError with a known code. Run
// one with, for example,
//
//	go test -run '^$' -fuzz '^FuzzMP4$' -fuzztime 3m -parallel 1 ./internal/media/
//
// Crashers found are kept as regression seeds under testdata/fuzz.

func FuzzInspect(f *testing.F) {
	fuzzWalker(f, nil, fixtureNames...)
	f.Add([]byte(`{"dialogue":[{"text":"hi"}]}`), uint8(3))
	f.Add([]byte("<!doctype html><title>502</title>"), uint8(0))
}

func FuzzMP4(f *testing.F) {
	fuzzWalker(f, func() format { return newMP4(MP4) }, "video.mp4", "av.mp4", "moovlast.mp4", "frag.mp4", "av.mov")
}

func FuzzEBML(f *testing.F) {
	fuzzWalker(f, func() format { return newEBML() }, "av.webm", "live.webm", "av.mkv")
}

func FuzzWAV(f *testing.F) {
	fuzzWalker(f, func() format { return newWAV() }, "tone.wav")
}

func FuzzFLAC(f *testing.F) {
	fuzzWalker(f, func() format { return newFLAC() }, "tone.flac")
}

func FuzzMP3(f *testing.F) {
	fuzzWalker(f, func() format { return newMP3() }, "tone.mp3")
}

func FuzzOgg(f *testing.F) {
	fuzzWalker(f, func() format { return newOgg() }, "tone.ogg", "tone.opus")
}

func FuzzImage(f *testing.F) {
	fuzzWalker(f, nil, "image.png", "image.jpg", "image.gif", "image.webp")
}

// fuzzWalker seeds f with the named files, whole and cut at a quarter and
// a half, and fuzzes the walker newFormat makes (nil: the Inspector picks
// one by sniffing).
func fuzzWalker(f *testing.F, newFormat func() format, names ...string) {
	for i, name := range names {
		b := file(f, name)
		f.Add(b, uint8(i))
		f.Add(b[:len(b)/2], uint8(0))
		f.Add(b[:len(b)/4], uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		whole := inspectAs(newFormat, data, 0)
		if split := inspectAs(newFormat, data, int(chunk)+1); !reflect.DeepEqual(split, whole) {
			t.Fatalf("in %d-byte writes:\n%+v\nin one:\n%+v", int(chunk)+1, split, whole)
		}
		codes := []Code{CodeEmpty, CodeTruncated, CodeNotMedia, CodeWrongType, CodeMissingAudio, CodeDurationMismatch}
		for _, e := range []Expect{{}, {Types: []string{"video/*"}, Audio: true, Duration: time.Second, MinBytes: 100}} {
			var ve *ValidationError
			if err := whole.Check(e); err != nil && (!errors.As(err, &ve) || !slices.Contains(codes, ve.Code) || ve.Message == "") {
				t.Fatalf("Check: %v", err)
			}
		}
	})
}

// inspectAs inspects b with the walker newFormat makes, or the one
// sniffing picks when newFormat is nil.
func inspectAs(newFormat func() format, b []byte, chunk int) Report {
	in := New("", -1)
	if newFormat != nil {
		in.use(newFormat())
		in.head = nil
	}
	write(in, b, chunk)
	return in.Report()
}
