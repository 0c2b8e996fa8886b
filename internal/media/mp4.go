package media

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// MP4 and QuickTime (ISO base media files) are a sequence of boxes, each
// a 32-bit big-endian size (1: a 64-bit size follows; 0: the box runs to
// the end of the file) and a four-letter type. The walker descends into
// the boxes that describe the movie (moov, trak, mdia, minf, stbl, mvex,
// and moof/traf for fragmented files) and reads the first bytes of the
// few leaves it needs; everything else, mdat above all, is passed over
// unread. A moov after its mdat (a file written without "faststart") is
// read when it arrives: meanwhile only the open boxes' offsets are kept.

const (
	maxBoxDepth = 8
	maxTracks   = 64
)

// mp4Containers are the boxes the walker descends into.
var mp4Containers = map[string]bool{"moov": true, "trak": true, "mdia": true, "minf": true, "stbl": true,
	"mvex": true, "moof": true, "traf": true}

// mp4Leaves are the boxes the walker reads, with how many bytes of their
// body it needs (trun: its sample entries, as many as fit a step).
var mp4Leaves = map[string]int{"ftyp": 4, "mvhd": 32, "mehd": 12, "tkhd": 96, "mdhd": 32, "hdlr": 12,
	"stsd": 44, "stsz": 12, "stz2": 12, "trex": 16, "tfhd": 24, "tfdt": 12, "trun": maxWant}

// mp4Box is an open box: its type and where it starts and ends (end -1:
// at the end of the file).
type mp4Box struct {
	typ        string
	start, end int64
}

// mp4Track is a trak as far as it was read.
type mp4Track struct {
	Track
	id        uint32
	handler   string
	timescale uint64
	samples   int64  // stsz's count, -1 before it is read
	fragEnd   uint64 // the latest fragment's end, in timescale ticks
}

type mp4 struct {
	s      stepper
	kind   Kind
	state  int
	stack  []mp4Box                          // open containers, outermost first
	cur    mp4Box                            // the box whose header was read last
	frag   struct{ track, dur, base uint64 } // the traf being read
	trex   map[uint64]uint64                 // track ID -> default sample duration
	moov   bool
	mdat   bool
	moof   bool
	scale  uint64 // mvhd's timescale
	dur    uint64 // mvhd's duration (mehd's when mvhd has none)
	tracks []mp4Track
	bad    string
}

const (
	mp4Header = iota
	mp4Large
	mp4Leaf
	mp4ToEnd
)

func newMP4(k Kind) *mp4 {
	m := &mp4{kind: k}
	m.s.w = m
	m.s.want(8)
	return m
}

func (m *mp4) feed(p []byte) { m.s.feed(p) }

func (m *mp4) steps() *stepper { return &m.s }

func (m *mp4) got(b []byte) {
	switch m.state {
	case mp4Header:
		start := m.s.pos - 8
		typ := string(b[4:8])
		switch size := int64(binary.BigEndian.Uint32(b)); size {
		case 1:
			m.cur, m.state = mp4Box{typ: typ, start: start}, mp4Large
			m.s.want(8)
		case 0:
			m.open(mp4Box{typ, start, -1}, 8)
		default:
			m.open(mp4Box{typ, start, start + size}, 8)
		}
	case mp4Large:
		size := binary.BigEndian.Uint64(b)
		if size > 1<<62 {
			m.fail("the %s box at offset %d declares %d bytes", m.cur.typ, m.cur.start, size)
			return
		}
		m.open(mp4Box{m.cur.typ, m.cur.start, m.cur.start + int64(size)}, 16)
	case mp4Leaf:
		m.leaf(b)
		m.s.pass(m.cur.end - m.s.pos)
		m.next(m.cur.end)
	}
}

// open handles a box whose header (hl bytes) was read.
func (m *mp4) open(bx mp4Box, hl int64) {
	m.cur = bx
	body := bx.start + hl
	switch {
	case !boxType(bx.typ):
		m.fail("no box type at offset %d (%q)", bx.start, bx.typ)
		return
	case bx.end >= 0 && bx.end < body:
		m.fail("the %s box at offset %d declares %d bytes, less than its header", bx.typ, bx.start, bx.end-bx.start)
		return
	}
	if n := len(m.stack); n > 0 {
		p := m.stack[n-1]
		if p.end >= 0 && (bx.end < 0 || bx.end > p.end) {
			m.fail("the %s box at offset %d overruns the %s box it is in (which ends at %d)", bx.typ, bx.start, p.typ, p.end)
			return
		}
	}
	switch bx.typ {
	case "moov":
		m.moov = true
	case "mdat":
		m.mdat = true
	case "moof":
		m.moof = true
	}
	switch {
	case mp4Containers[bx.typ]:
		m.enter(bx, body)
	case bx.end < 0:
		m.state = mp4ToEnd
		m.s.passAll()
	case mp4Leaves[bx.typ] > 0 && bx.end > body:
		m.state = mp4Leaf
		m.s.want(int(min(int64(mp4Leaves[bx.typ]), bx.end-body)))
	default:
		m.s.pass(bx.end - body)
		m.next(bx.end)
	}
}

