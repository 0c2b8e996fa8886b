package media

import (
	"bytes"
	"fmt"
	"math/bits"
)

// FLAC is "fLaC", metadata blocks (a 4-byte header: last-block flag,
// type, 24-bit length), the first of which, STREAMINFO, gives the sample
// rate and the number of samples, then audio frames. Frames carry no
// length, so the walker finds each frame's header (a sync code, a CRC-8,
// and the frame or sample number that follows the previous frame's) and
// keeps a CRC-16 of the bytes since the last one: the file is complete
// when the frames reach STREAMINFO's sample count and the last frame's
// CRC-16 holds. Bytes after the last frame (an ID3v1 tag, say) read as a
// damaged last frame.

// flacHeaderMax is the longest frame header.
const flacHeaderMax = 16

type flac struct {
	s        stepper
	state    int
	frames   bool // the metadata ended: frames follow
	info     bool
	rate     uint64
	channels int
	total    uint64 // samples, from STREAMINFO (0: unknown)
	firstAt  int64  // the first frame's offset
	carry    []byte // bytes whose offsets were not yet checked for a header
	carryAt  int64
	seam     []byte
	n        int64  // frames found
	variable bool   // the frames number samples, not frames
	samples  uint64 // samples in the frames found
	lastAt   int64  // the last frame's offset
	crc      uint16 // CRC-16 from lastAt up to crcTo
	crcTo    int64
	bad      string
}

const (
	flacMagic = iota
	flacBlock
	flacInfo
)

func newFLAC() *flac {
	f := &flac{lastAt: -1}
	f.s.w = f
	f.s.want(4)
	return f
}

func (f *flac) feed(p []byte) {
	rest := f.s.feed(p)
	if f.frames && f.s.stopped() && len(rest) > 0 {
		f.scanFrames(rest, false)
	}
}

func (f *flac) got(b []byte) {
	switch f.state {
	case flacMagic:
		f.state = flacBlock
		f.s.want(4)
	case flacBlock:
		last, typ, size := b[0]&0x80 != 0, b[0]&0x7f, int64(b[1])<<16|int64(b[2])<<8|int64(b[3])
		switch {
		case !f.info && (typ != 0 || size != 34):
			f.fail("the first metadata block is not a 34-byte STREAMINFO (type %d, %d bytes)", typ, size)
			return
		case typ == 127:
			f.fail("invalid metadata block type at offset %d", f.s.pos-4)
			return
		case typ == 0:
			f.state = flacInfo
			f.s.want(34)
		default:
			f.s.pass(size)
			if !last {
				f.s.want(4)
			} // else pass the block, then the frames
		}
		if last {
			f.frames, f.firstAt = true, f.s.pos+size
			f.carryAt, f.crcTo = f.firstAt, f.firstAt
		}
	case flacInfo:
		v := be.Uint64(b[10:])
		f.info, f.rate, f.channels, f.total = true, v>>44, int(v>>41&7)+1, v&(1<<36-1)
		f.state = flacBlock
		if !f.frames {
			f.s.want(4)
		}
	}
}

// scanFrames looks for frame headers in p, the next bytes of the frames;
// at the end of the file (final) it checks what it carried.
func (f *flac) scanFrames(p []byte, final bool) {
	if len(f.carry) > 0 || final {
		f.seam = append(append(f.seam[:0], f.carry...), p[:min(len(p), flacHeaderMax-1)]...)
		upto := len(f.carry)
		if !final {
			upto = min(upto, max(0, len(f.seam)-flacHeaderMax+1))
		}
		f.scan(f.seam, f.carryAt, upto)
		if upto < len(f.carry) || final {
			f.carry = append(f.carry[:0], f.seam[upto:]...)
			f.carryAt += int64(upto)
			return
		}
	}
	at := f.carryAt + int64(len(f.carry))
	upto := max(0, len(p)-flacHeaderMax+1)
	f.scan(p, at, upto)
	f.carry = append(f.carry[:0], p[upto:]...)
	f.carryAt = at + int64(upto)
}

// scan checks the offsets b[:upto] (b starting at offset base) for frame
// headers, and adds the bytes up to each header, then up to upto, to the
// running CRC-16.
func (f *flac) scan(b []byte, base int64, upto int) {
	for i := 0; i < upto; {
		k := bytes.IndexByte(b[i:upto], 0xff)
		if k < 0 {
			break
		}
		i += k
		if at := base + int64(i); f.frameHeader(b[i:], at) {
			f.crc = crc16(f.crc, b[f.crcTo-base:i])
			f.crc, f.crcTo, f.lastAt = 0, at, at
		}
		i++
	}
	f.crc = crc16(f.crc, b[f.crcTo-base:upto])
	f.crcTo = base + int64(upto)
}

