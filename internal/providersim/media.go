package providersim

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"net/http"
	"path"
	"strconv"
	"time"
)

// Output files. Every output URL the simulator returns points at the
// simulator itself, /outputs/{provider}/{task}/{file}, and serves a small
// valid file chosen by the file's extension:
//
//	.mp4  an H.264 (Constrained Baseline) video, 160x96, 1 s at 10 fps,
//	      with an AAC tone (16 kHz mono), that plays in a browser's
//	      <video> element
//	.wav  8 kHz mono 8-bit PCM audio, a 0.5 s 440 Hz tone
//	.png  a 64x36 gradient
//
// The Output* knobs make links expire, serve slowly, cut off, 404, serve
// a large file (OutputSize bytes, generated while streaming), a longer or
// shorter one (OutputDuration; by default an output lasts the duration
// its task asked for, see Call.SetDuration), or a broken one
// (OutputBroken, see broken.go).

// avMP4 was made once with
//
//	ffmpeg -f lavfi -i testsrc2=size=160x96:rate=10 \
//	  -f lavfi -i sine=frequency=440:sample_rate=16000 -t 1 -c:v libx264 \
//	  -profile:v baseline -level 3.0 -pix_fmt yuv420p -crf 40 -g 10 \
//	  -x264-params no-info=1 -c:a aac -b:a 16k -ac 1 -movflags +faststart \
//	  -map_metadata -1 -fflags +bitexact -flags:v +bitexact \
//	  -flags:a +bitexact av.mp4
//
// (Debian's ffmpeg 5.1).
//
//go:embed media/av.mp4
var avMP4 []byte

// videoMP4, the same video without an audio track (served for
// OutputBroken "no_audio"), was made once with
//
//	ffmpeg -f lavfi -i testsrc2=size=160x96:rate=10 -t 1 -c:v libx264 \
//	  -profile:v baseline -level 3.0 -pix_fmt yuv420p -crf 40 -g 10 \
//	  -movflags +faststart -map_metadata -1 -fflags +bitexact \
//	  -flags:v +bitexact -x264-params no-info=1 video.mp4
//
//go:embed media/video.mp4
var videoMP4 []byte

// Media types of the files the simulator serves.
const (
	TypeMP4 = "video/mp4"
	TypeWAV = "audio/wav"
	TypePNG = "image/png"
)

const (
	wavRate    = 8000
	wavSeconds = 0.5
	wavHeader  = 44
)

var imagePNG = func() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 36))
	for y := range 36 {
		for x := range 64 {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 7), 160, 255})
		}
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}()

// outputFile is one output file: its type, total size and a reader of its bytes.
type outputFile struct {
	contentType string
	size        int64
	body        io.Reader
}

// mediaFor returns the file served for name as the knobs k shape it; d,
// when positive, is how long the task asked its output to last.
func mediaFor(name string, k Knobs, d time.Duration) (outputFile, bool) {
	switch {
	case k.OutputDuration > 0:
		d = time.Duration(k.OutputDuration)
	case k.OutputBroken == BrokenDuration:
		d = 2*d + time.Second
	}
	noAudio := k.OutputBroken == BrokenNoAudio
	var m outputFile
	switch path.Ext(name) {
	case ".mp4":
		clip := avMP4
		if noAudio {
			clip = videoMP4
		}
		m = mp4Media(stretched(clip, d), k.OutputSize)
	case ".wav":
		m = wavMedia(k.OutputSize, d, noAudio)
	case ".png":
		m = outputFile{TypePNG, int64(len(imagePNG)), bytes.NewReader(imagePNG)}
	default:
		return outputFile{}, false
	}
	return m.broken(k.OutputBroken), true
}

// mp4Media is an MP4 clip followed, when size asks for more, by one
// top-level "free" box of generated filler (players skip it), so the
// file stays valid at any size.
func mp4Media(clip []byte, size int64) outputFile {
	n := int64(len(clip))
	if size < n+8 {
		return outputFile{TypeMP4, n, bytes.NewReader(clip)}
	}
	var hdr []byte
	if size-n <= math.MaxUint32 {
		hdr = binary.BigEndian.AppendUint32(nil, uint32(size-n))
		hdr = append(hdr, "free"...)
	} else {
		hdr = binary.BigEndian.AppendUint32(nil, 1) // 64-bit size follows
		hdr = append(hdr, "free"...)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(size-n))
	}
	fill := size - n - int64(len(hdr))
	return outputFile{TypeMP4, size, io.MultiReader(bytes.NewReader(clip), bytes.NewReader(hdr), io.LimitReader(filler{}, fill))}
}

// wavMedia is a RIFF WAVE file of 8-bit PCM: a tone of wavSeconds, or
// of d if positive, or of as many samples as make size bytes; no samples
// at all if silent.
func wavMedia(size int64, d time.Duration, silent bool) outputFile {
	data := int64(wavRate * wavSeconds)
	if d > 0 {
		data = int64(d.Seconds() * wavRate)
	}
	if size > wavHeader+data {
		data = size - wavHeader
	}
	if silent {
		data = 0
	}
	riff := uint32(min(36+data, math.MaxUint32))
	h := make([]byte, 0, wavHeader)
	h = append(h, "RIFF"...)
	h = binary.LittleEndian.AppendUint32(h, riff)
	h = append(h, "WAVEfmt "...)
	h = binary.LittleEndian.AppendUint32(h, 16)      // fmt chunk size
	h = binary.LittleEndian.AppendUint16(h, 1)       // PCM
	h = binary.LittleEndian.AppendUint16(h, 1)       // mono
	h = binary.LittleEndian.AppendUint32(h, wavRate) // sample rate
	h = binary.LittleEndian.AppendUint32(h, wavRate) // byte rate
	h = binary.LittleEndian.AppendUint16(h, 1)       // block align
	h = binary.LittleEndian.AppendUint16(h, 8)       // bits per sample
	h = append(h, "data"...)
	h = binary.LittleEndian.AppendUint32(h, uint32(min(data, math.MaxUint32)))
	return outputFile{TypeWAV, wavHeader + data, io.MultiReader(bytes.NewReader(h), io.LimitReader(&tone{}, data))}
}

