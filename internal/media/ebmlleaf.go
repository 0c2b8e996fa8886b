package media

import (
	"math"
	"math/bits"
	"strings"
)

// The EBML leaf elements the walker reads (see ebmlKeep).

// leaf reads the body start b of the element just opened.
func (e *ebml) leaf(b []byte) {
	u := beUint(b)
	switch e.cur.id {
	case ebmlDocType:
		e.docType = strings.TrimRight(string(b), "\x00")
	case mkvTimestampSc:
		if u > 0 {
			e.scale = u
		}
	case mkvDuration:
		e.duration = beFloat(b)
	case mkvTimestamp:
		e.clusterT = u
	case mkvSimpleBlock, mkvBlock:
		e.block(b)
	case mkvBlockDur:
		e.endNS = max(e.endNS, (e.blockT+u)*e.scale)
	default:
		if t := e.track(); t != nil {
			trackLeaf(t, e.cur.id, b, u)
		}
	}
}

// trackLeaf reads an element of a TrackEntry.
func trackLeaf(t *mkvTrack, id uint32, b []byte, u uint64) {
	switch id {
	case mkvTrackNumber:
		t.number = u
	case mkvTrackType:
		t.typ = u
	case mkvCodecID:
		t.Codec = mkvCodec(strings.TrimRight(string(b), "\x00"))
	case mkvDefaultDur:
		t.defDur = u
	case mkvPixelWidth:
		t.Width = int(min(u, math.MaxInt32))
	case mkvPixelHeight:
		t.Height = int(min(u, math.MaxInt32))
	case mkvSampling:
		if f := beFloat(b); f > 0 && f < math.MaxInt32 {
			t.SampleRate = int(f)
		}
	case mkvChannels:
		t.Channels = int(min(u, math.MaxInt32))
	}
}

// block reads a block's head: its track number (a variable-length
// integer) and its timestamp relative to the Cluster's.
func (e *ebml) block(b []byte) {
	n := bits.LeadingZeros8(b[0]) + 1
	if n > 8 || len(b) < n+2 {
		return
	}
	track := uint64(b[0] & (0xff >> n))
	for _, c := range b[1:n] {
		track = track<<8 | uint64(c)
	}
	rel := int64(int16(be.Uint16(b[n:])))
	e.blockT = uint64(max(int64(e.clusterT)+rel, 0))
	end := e.blockT * e.scale
	for i := range e.tracks {
		if t := &e.tracks[i]; t.number == track {
			t.blocks++
			end += t.defDur
			break
		}
	}
	e.endNS = max(e.endNS, end)
}

// track is the TrackEntry being read, or nil outside one.
func (e *ebml) track() *mkvTrack {
	for _, el := range e.stack {
		if el.id == mkvTrackEntry && len(e.tracks) > 0 {
			return &e.tracks[len(e.tracks)-1]
		}
	}
	return nil
}

// mkvCodecs names the Matroska codec IDs that have a short name.
var mkvCodecs = map[string]string{"V_VP8": "vp8", "V_VP9": "vp9", "V_AV1": "av1", "V_MPEG4/ISO/AVC": "h264",
	"V_MPEGH/ISO/HEVC": "hevc", "V_THEORA": "theora", "A_OPUS": "opus", "A_VORBIS": "vorbis", "A_AAC": "aac",
	"A_FLAC": "flac", "A_MPEG/L3": "mp3", "A_PCM/INT/LIT": "pcm", "A_AC3": "ac3", "A_EAC3": "eac3"}

func mkvCodec(id string) string {
	if c, ok := mkvCodecs[id]; ok {
		return c
	}
	if strings.HasPrefix(id, "A_AAC") {
		return "aac"
	}
	if !boxType(id) {
		return ""
	}
	return id
}

// beUint reads up to 8 bytes as a big-endian unsigned integer.
func beUint(b []byte) uint64 {
	var u uint64
	for _, c := range b[:min(len(b), 8)] {
		u = u<<8 | uint64(c)
	}
	return u
}

// beFloat reads a 4- or 8-byte big-endian float, or 0.
func beFloat(b []byte) float64 {
	switch len(b) {
	case 4:
		return float64(math.Float32frombits(be.Uint32(b)))
	case 8:
		return math.Float64frombits(be.Uint64(b))
	}
	return 0
}
