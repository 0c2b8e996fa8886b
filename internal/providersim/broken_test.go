package providersim_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/media"

	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
)

// inspectOutput downloads an output over HTTP and inspects it as the
// archive would, returning the report and the HTTP status.
func inspectOutput(t *testing.T, u string) (media.Report, int) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	in := media.New(resp.Header.Get("Content-Type"), resp.ContentLength)
	if _, err := io.Copy(io.Discard, io.TeeReader(resp.Body, in)); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	return in.Report(), resp.StatusCode
}

// TestOutputBroken checks each broken output over real HTTP: served
// with a 200 and a whole transfer, and flagged by the media check with
// its code; without the knob, the same outputs pass.
func TestOutputBroken(t *testing.T) {
	t.Parallel()
	expect := media.Expect{Audio: true}
	for _, c := range []struct {
		broken string
		files  map[string]media.Code // file -> code ("" passes)
	}{
		{"", map[string]media.Code{"video.mp4": "", "story.wav": "", "board.png": ""}},
		{providersim.BrokenTruncated, map[string]media.Code{"video.mp4": media.CodeTruncated, "story.wav": media.CodeTruncated, "board.png": media.CodeTruncated}},
		{providersim.BrokenHTML, map[string]media.Code{"video.mp4": media.CodeNotMedia, "story.wav": media.CodeNotMedia, "board.png": media.CodeNotMedia}},
		{providersim.BrokenEmpty, map[string]media.Code{"video.mp4": media.CodeEmpty, "story.wav": media.CodeEmpty, "board.png": media.CodeEmpty}},
		{providersim.BrokenNoAudio, map[string]media.Code{"video.mp4": media.CodeMissingAudio, "story.wav": media.CodeMissingAudio, "board.png": ""}},
		{providersim.BrokenDuration, map[string]media.Code{"video.mp4": media.CodeDurationMismatch, "story.wav": media.CodeDurationMismatch, "board.png": ""}},
	} {
		f := newFixture(t, "samsar", providersim.Knobs{OutputBroken: c.broken})
		u := finished(t, f)
		base := u[:strings.LastIndex(u, "/")+1]
		for file, code := range c.files {
			r, status := inspectOutput(t, base+file)
			e := expect
			if file == "board.png" {
				e = media.Expect{}
			}
			if c.broken == providersim.BrokenDuration && file != "board.png" {
				e.Duration = 10 * time.Second // what the fixture's Samsar task asked for
			}
			err := r.Check(e)
			var ve *media.ValidationError
			if status != 200 || code == "" && err != nil || code != "" && (!errors.As(err, &ve) || ve.Code != code) {
				t.Errorf("output_broken %q, %s: HTTP %d, %v; want %q", c.broken, file, status, err, code)
			}
		}
	}
	if err := all.Simulator(nil, 1).SetKnobs("samsar", providersim.Knobs{OutputBroken: "garbled"}); err == nil {
		t.Error("an unknown output_broken value was accepted")
	}
}

// TestOutputDuration checks how long outputs last: a Samsar video the
// duration its task asked for (10 s), OutputDuration's when set (a
// wrong duration for the job), and the MP4 stays a valid file whose
// audio track is the clip's.
func TestOutputDuration(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		knob     time.Duration
		video    time.Duration
		wav      time.Duration
		mismatch bool // against the 10 s the Samsar job asked for
	}{
		{0, 10 * time.Second, 10 * time.Second, false},
		{3 * time.Second, 3 * time.Second, 3 * time.Second, true},
	} {
		f := newFixture(t, "samsar", providersim.Knobs{OutputDuration: providersim.Duration(c.knob)})
		u := finished(t, f)
		r, _ := inspectOutput(t, u)
		if r.Duration != c.video || !r.Complete || r.Malformed != "" || len(r.Audio) != 1 || len(r.Video) != 1 || r.Video[0].Duration != c.video {
			t.Errorf("output_duration %v: video %+v; want %v", c.knob, r, c.video)
		}
		err := r.Check(media.Expect{Duration: 10 * time.Second, Audio: true})
		var ve *media.ValidationError
		if c.mismatch != (errors.As(err, &ve) && ve.Code == media.CodeDurationMismatch) || !c.mismatch && err != nil {
			t.Errorf("output_duration %v: %v", c.knob, err)
		}
		w, _ := inspectOutput(t, u[:strings.LastIndex(u, "/")+1]+"story.wav")
		if w.Duration != c.wav {
			t.Errorf("output_duration %v: WAV lasts %v, want %v", c.knob, w.Duration, c.wav)
		}
	}
}