// toneTable is one second of a 440 Hz sine as 8-bit unsigned samples; a
// whole number of periods, so it repeats seamlessly.
var toneTable = func() []byte {
	b := make([]byte, wavRate)
	for i := range b {
		b[i] = uint8(128 + 64*math.Sin(2*math.Pi*440*float64(i)/wavRate))
	}
	return b
}()

// tone generates the sine endlessly.
type tone struct{ i int }

func (t *tone) Read(p []byte) (int, error) {
	for k := range p {
		p[k] = toneTable[t.i]
		t.i = (t.i + 1) % len(toneTable)
	}
	return len(p), nil
}

// filler generates an endless, cheap byte pattern.
type filler struct{}

func (filler) Read(p []byte) (int, error) {
	for k := range p {
		p[k] = byte(k*31 + 7)
	}
	return len(p), nil
}

// OutputURL is the URL the simulator hands out for a task's output file,
// or the OutputURL knob when set.
func (c *Call) OutputURL(r *http.Request, t *Task, file string) string {
	if u := c.s.Knobs(c.p.name).OutputURL; u != "" {
		return u
	}
	return BaseURL(r) + "/outputs/" + c.p.name + "/" + t.ID + "/" + file
}

// serveOutput serves GET and HEAD /outputs/{provider}/{task}/{file}. It
// needs no key (output links are signed or public) and does not count
// toward the API's requests or rate limit.
func (s *Server) serveOutput(w http.ResponseWriter, r *http.Request) {
	name, id, file := r.PathValue("provider"), r.PathValue("task"), r.PathValue("file")
	s.mu.Lock()
	p, ok := s.provs[name]
	var t *Task
	if ok {
		t = p.tasks[id]
	}
	var k Knobs
	if ok {
		k = p.knobs
	}
	var asked time.Duration
	if t != nil {
		asked = t.duration
	}
	now := s.now()
	s.mu.Unlock()
	m, known := mediaFor(file, k, asked)
	switch {
	case !ok:
		http.NotFound(w, r)
		return
	case k.OutputNotFound || t == nil || !known || t.Fail || t.cancelled || now.Before(t.DoneAt):
		s.download(p, "", http.StatusNotFound, 0)
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	case k.OutputTTL > 0 && !now.Before(t.DoneAt.Add(time.Duration(k.OutputTTL))):
		st := p.expired()
		s.download(p, "", st, 0)
		if st == http.StatusForbidden {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(st)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>`)
			return
		}
		http.Error(w, "Not Found", st)
		return
	}
	w.Header().Set("Content-Type", m.contentType)
	w.Header().Set("Content-Length", strconv.FormatInt(m.size, 10))
	w.Header().Set("Cache-Control", "private, max-age=3600")
	if r.Method == http.MethodHead {
		s.download(p, "", http.StatusOK, 0)
		return
	}
	w.WriteHeader(http.StatusOK)
	s.mu.Lock()
	p.dlActive++
	s.mu.Unlock()
	n, err := stream(w, r, m.body, k.OutputRate, k.OutputCutAfter)
	s.mu.Lock()
	p.dlActive--
	s.mu.Unlock()
	key := r.URL.Path
	switch {
	case errors.Is(err, errCut):
		s.download(p, key, -1, n)
		// Abort the response: the connection closes short of Content-Length.
		panic(http.ErrAbortHandler)
	case err != nil:
		s.download(p, key, 499, n) // the client went away
	default:
		s.download(p, key, http.StatusOK, n)
	}
}

// download records one output request: status -1 means cut short on
// purpose, 499 that the client went away.
func (s *Server) download(p *provider, key string, status int, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	label := strconv.Itoa(status)
	switch status {
	case -1:
		label = "cut"
	case 499:
		label = "aborted"
	}
	p.dlReqs[label]++
	if key != "" {
		p.downloads[key]++
	}
	p.dlBytes += n
}

var errCut = errors.New("providersim: output cut short on purpose")

// stream copies body to w, at rate bytes per second if rate > 0, and
// stops with errCut after cut bytes if cut > 0. Nothing is buffered
// beyond one chunk.
func stream(w http.ResponseWriter, r *http.Request, body io.Reader, rate, cut int64) (int64, error) {
	chunk := int64(32 << 10)
	if rate > 0 {
		chunk = max(1, min(chunk, rate/20)) // about 20 writes a second
	}
	buf := make([]byte, chunk)
	fl, _ := w.(http.Flusher)
	start := time.Now()
	var n int64
	for {
		want := chunk
		if cut > 0 {
			want = min(want, cut-n)
		}
		m, rerr := io.ReadFull(body, buf[:want])
		if m > 0 {
			if _, err := w.Write(buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		if cut > 0 && n >= cut {
			if fl != nil {
				fl.Flush()
			}
			return n, errCut
		}
		if rerr != nil {
			return n, nil // io.EOF or io.ErrUnexpectedEOF: the file is complete
		}
		if rate > 0 {
			if fl != nil {
				fl.Flush()
			}
			due := start.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-r.Context().Done():
					t.Stop()
					return n, r.Context().Err()
				}
			}
		}
	}
}
