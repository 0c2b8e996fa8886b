package media

import (
	"encoding/binary"
	"fmt"
)

// WAV is a RIFF file: "RIFF", a 32-bit little-endian size, "WAVE", then
// chunks, each a four-letter ID, a 32-bit little-endian size and the
// body, padded to an even length. The walker reads the fmt chunk, notes
// the data chunk's size and passes over the rest. A RIFF or data size of
// 0 or 0xFFFFFFFF (a stream written before its length was known) runs to
// the end of the file.

var le = binary.LittleEndian

type wav struct {
	s        stepper
	state    int
	riffEnd  int64 // -1: to the end of the file
	chunk    string
	start    int64 // the current chunk's offset
	size     int64 // its size
	chunkEnd int64 // its end, pad byte included (-1: end of file)
	fmt      bool
	data     int64 // the data chunk's size (-1: to the end of the file)
	dataAt   int64
	format   uint16
	rate     uint32
	byteRate uint32
	channels uint16
	bad      string
}

const (
	wavRIFF = iota
	wavChunk
	wavFmt
	wavDone
)

func newWAV() *wav {
	w := &wav{data: -2}
	w.s.w = w
	w.s.want(12)
	return w
}

func (w *wav) feed(p []byte) { w.s.feed(p) }

func (w *wav) steps() *stepper { return &w.s }

func (w *wav) got(b []byte) {
	switch w.state {
	case wavRIFF:
		w.riffEnd = 8 + int64(le.Uint32(b[4:]))
		if size := le.Uint32(b[4:]); size == 0 || size == 1<<32-1 {
			w.riffEnd = -1
		}
		w.next(12)
	case wavChunk:
		w.chunkHeader(b)
	case wavFmt:
		w.fmt, w.format, w.channels = true, le.Uint16(b), le.Uint16(b[2:])
		w.rate, w.byteRate = le.Uint32(b[4:]), le.Uint32(b[8:])
		w.s.pass(w.chunkEnd - w.s.pos)
		w.next(w.chunkEnd)
	}
}

// chunkHeader handles a chunk's ID and size.
func (w *wav) chunkHeader(b []byte) {
	w.chunk, w.start = string(b[:4]), w.s.pos-8
	size := int64(le.Uint32(b[4:]))
	w.size, w.chunkEnd = size, w.s.pos+size+size&1
	if w.chunk == "data" && (size == 0 && w.riffEnd < 0 || size == 1<<32-1) {
		w.chunkEnd, size = -1, -1 // a stream's data: to the end of the file
	}
	switch {
	case !boxType(w.chunk):
		w.fail("no RIFF chunk at offset %d", w.start)
	case w.riffEnd >= 0 && (w.chunkEnd < 0 || w.chunkEnd-size&1 > w.riffEnd):
		w.fail("the %q chunk at offset %d (%d bytes) overruns the RIFF size (%d bytes)", w.chunk, w.start, size, w.riffEnd)
	case w.chunk == "fmt " && size < 16:
		w.fail("the fmt chunk at offset %d has %d bytes, fewer than 16", w.start, size)
	case w.chunk == "fmt ":
		w.state = wavFmt
		w.s.want(16)
	case w.chunk == "data" && size < 0:
		w.data, w.dataAt = -1, w.s.pos
		w.s.passAll()
	default:
		if w.chunk == "data" && w.data == -2 {
			w.data = size
		}
		w.s.pass(w.chunkEnd - w.s.pos)
		w.next(w.chunkEnd)
	}
}

// next asks for the chunk header at offset at, unless the RIFF ends there.
func (w *wav) next(at int64) {
	if w.riffEnd >= 0 && at+8 > w.riffEnd {
		w.state = wavDone // no more wants: what follows the RIFF's chunks is not looked at
		return
	}
	w.state = wavChunk
	w.s.want(8)
}

func (w *wav) fail(format string, args ...any) {
	w.bad = fmt.Sprintf(format, args...)
	w.s.stop()
}

func (w *wav) end(r *Report) {
	r.Kind = WAV
	if w.bad != "" {
		r.Malformed = w.bad
		return
	}
	if cut := w.cutAt(r.Bytes); cut != "" {
		r.Complete, r.Cut = false, cut
	}
	data := w.data
	if data == -1 {
		data = r.Bytes - w.dataAt
	}
	if w.fmt {
		codec := map[uint16]string{1: "pcm", 3: "pcm_float", 6: "alaw", 7: "mulaw", 0xfffe: "pcm"}[w.format]
		t := Track{Codec: codec, SampleRate: int(w.rate), Channels: int(w.channels), Empty: data == 0}
		if data > 0 && w.byteRate > 0 {
			t.Duration = span(uint64(data), uint64(w.byteRate))
		}
		r.Audio, r.Duration = []Track{t}, t.Duration
	}
	switch {
	case !r.Complete:
	case !w.fmt:
		r.Malformed = "no fmt chunk"
	case w.data == -2:
		r.Malformed = "no data chunk"
	case w.byteRate == 0:
		r.Malformed = "the fmt chunk declares 0 bytes per second"
	}
}

// cutAt says where a file of n bytes fell short of its chunks, or "".
func (w *wav) cutAt(n int64) string {
	switch {
	case w.state == wavRIFF:
		return fmt.Sprintf("the file ends inside the RIFF header (%d bytes)", n)
	case w.state == wavChunk && len(w.s.buf) > 0:
		return fmt.Sprintf("the file ends inside the chunk header at offset %d", w.s.pos)
	case w.chunkEnd < 0:
		return ""
	case !w.s.clean() && n < w.chunkEnd-w.size&1: // a missing final pad byte is forgiven
		return fmt.Sprintf("the %q chunk at offset %d declares %d bytes; the file ends after %d", w.chunk, w.start, w.size, n-w.start-8)
	case w.riffEnd > n+w.size&1:
		return fmt.Sprintf("the RIFF header declares %d bytes; the file ends after %d", w.riffEnd, n)
	}
	return ""
}
