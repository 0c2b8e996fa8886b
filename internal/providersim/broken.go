package providersim

import (
	"bytes"
	"fmt"
	"io"
	"slices"
)

// Broken outputs, the values of Knobs.OutputBroken: each is served with
// a 200, the kinds of "successful" output a check of the media must
// catch.
const (
	// BrokenTruncated serves the first 60% of the file, with a
	// Content-Length that matches: the transfer is whole, the file is not.
	BrokenTruncated = "truncated"
	// BrokenHTML serves an HTML error page under the file's Content-Type.
	BrokenHTML = "html"
	// BrokenEmpty serves no bytes.
	BrokenEmpty = "empty"
	// BrokenNoAudio serves the MP4 without its audio track, and a WAV
	// with no samples (a PNG is served as it is).
	BrokenNoAudio = "no_audio"
	// BrokenDuration serves MP4 and WAV outputs twice as long as their
	// task asked for, plus a second (OutputDuration, when set, wins).
	BrokenDuration = "wrong_duration"
)

// brokenKinds are the values OutputBroken accepts ("" is none).
var brokenKinds = []string{"", BrokenTruncated, BrokenHTML, BrokenEmpty, BrokenNoAudio, BrokenDuration}

// checkBroken says whether v is a value OutputBroken accepts.
func checkBroken(v string) error {
	if !slices.Contains(brokenKinds, v) {
		return fmt.Errorf("output_broken %q: want one of %q", v, brokenKinds[1:])
	}
	return nil
}

// errorPage is what BrokenHTML serves: a gateway's error page.
const errorPage = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n" +
	"<body><h1>502 Bad Gateway</h1><p>The upstream server returned an invalid response.</p></body></html>\n"

// broken returns the file as kind breaks it (BrokenNoAudio and
// BrokenDuration are applied when the file is chosen).
func (m outputFile) broken(kind string) outputFile {
	switch kind {
	case BrokenTruncated:
		m.size = m.size * 3 / 5
		m.body = io.LimitReader(m.body, m.size)
	case BrokenHTML:
		m.size, m.body = int64(len(errorPage)), bytes.NewReader([]byte(errorPage))
	case BrokenEmpty:
		m.size, m.body = 0, bytes.NewReader(nil)
	}
	return m
}
