package media

import "fmt"

// MP3 is a sequence of MPEG audio frames, each a 4-byte header (sync,
// version, layer, bitrate, sample rate, padding) that gives the frame's
// length, possibly after ID3v2 tags and followed by ID3v1 or APE tags.
// The walker reads every frame header and passes over the frame; the
// duration is the frames' samples over the sample rate (a first frame
// holding a Xing, Info or VBRI header is not audio). The file is complete
// when it ends at a frame or tag boundary. After the first frame, bytes
// that are neither a frame like it nor a known tag end the walk; before
// it, up to 64 KiB of them are searched for one.

const mp3Hunt = 64 << 10

// mpegFrame is what a frame header says.
type mpegFrame struct {
	version, layer     byte // as coded: version 3 is MPEG-1, 2 MPEG-2, 0 MPEG-2.5; layer 1 is III
	rate, size, frames int  // sample rate, frame length in bytes, samples in the frame
	channels           int
}

var mpegKbps = [2][3][15]int{
	{ // MPEG-1 layers I, II, III
		{0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448},
		{0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384},
		{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320},
	},
	{ // MPEG-2 and 2.5
		{0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256},
		{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
		{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
	},
}

// mpegHeader parses a frame header; the zero mpegFrame means b is none.
func mpegHeader(b []byte) mpegFrame {
	if len(b) < 4 || b[0] != 0xff || b[1]&0xe0 != 0xe0 {
		return mpegFrame{}
	}
	ver, layer, kbi, ri := b[1]>>3&3, b[1]>>1&3, b[2]>>4, b[2]>>2&3
	if ver == 1 || layer == 0 || kbi == 0 || kbi == 15 || ri == 3 || b[3]&3 == 2 {
		return mpegFrame{}
	}
	v2 := 0
	if ver != 3 {
		v2 = 1
	}
	f := mpegFrame{version: ver, layer: layer, rate: [3]int{44100, 48000, 32000}[ri] >> map[byte]int{3: 0, 2: 1, 0: 2}[ver], channels: 2}
	bps := mpegKbps[v2][3-layer][kbi] * 1000
	pad := int(b[2] >> 1 & 1)
	switch {
	case layer == 3: // layer I
		f.frames, f.size = 384, (12*bps/f.rate+pad)*4
	case layer == 1 && v2 == 1: // layer III, MPEG-2 and 2.5
		f.frames, f.size = 576, 72*bps/f.rate+pad
	default:
		f.frames, f.size = 1152, 144*bps/f.rate+pad
	}
	if b[3]>>6 == 3 {
		f.channels = 1
	}
	return f
}

func (f mpegFrame) valid() bool { return f.size > 4 }

// like reports whether g belongs to the same stream as f.
func (f mpegFrame) like(g mpegFrame) bool {
	return g.valid() && g.version == f.version && g.layer == f.layer && g.rate == f.rate
}

type mp3 struct {
	s        stepper
	state    int
	first    mpegFrame
	frames   int64 // audio frames
	declared int64 // the frames a Xing, Info or VBRI header counts (0: none)
	what     string
	at       int64 // where the frame or tag being read starts
	size     int64 // its declared length
	win      [4]byte
	hunted   int
	trailer  bool // the walk ended at bytes that are no frame
	bad      string
}

const (
	mp3Sync = iota
	mp3ID3
	mp3APE
	mp3First
	mp3Hunting
)

func newMP3() *mp3 {
	m := &mp3{}
	m.s.w = m
	m.s.want(4)
	return m
}

func (m *mp3) feed(p []byte) { m.s.feed(p) }

func (m *mp3) steps() *stepper { return &m.s }

func (m *mp3) got(b []byte) {
	switch m.state {
	case mp3Sync:
		m.at = m.s.pos - 4
		m.sync(b)
	case mp3Hunting:
		copy(m.win[:], m.win[1:])
		m.win[3] = b[0]
		m.hunted++
		m.at = m.s.pos - 4
		m.sync(m.win[:])
	case mp3ID3: // the rest of a 10-byte ID3v2 header: revision, flags, synchsafe size
		m.size = int64(b[2]&0x7f)<<21 | int64(b[3]&0x7f)<<14 | int64(b[4]&0x7f)<<7 | int64(b[5]&0x7f)
		if b[1]&0x10 != 0 {
			m.size += 10 // a footer
		}
		m.next(m.size)
	case mp3APE: // the rest of a 32-byte APE tag header or footer
		if string(b[:4]) != "AGEX" {
			m.stop()
			return
		}
		m.size = 0
		if le.Uint32(b[16:])&(1<<29) != 0 { // a header: the items and footer follow
			m.size = int64(le.Uint32(b[8:]))
		}
		m.next(m.size)
	case mp3First:
		m.xing(b)
		m.next(m.size - 4 - int64(len(b)))
	}
}

// sync handles the 4 bytes at m.at: a frame header, or a tag's start.
func (m *mp3) sync(b []byte) {
	f := mpegHeader(b)
	started := m.first.valid()
	switch {
	case !started && f.valid():
		m.first, m.what, m.size = f, "MPEG frame", int64(f.size)
		m.frames = 1
		m.state = mp3First
		m.s.want(min(f.size-4, 50))
	case started && m.first.like(f):
		m.frames++
		m.what, m.size = "MPEG frame", int64(f.size)
		m.next(m.size - 4)
	case string(b[:3]) == "ID3":
		m.what, m.state = "ID3v2 tag", mp3ID3
		m.s.want(6)
	case string(b[:3]) == "TAG" && started:
		m.what, m.size = "ID3v1 tag", 128
		m.next(124)
	case string(b) == "APET" && started:
		m.what, m.state = "APE tag", mp3APE
		m.s.want(28)
	case !started && m.hunted < mp3Hunt:
		if m.state != mp3Hunting {
			copy(m.win[:], b)
			m.state = mp3Hunting
		}
		m.s.want(1)
	case !started:
		m.fail("no MPEG audio frame in the first %d KiB", mp3Hunt>>10)
	default:
		m.stop()
	}
}

// xing reads the start of the first frame's body: a Xing or Info header
// (after the side information) or a VBRI header (at 32) makes the frame
// a tag, not audio.
func (m *mp3) xing(b []byte) {
	side := map[bool]int{true: 32, false: 17}[m.first.channels == 2]
	if m.first.version != 3 {
		side = map[bool]int{true: 17, false: 9}[m.first.channels == 2]
	}
	tag := func(off int, s string) bool { return len(b) >= off+4 && string(b[off:off+4]) == s }
	switch {
	case tag(side, "Xing") || tag(side, "Info"): // flags, then frames (flag 1) and bytes (flag 2)
		m.frames = 0
		if len(b) >= side+12 && be.Uint32(b[side+4:])&1 != 0 {
			m.declared = int64(be.Uint32(b[side+8:]))
		}
	case tag(32, "VBRI"): // version, delay, quality, bytes, frames
		m.frames = 0
		if len(b) >= 50 {
			m.declared = int64(be.Uint32(b[46:]))
		}
	}
}

// next passes n bytes of what is being read and asks for the next header.
func (m *mp3) next(n int64) {
	m.s.pass(n)
	m.state = mp3Sync
	m.s.want(4)
}

// stop ends the walk at bytes that are neither a frame nor a tag.
func (m *mp3) stop() {
	m.trailer = true
	m.s.stop()
}

func (m *mp3) fail(format string, args ...any) {
	m.bad = fmt.Sprintf(format, args...)
	m.s.stop()
}

func (m *mp3) end(r *Report) {
	r.Kind = MP3
	if m.bad != "" {
		r.Malformed = m.bad
		return
	}
	switch {
	case m.trailer:
	case m.state != mp3Sync && m.state != mp3Hunting || !m.s.clean():
		r.Complete = false
		r.Cut = fmt.Sprintf("the %s at offset %d declares %d bytes; the file ends after %d", m.what, m.at, m.size, r.Bytes-m.at)
		if m.state == mp3ID3 || m.state == mp3APE {
			r.Cut = fmt.Sprintf("the file ends inside the %s header at offset %d", m.what, m.at)
		}
	case len(m.s.buf) > 0:
		r.Complete, r.Cut = false, fmt.Sprintf("the file ends inside a frame header at offset %d", m.s.pos)
	}
	if r.Complete && m.frames < m.declared {
		r.Complete, r.Cut = false, fmt.Sprintf("the first frame's header counts %d frames; %d arrived", m.declared, m.frames)
	}
	if !m.first.valid() {
		if r.Complete {
			r.Malformed = "no MPEG audio frame"
		}
		return
	}
	t := Track{Codec: map[byte]string{1: "mp3", 2: "mp2", 3: "mp1"}[m.first.layer], SampleRate: m.first.rate, Channels: m.first.channels}
	t.Duration, t.Empty = span(uint64(m.frames)*uint64(m.first.frames), uint64(m.first.rate)), m.frames == 0
	r.Audio, r.Duration = []Track{t}, t.Duration
}