// frameHeader reports whether b, at offset at, starts the next frame.
func (f *flac) frameHeader(b []byte, at int64) bool {
	if (f.n == 0) != (at == f.firstAt) {
		return false
	}
	num, block, ok := flacFrameHeader(b)
	variable := len(b) > 1 && b[1]&1 == 1
	if !ok || f.n > 0 && variable != f.variable {
		return false
	}
	if variable && num != f.samples || !variable && num != uint64(f.n) {
		return false
	}
	f.n++
	f.variable = variable
	f.samples += block
	return true
}

// flacFrameHeader parses a frame header: its frame (or sample) number and
// block size, checking its CRC-8.
func flacFrameHeader(b []byte) (num, block uint64, ok bool) {
	if len(b) < 6 || b[0] != 0xff || b[1]&0xfe != 0xf8 || b[2]>>4 == 0 || b[2]&0xf == 0xf ||
		b[3]>>4 > 10 || b[3]>>1&7 == 3 || b[3]&1 != 0 {
		return 0, 0, false
	}
	n := bits.LeadingZeros8(^b[4]) // a UTF-8-style coded number
	if n == 1 || n > 7 {
		return 0, 0, false
	}
	num = uint64(b[4] & (0x7f >> n))
	i := 5
	for ; i < 4+max(n, 1); i++ {
		if i >= len(b) || b[i]&0xc0 != 0x80 {
			return 0, 0, false
		}
		num = num<<6 | uint64(b[i]&0x3f)
	}
	switch c := b[2] >> 4; {
	case c == 1:
		block = 192
	case c <= 5:
		block = 576 << (c - 2)
	case c == 6 && i < len(b):
		block, i = uint64(b[i])+1, i+1
	case c == 7 && i+1 < len(b):
		block, i = uint64(be.Uint16(b[i:]))+1, i+2
	case c >= 8:
		block = 256 << (c - 8)
	}
	switch b[2] & 0xf {
	case 12:
		i++
	case 13, 14:
		i += 2
	}
	if block == 0 || i >= len(b) || crc8(b[:i]) != b[i] {
		return 0, 0, false
	}
	return num, block, true
}

// FLAC's CRCs: CRC-8 (polynomial 0x07) over a frame header, CRC-16
// (0x8005) over a whole frame; both start at 0 and are not reflected, so
// the CRC-16 of a frame with its own CRC at the end is 0.
var crc8Table, crc16Table = func() (t8 [256]uint8, t16 [256]uint16) {
	for i := range 256 {
		c8, c16 := uint8(i), uint16(i)<<8
		for range 8 {
			c8 = c8<<1 ^ uint8(0x07*(c8>>7))
			c16 = c16<<1 ^ 0x8005*(c16>>15)
		}
		t8[i], t16[i] = c8, c16
	}
	return t8, t16
}()

func crc8(b []byte) uint8 {
	var c uint8
	for _, x := range b {
		c = crc8Table[c^x]
	}
	return c
}

func crc16(c uint16, b []byte) uint16 {
	for _, x := range b {
		c = c<<8 ^ crc16Table[byte(c>>8)^x]
	}
	return c
}

func (f *flac) fail(format string, args ...any) {
	f.bad = fmt.Sprintf(format, args...)
	f.s.stop()
	f.frames = false
}

func (f *flac) end(r *Report) {
	r.Kind = FLAC
	if f.bad != "" {
		r.Malformed = f.bad
		return
	}
	if f.frames && f.s.stopped() {
		f.scanFrames(nil, true)
	}
	if cut := f.cutAt(r.Bytes); cut != "" {
		r.Complete, r.Cut = false, cut
	}
	if !f.info {
		return
	}
	samples := f.total
	if samples == 0 {
		samples = f.samples
	}
	t := Track{Codec: "flac", SampleRate: int(min(f.rate, 1<<20)), Channels: f.channels, Empty: samples == 0}
	t.Duration = span(samples, f.rate)
	r.Audio, r.Duration = []Track{t}, t.Duration
}

// cutAt says where a file of n bytes fell short, or "".
func (f *flac) cutAt(n int64) string {
	switch {
	case !f.frames || !f.s.stopped():
		return fmt.Sprintf("the file ends inside the metadata (%d bytes)", n)
	case f.n == 0:
		return "no audio frame after the metadata"
	case f.crc != 0:
		return fmt.Sprintf("the last frame (at offset %d) ends early or is damaged: its CRC-16 does not match", f.lastAt)
	case f.total > 0 && f.samples < f.total:
		return fmt.Sprintf("the frames end at sample %d of the %d STREAMINFO declares", f.samples, f.total)
	}
	return ""
}
