package providersim

import (
	"bytes"
	"encoding/binary"
	"time"
)

// stretched returns a copy of an embedded MP4 clip whose video lasts d:
// the clip's frames are spread over d (their sample durations scaled)
// and the movie, track, media and edit durations say so. An audio track
// is left as it is: its second of tone plays at the start. The file stays
// valid and plays; it only handles what the embedded clips hold
// (version-0 boxes, one edit per track, no composition offsets) and
// returns the clip unchanged otherwise.
func stretched(clip []byte, d time.Duration) []byte {
	var bx clipBoxes
	bx.find(clip, 0, len(clip))
	if bx.mvhd == 0 || bx.odd || d <= 0 {
		return clip
	}
	b := bytes.Clone(clip)
	be := binary.BigEndian
	movieScale := uint64(be.Uint32(b[bx.mvhd+12:]))
	var movieDur uint64
	for _, t := range bx.traks {
		if t.tkhd == 0 || t.mdhd == 0 || t.stts == 0 {
			return clip
		}
		trackDur := uint64(be.Uint32(b[t.tkhd+20:]))
		if t.handler == "vide" && t.elst != 0 {
			scale := uint64(be.Uint32(b[t.mdhd+12:]))
			n := int(be.Uint32(b[t.stts+4:]))
			var cur uint64
			for i := range n {
				cur += uint64(be.Uint32(b[t.stts+8+8*i:])) * uint64(be.Uint32(b[t.stts+12+8*i:]))
			}
			want := uint64(d) * scale / uint64(time.Second)
			var sum uint64
			for i := range n {
				count, delta := uint64(be.Uint32(b[t.stts+8+8*i:])), uint64(be.Uint32(b[t.stts+12+8*i:]))
				delta = (delta*want + cur/2) / cur
				be.PutUint32(b[t.stts+12+8*i:], uint32(delta))
				sum += count * delta
			}
			trackDur = sum * movieScale / scale
			be.PutUint32(b[t.mdhd+16:], uint32(sum))
			be.PutUint32(b[t.tkhd+20:], uint32(trackDur))
			be.PutUint32(b[t.elst+8:], uint32(trackDur))
		}
		movieDur = max(movieDur, trackDur)
	}
	be.PutUint32(b[bx.mvhd+16:], uint32(movieDur))
	return b
}

// clipBoxes are the body offsets of the boxes stretched changes.
type clipBoxes struct {
	mvhd  int
	traks []trakBoxes
	odd   bool
}

type trakBoxes struct {
	tkhd, elst, mdhd, stts int
	handler                string
}

// clipBoxSizes are the smallest sizes of the boxes stretched reads.
var clipBoxSizes = map[string]int{"mvhd": 28, "tkhd": 32, "elst": 28, "mdhd": 28, "hdlr": 20, "stts": 16}

// find walks the boxes of b[off:end], descending into the containers.
func (bx *clipBoxes) find(b []byte, off, end int) {
	for off+8 <= end {
		size, typ, body := int(binary.BigEndian.Uint32(b[off:])), string(b[off+4:off+8]), off+8
		if size < 8 || off+size > end {
			return
		}
		if least, ok := clipBoxSizes[typ]; ok && (size < least || b[body] != 0 ||
			typ == "stts" && size < 16+8*int(binary.BigEndian.Uint32(b[body+4:]))) {
			bx.odd = true // a version-1 or short box: not handled
			return
		}
		t := &trakBoxes{}
		if n := len(bx.traks); n > 0 {
			t = &bx.traks[n-1]
		}
		switch typ {
		case "moov", "mdia", "minf", "stbl", "edts":
			bx.find(b, body, off+size)
		case "trak":
			bx.traks = append(bx.traks, trakBoxes{})
			bx.find(b, body, off+size)
		case "mvhd":
			bx.mvhd = body
		case "tkhd":
			t.tkhd = body
		case "elst":
			t.elst = body
		case "mdhd":
			t.mdhd = body
		case "stts":
			t.stts = body
		case "hdlr":
			t.handler = string(b[body+8 : body+12])
		}
		off += size
	}
}