// enter opens a container box whose body starts at body.
func (m *mp4) enter(bx mp4Box, body int64) {
	if len(m.stack) == maxBoxDepth {
		m.fail("boxes nest deeper than %d at offset %d", maxBoxDepth, bx.start)
		return
	}
	if bx.typ == "trak" {
		if len(m.tracks) == maxTracks {
			m.fail("more than %d tracks", maxTracks)
			return
		}
		m.tracks = append(m.tracks, mp4Track{samples: -1})
	}
	m.stack = append(m.stack, bx)
	m.next(body)
}

// next closes the containers that end at offset at and asks for the next
// box header. Fewer than 8 bytes left in a container are padding
// (QuickTime ends some atoms with four zero bytes).
func (m *mp4) next(at int64) {
	for len(m.stack) > 0 {
		top := m.stack[len(m.stack)-1]
		if top.end < 0 || top.end-at >= 8 {
			break
		}
		m.s.pass(top.end - at)
		at = max(at, top.end)
		m.stack = m.stack[:len(m.stack)-1]
	}
	m.state = mp4Header
	m.s.want(8)
}

func (m *mp4) fail(format string, args ...any) {
	m.bad = fmt.Sprintf(format, args...)
	m.s.stop()
}

// boxType reports whether t looks like a box type: four printable
// characters (or QuickTime's ©).
func boxType(t string) bool {
	for i := range len(t) {
		if c := t[i]; (c < 0x20 || c > 0x7e) && c != 0xa9 {
			return false
		}
	}
	return true
}

// track is the trak being read, or nil outside one.
func (m *mp4) track() *mp4Track {
	for _, bx := range m.stack {
		if bx.typ == "trak" && len(m.tracks) > 0 {
			return &m.tracks[len(m.tracks)-1]
		}
	}
	return nil
}

// trackByID is the track with a tkhd track ID, or nil.
func (m *mp4) trackByID(id uint64) *mp4Track {
	for i := range m.tracks {
		if uint64(m.tracks[i].id) == id {
			return &m.tracks[i]
		}
	}
	return nil
}

func (m *mp4) end(r *Report) {
	r.Kind = m.kind
	if m.bad != "" {
		r.Malformed = m.bad
		return
	}
	if cut := m.cutAt(r.Bytes); cut != "" {
		r.Complete, r.Cut = false, cut
	}
	for _, t := range m.tracks {
		t.Empty = t.samples == 0 && !m.moof
		switch t.handler {
		case "vide":
			r.Video = append(r.Video, t.Track)
		case "soun":
			r.Audio = append(r.Audio, t.Track)
		}
		if t.fragEnd > 0 {
			r.Duration = max(r.Duration, span(t.fragEnd, t.timescale))
		}
	}
	if d := span(m.dur, m.scale); d > 0 {
		r.Duration = d
	}
	if !r.Complete {
		return
	}
	switch {
	case !m.moov:
		r.Malformed = "no moov box (the movie header)"
	case len(r.Video)+len(r.Audio) == 0:
		r.Malformed = "the moov box describes no audio or video track"
	case !m.mdat:
		r.Malformed = "no mdat box (the media data)"
	}
}

// cutAt says where a file of n bytes fell short of its boxes, or "".
func (m *mp4) cutAt(n int64) string {
	switch {
	case m.state == mp4ToEnd:
		return ""
	case m.state == mp4Large:
		return fmt.Sprintf("the file ends inside the header of the %s box at offset %d", m.cur.typ, m.cur.start)
	case m.state == mp4Header && len(m.s.buf) > 0:
		return fmt.Sprintf("the file ends inside the box header at offset %d", m.s.pos)
	case !m.s.clean():
		return fmt.Sprintf("the %s box at offset %d declares %d bytes; the file ends after %d", m.cur.typ, m.cur.start, m.cur.end-m.cur.start, n-m.cur.start)
	}
	for _, bx := range m.stack {
		if bx.end > n {
			return fmt.Sprintf("the %s box at offset %d declares %d bytes; the file ends after %d", bx.typ, bx.start, bx.end-bx.start, n-bx.start)
		}
	}
	return ""
}

// mp4Codecs names the sample entry codes that have a short name.
var mp4Codecs = map[string]string{"avc1": "h264", "avc3": "h264", "hvc1": "hevc", "hev1": "hevc", "av01": "av1",
	"vp08": "vp8", "vp09": "vp9", "mp4v": "mpeg4", "mp4a": "aac", "Opus": "opus", "fLaC": "flac", "ac-3": "ac3",
	"ec-3": "eac3", ".mp3": "mp3", "lpcm": "pcm", "sowt": "pcm", "twos": "pcm", "jpeg": "mjpeg", "apch": "prores",
	"apcn": "prores", "apcs": "prores", "apco": "prores", "ap4h": "prores"}

// codecName is the short name of a four-character code.
func codecName(fourcc string) string {
	if c, ok := mp4Codecs[fourcc]; ok {
		return c
	}
	if !boxType(fourcc) {
		return ""
	}
	return strings.TrimSpace(fourcc)
}
