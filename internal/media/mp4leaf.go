package media

import "encoding/binary"

// The MP4 leaf boxes the walker reads (see mp4Leaves), each from the
// start of its body, which may be shorter than asked.

var be = binary.BigEndian

// leaf reads the body start b of the box just opened.
func (m *mp4) leaf(b []byte) {
	switch m.cur.typ {
	case "ftyp":
		if string(b) == "qt  " {
			m.kind = MOV
		}
	case "mvhd":
		m.scale, m.dur = mediaTimes(b)
	case "mehd": // the fragmented movie's duration, in mvhd's timescale
		if m.dur == 0 {
			m.dur = sized(b, 4)
		}
	case "trex":
		if len(b) >= 16 && len(m.trex) < maxTracks {
			if m.trex == nil {
				m.trex = map[uint64]uint64{}
			}
			m.trex[uint64(be.Uint32(b[4:]))] = uint64(be.Uint32(b[12:]))
		}
	case "tfhd", "tfdt", "trun":
		m.fragment(b)
	default:
		if t := m.track(); t != nil {
			m.trackLeaf(t, b)
		}
	}
}

// trackLeaf reads a box of a trak.
func (m *mp4) trackLeaf(t *mp4Track, b []byte) {
	switch m.cur.typ {
	case "tkhd": // track ID, then width and height in 16.16 fixed point
		id, wh := 12, 76
		if len(b) > 0 && b[0] == 1 {
			id, wh = 20, 88
		}
		if len(b) >= id+4 {
			t.id = be.Uint32(b[id:])
		}
		if len(b) >= wh+8 {
			t.Width, t.Height = int(be.Uint32(b[wh:])>>16), int(be.Uint32(b[wh+4:])>>16)
		}
	case "mdhd":
		ts, d := mediaTimes(b)
		t.timescale, t.Duration = ts, span(d, ts)
	case "hdlr": // the media handler, in mdia (QuickTime has a data handler in minf too)
		if len(b) >= 12 && m.stack[len(m.stack)-1].typ == "mdia" {
			t.handler = string(b[8:12])
		}
	case "stsd": // the first sample entry: its code, then the visual or audio fields
		if len(b) >= 16 {
			t.Codec = codecName(string(b[12:16]))
		}
		if len(b) >= 44 && t.handler == "vide" && t.Width == 0 {
			t.Width, t.Height = int(be.Uint16(b[40:])), int(be.Uint16(b[42:]))
		}
		if len(b) >= 44 && t.handler == "soun" { // the channel count here is a template value: not read
			t.SampleRate = int(be.Uint16(b[40:]))
		}
	case "stsz", "stz2":
		if len(b) >= 12 {
			t.samples = int64(be.Uint32(b[8:]))
		}
	}
}

// fragment reads the boxes of a movie fragment's traf: tfhd names the
// track (and may set a default sample duration), tfdt the decode time
// its samples start at, and trun the samples, whose durations end the
// track's timeline so far.
func (m *mp4) fragment(b []byte) {
	f := &m.frag
	switch m.cur.typ {
	case "tfhd":
		if len(b) < 8 {
			return
		}
		flags := be.Uint32(b) & 0xffffff
		f.track, f.base = uint64(be.Uint32(b[4:])), 0
		f.dur = m.trex[f.track]
		if t := m.trackByID(f.track); t != nil {
			f.base = t.fragEnd // a tfdt, if any, says where this fragment starts
		}
		off := 8 // then the optional fields before the default duration
		if flags&1 != 0 {
			off += 8
		}
		if flags&2 != 0 {
			off += 4
		}
		if flags&8 != 0 && len(b) >= off+4 {
			f.dur = uint64(be.Uint32(b[off:]))
		}
	case "tfdt":
		f.base = sized(b, 4)
	case "trun":
		t := m.trackByID(f.track)
		if t == nil || len(b) < 8 {
			return
		}
		f.base += trunTicks(b, f.dur)
		t.fragEnd = max(t.fragEnd, f.base)
	}
}

// trunTicks is the summed duration of a trun's samples: each entry's
// own, or count times the default. Entries past the bytes read count as
// the last one read.
func trunTicks(b []byte, def uint64) uint64 {
	flags, count := be.Uint32(b)&0xffffff, uint64(be.Uint32(b[4:]))
	if flags&0x100 == 0 {
		return count * def
	}
	off := 8
	for _, o := range []uint32{1, 4} {
		if flags&o != 0 {
			off += 4
		}
	}
	size := 0
	for _, o := range []uint32{0x100, 0x200, 0x400, 0x800} {
		if flags&o != 0 {
			size += 4
		}
	}
	var sum, last, n uint64
	for ; n < count && off+4 <= len(b); n++ {
		last = uint64(be.Uint32(b[off:]))
		sum += last
		off += size
	}
	return sum + (count-n)*last
}

// mediaTimes reads an mvhd or mdhd body: its timescale and duration
// (version 0: 32-bit times; 1: 64-bit). An all-ones duration is unknown.
func mediaTimes(b []byte) (scale, dur uint64) {
	switch {
	case len(b) >= 20 && b[0] == 0:
		scale, dur = uint64(be.Uint32(b[12:])), uint64(be.Uint32(b[16:]))
		if dur == 1<<32-1 {
			dur = 0
		}
	case len(b) >= 32 && b[0] == 1:
		scale, dur = uint64(be.Uint32(b[20:])), be.Uint64(b[24:])
		if dur == 1<<64-1 {
			dur = 0
		}
	}
	return scale, dur
}

// sized reads a full box's field at off that is 32 bits wide in version
// 0 and 64 in version 1, or 0.
func sized(b []byte, off int) uint64 {
	switch {
	case len(b) >= off+4 && b[0] == 0:
		return uint64(be.Uint32(b[off:]))
	case len(b) >= off+8 && b[0] == 1:
		return be.Uint64(b[off:])
	}
	return 0
}
