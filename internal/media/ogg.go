package media

import "fmt"

// Ogg is a sequence of pages: "OggS", version 0, flags (beginning and end
// of a stream), a 64-bit granule position, the stream's serial number, a
// page number, a CRC-32, and a segment table whose sum is the page's body
// length. The walker reads the first page of each stream (its codec's
// identification header) and the granule position of every page (the
// last one gives the stream's duration), and passes over the bodies. The
// file is complete when it ends at a page boundary after every stream's
// end-of-stream page. Page CRCs are not checked.

const maxOggStreams = 8

// oggStream is one logical stream.
type oggStream struct {
	Track
	serial  uint32
	video   bool
	audio   bool
	rate    uint64 // granule positions per second (audio)
	preskip uint64
	fps     [2]uint64 // Theora's frame rate, numerator and denominator
	shift   uint      // Theora's keyframe shift in granule positions
	granule uint64
	eos     bool
}

type ogg struct {
	s       stepper
	state   int
	pageAt  int64
	flags   byte
	granule uint64
	serial  uint32
	body    int64
	streams []oggStream
	bad     string
}

const (
	oggPage = iota
	oggSegments
	oggIdent
)

func newOgg() *ogg {
	o := &ogg{}
	o.s.w = o
	o.s.want(27)
	return o
}

func (o *ogg) feed(p []byte) { o.s.feed(p) }

func (o *ogg) steps() *stepper { return &o.s }

func (o *ogg) got(b []byte) {
	switch o.state {
	case oggPage:
		o.pageAt = o.s.pos - 27
		if string(b[:4]) != "OggS" || b[4] != 0 {
			o.fail("no Ogg page at offset %d", o.pageAt)
			return
		}
		o.flags, o.granule, o.serial, o.body = b[5], le.Uint64(b[6:]), le.Uint32(b[14:]), 0
		if b[26] == 0 {
			o.page()
			return
		}
		o.state = oggSegments
		o.s.want(int(b[26]))
	case oggSegments:
		for _, n := range b {
			o.body += int64(n)
		}
		o.page()
	case oggIdent:
		st := &o.streams[len(o.streams)-1]
		st.ident(b)
		o.s.pass(o.body - int64(len(b)))
		o.next()
	}
}

// page handles a page whose header was read.
func (o *ogg) page() {
	if o.flags&2 != 0 { // the first page of a stream
		if o.stream(o.serial) != nil || len(o.streams) == maxOggStreams {
			o.fail("the stream beginning at offset %d repeats a serial number or is one too many", o.pageAt)
			return
		}
		o.streams = append(o.streams, oggStream{serial: o.serial})
	}
	st := o.stream(o.serial)
	if st == nil {
		o.fail("the page at offset %d belongs to stream %d, which never began", o.pageAt, o.serial)
		return
	}
	if o.granule != 1<<64-1 {
		st.granule = o.granule
	}
	st.eos = st.eos || o.flags&4 != 0
	if o.flags&2 != 0 && o.body > 0 {
		o.state = oggIdent
		o.s.want(int(min(o.body, 64)))
		return
	}
	o.s.pass(o.body)
	o.next()
}

func (o *ogg) next() {
	o.state = oggPage
	o.s.want(27)
}

func (o *ogg) stream(serial uint32) *oggStream {
	for i := range o.streams {
		if o.streams[i].serial == serial {
			return &o.streams[i]
		}
	}
	return nil
}

// ident reads a stream's identification header.
func (st *oggStream) ident(b []byte) {
	has := func(sig string, n int) bool { return len(b) >= n && string(b[:len(sig)]) == sig }
	switch {
	case has("\x01vorbis", 16):
		st.audio, st.Codec, st.Channels, st.rate = true, "vorbis", int(b[11]), uint64(le.Uint32(b[12:]))
		st.SampleRate = int(min(st.rate, 1<<24))
	case has("OpusHead", 16): // granule positions count 48 kHz samples, after a pre-skip
		st.audio, st.Codec, st.Channels, st.rate = true, "opus", int(b[9]), 48000
		st.preskip, st.SampleRate = uint64(le.Uint16(b[10:])), 48000
	case has("\x7fFLAC", 35): // then "fLaC", a block header and STREAMINFO
		v := be.Uint64(b[27:])
		st.audio, st.Codec, st.rate, st.Channels = true, "flac", v>>44, int(v>>41&7)+1
		st.SampleRate = int(st.rate)
	case has("\x80theora", 42):
		st.video, st.Codec = true, "theora"
		st.Width, st.Height = int(be.Uint32(b[13:])&0xffffff), int(be.Uint32(b[16:])&0xffffff)
		st.fps = [2]uint64{uint64(be.Uint32(b[22:])), uint64(be.Uint32(b[26:]))}
		st.shift = uint(be.Uint16(b[40:]) >> 5 & 31)
	}
}

// duration is the stream's playing time up to its last granule position.
func (st *oggStream) duration() uint64 {
	if st.video {
		g := st.granule
		return g>>st.shift + g&(1<<st.shift-1)
	}
	return st.granule - min(st.granule, st.preskip)
}

func (o *ogg) fail(format string, args ...any) {
	o.bad = fmt.Sprintf(format, args...)
	o.s.stop()
}

func (o *ogg) end(r *Report) {
	r.Kind = Ogg
	if o.bad != "" {
		r.Malformed = o.bad
		return
	}
	if cut := o.cutAt(r.Bytes); cut != "" {
		r.Complete, r.Cut = false, cut
	}
	for _, st := range o.streams {
		n := st.duration()
		switch {
		case st.video:
			st.Duration = span(n*st.fps[1], st.fps[0])
			r.Video = append(r.Video, st.Track)
		case st.audio:
			st.Duration, st.Empty = span(n, st.rate), n == 0
			r.Audio = append(r.Audio, st.Track)
		default:
			continue
		}
		r.Duration = max(r.Duration, st.Duration)
	}
	if r.Complete && len(r.Video)+len(r.Audio) == 0 {
		r.Malformed = "no audio or video stream"
	}
}

// cutAt says where a file of n bytes fell short of its pages, or "".
func (o *ogg) cutAt(n int64) string {
	switch {
	case o.state == oggSegments:
		return fmt.Sprintf("the file ends inside the page header at offset %d", o.pageAt)
	case o.state == oggPage && len(o.s.buf) > 0:
		return fmt.Sprintf("the file ends inside the page header at offset %d", o.s.pos)
	case !o.s.clean():
		return fmt.Sprintf("the page at offset %d declares %d bytes; the file ends after %d", o.pageAt, o.body, n-o.pageAt)
	}
	for _, st := range o.streams {
		if !st.eos {
			return fmt.Sprintf("stream %d has no end-of-stream page", st.serial)
		}
	}
	return ""
}
