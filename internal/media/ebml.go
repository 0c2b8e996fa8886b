package media

import (
	"fmt"
	"math/bits"
)

// Matroska and WebM are EBML documents: elements, each an ID and a size
// written as variable-length integers, then the body. The walker
// descends into the elements that describe the file (EBML header,
// Segment, Info, Tracks, TrackEntry, Video, Audio) and those that hold
// the blocks (Cluster, BlockGroup), reads the few fields it needs and the
// first bytes of each block (its track and timestamp), and passes over
// the rest. A Segment or Cluster may have an unknown size (a live
// recording): it then ends where an element that cannot be inside it
// begins, or at the end of the file.

// Element IDs the walker knows.
const (
	ebmlHeader      = 0x1A45DFA3
	ebmlDocType     = 0x4282
	mkvSegment      = 0x18538067
	mkvSeekHead     = 0x114D9B74
	mkvInfo         = 0x1549A966
	mkvTimestampSc  = 0x2AD7B1
	mkvDuration     = 0x4489
	mkvTracks       = 0x1654AE6B
	mkvTrackEntry   = 0xAE
	mkvTrackNumber  = 0xD7
	mkvTrackType    = 0x83
	mkvCodecID      = 0x86
	mkvDefaultDur   = 0x23E383
	mkvVideo        = 0xE0
	mkvPixelWidth   = 0xB0
	mkvPixelHeight  = 0xBA
	mkvAudio        = 0xE1
	mkvSampling     = 0xB5
	mkvChannels     = 0x9F
	mkvCluster      = 0x1F43B675
	mkvTimestamp    = 0xE7
	mkvSimpleBlock  = 0xA3
	mkvBlockGroup   = 0xA0
	mkvBlock        = 0xA1
	mkvBlockDur     = 0x9B
	mkvCues         = 0x1C53BB6B
	mkvChapters     = 0x1043A770
	mkvTags         = 0x1254C367
	mkvAttachments  = 0x1941A469
	maxElementDepth = 8
)

// ebmlKeep says what the walker does with element id: walks into it
// (-1), reads that many bytes of it, or passes over it (0). A switch, not
// a map: it runs for every block.
func ebmlKeep(id uint32) int {
	switch id {
	case ebmlHeader, mkvSegment, mkvInfo, mkvTracks, mkvTrackEntry, mkvVideo, mkvAudio, mkvCluster, mkvBlockGroup:
		return -1
	case mkvSimpleBlock, mkvBlock: // the track number and timestamp
		return 12
	case ebmlDocType:
		return 16
	case mkvCodecID:
		return 32
	case mkvTimestampSc, mkvDuration, mkvTrackNumber, mkvTrackType, mkvDefaultDur, mkvPixelWidth, mkvPixelHeight,
		mkvSampling, mkvChannels, mkvTimestamp, mkvBlockDur:
		return 8
	}
	return 0
}

// mkvTopLevel reports whether id is one of the Segment's children: one
// of them ends a Cluster of unknown size.
func mkvTopLevel(id uint32) bool {
	switch id {
	case mkvSeekHead, mkvInfo, mkvTracks, mkvCluster, mkvCues, mkvChapters, mkvTags, mkvAttachments:
		return true
	}
	return false
}

// ebmlNames names elements in messages.
var ebmlNames = map[uint32]string{ebmlHeader: "EBML", mkvSegment: "Segment", mkvInfo: "Info", mkvTracks: "Tracks",
	mkvTrackEntry: "TrackEntry", mkvCluster: "Cluster", mkvSimpleBlock: "SimpleBlock", mkvBlockGroup: "BlockGroup",
	mkvBlock: "Block", mkvCues: "Cues", mkvSeekHead: "SeekHead", mkvTags: "Tags"}

func ebmlName(id uint32) string {
	if n, ok := ebmlNames[id]; ok {
		return n
	}
	return fmt.Sprintf("0x%X", id)
}

// ebmlElem is an open element (end -1: unknown size).
type ebmlElem struct {
	id         uint32
	start, end int64
}

// mkvTrack is a TrackEntry as far as it was read.
type mkvTrack struct {
	Track
	number, typ, defDur uint64
	blocks              int64
}

type ebml struct {
	s        stepper
	state    int
	stack    []ebmlElem
	cur      ebmlElem
	hdrStart int64
	id       uint32
	size     uint64
	sizeLen  int
	docType  string
	segment  bool
	tracked  bool // a Tracks element was seen
	cluster  bool
	scale    uint64  // nanoseconds per tick
	duration float64 // Info's Duration, in ticks (0: none)
	clusterT uint64  // the Cluster's timestamp
	blockT   uint64  // the last block's timestamp
	endNS    uint64  // the latest block end seen, in nanoseconds
	tracks   []mkvTrack
	bad      string
}

const (
	ebmlID = iota
	ebmlIDRest
	ebmlSize
	ebmlSizeRest
	ebmlLeaf
)

func newEBML() *ebml {
	e := &ebml{scale: 1e6}
	e.s.w = e
	e.s.want(1)
	return e
}

func (e *ebml) feed(p []byte) { e.s.feed(p) }

func (e *ebml) steps() *stepper { return &e.s }

func (e *ebml) got(b []byte) {
	switch e.state {
	case ebmlID:
		e.hdrStart = e.s.pos - 1
		n := bits.LeadingZeros8(b[0]) + 1
		if n > 4 {
			e.fail("no element ID at offset %d", e.hdrStart)
			return
		}
		e.id, e.state = uint32(b[0]), ebmlSize
		if n > 1 {
			e.state = ebmlIDRest
			e.s.want(n - 1)
			return
		}
		e.s.want(1)
	case ebmlIDRest:
		for _, c := range b {
			e.id = e.id<<8 | uint32(c)
		}
		e.state = ebmlSize
		e.s.want(1)
	case ebmlSize:
		if b[0] == 0 {
			e.fail("the size of element %s at offset %d is longer than 8 bytes", ebmlName(e.id), e.hdrStart)
			return
		}
		e.sizeLen = bits.LeadingZeros8(b[0]) + 1
		e.size = uint64(b[0] & (0xff >> e.sizeLen))
		if e.sizeLen > 1 {
			e.state = ebmlSizeRest
			e.s.want(e.sizeLen - 1)
			return
		}
		e.element()
	case ebmlSizeRest:
		for _, c := range b {
			e.size = e.size<<8 | uint64(c)
		}
		e.element()
	case ebmlLeaf:
		e.leaf(b)
		e.s.pass(e.cur.end - e.s.pos)
		e.next(e.cur.end)
	}
}

// element handles an element whose header was read.
func (e *ebml) element() {
	id, start, body := e.id, e.hdrStart, e.s.pos
	unknown := e.size == 1<<(7*e.sizeLen)-1
	if !unknown && e.size >= 1<<56 {
		e.fail("element %s at offset %d declares %d bytes", ebmlName(id), start, e.size)
		return
	}
	end := body + int64(e.size)
	if unknown {
		end = -1
	}
	e.cur = ebmlElem{id, start, end}
	for n := len(e.stack); n > 0 && e.stack[n-1].end < 0 && !ebmlInside(id, e.stack[n-1].id); n-- {
		e.stack = e.stack[:n-1] // an element of unknown size ends where one that cannot be in it begins
	}
	if n := len(e.stack); n > 0 && e.stack[n-1].end >= 0 && (end < 0 || end > e.stack[n-1].end) {
		p := e.stack[n-1]
		e.fail("element %s at offset %d overruns the %s it is in (which ends at %d)", ebmlName(id), start, ebmlName(p.id), p.end)
		return
	}
	e.opened(id)
	keep := ebmlKeep(id)
	switch {
	case keep < 0:
		if unknown && id != mkvSegment && id != mkvCluster {
			e.fail("element %s at offset %d has an unknown size", ebmlName(id), start)
			return
		}
		if len(e.stack) == maxElementDepth {
			e.fail("elements nest deeper than %d at offset %d", maxElementDepth, start)
			return
		}
		e.stack = append(e.stack, e.cur)
		e.next(body)
	case unknown:
		e.fail("element %s at offset %d has an unknown size", ebmlName(id), start)
	case keep > 0 && e.size > 0:
		e.state = ebmlLeaf
		e.s.want(int(min(uint64(keep), e.size)))
	default:
		e.s.pass(end - body)
		e.next(end)
	}
}

// ebmlInside reports whether element id may be inside an element parent
// of unknown size (a Segment or a Cluster).
func ebmlInside(id, parent uint32) bool {
	if id == ebmlHeader || id == mkvSegment {
		return false
	}
	return parent != mkvCluster || !mkvTopLevel(id)
}

// opened notes the elements that matter as they begin.
func (e *ebml) opened(id uint32) {
	switch id {
	case mkvSegment:
		e.segment = true
	case mkvTracks:
		e.tracked = true
	case mkvCluster:
		e.cluster, e.clusterT = true, 0
	case mkvTrackEntry:
		if len(e.tracks) < maxTracks {
			e.tracks = append(e.tracks, mkvTrack{})
		}
	}
}

// next closes the sized elements that end at offset at and asks for the
// next element header.
func (e *ebml) next(at int64) {
	for n := len(e.stack); n > 0 && e.stack[n-1].end == at; n-- {
		e.stack = e.stack[:n-1]
	}
	e.state = ebmlID
	e.s.want(1)
}

func (e *ebml) fail(format string, args ...any) {
	e.bad = fmt.Sprintf(format, args...)
	e.s.stop()
}

func (e *ebml) end(r *Report) {
	r.Kind = Matroska
	if e.docType == "webm" {
		r.Kind = WebM
	}
	if e.bad != "" {
		r.Malformed = e.bad
		return
	}
	if cut := e.cutAt(r.Bytes); cut != "" {
		r.Complete, r.Cut = false, cut
	}
	for _, t := range e.tracks {
		t.Empty = t.blocks == 0 && e.cluster
		switch t.typ {
		case 1:
			r.Video = append(r.Video, t.Track)
		case 2:
			r.Audio = append(r.Audio, t.Track)
		}
	}
	r.Duration = nanos(float64(e.endNS))
	if e.duration > 0 {
		r.Duration = nanos(e.duration * float64(e.scale))
	}
	switch {
	case !r.Complete:
	case !e.segment:
		r.Malformed = "no Segment element"
	case !e.tracked:
		r.Malformed = "no Tracks element"
	case !e.cluster:
		r.Malformed = "no Cluster element (the media data)"
	}
}

// cutAt says where a file of n bytes fell short of its elements, or "".
func (e *ebml) cutAt(n int64) string {
	switch {
	case e.state == ebmlIDRest || e.state == ebmlSize || e.state == ebmlSizeRest:
		return fmt.Sprintf("the file ends inside the element header at offset %d", e.hdrStart)
	case !e.s.clean():
		return fmt.Sprintf("element %s at offset %d declares %d bytes; the file ends after %d",
			ebmlName(e.cur.id), e.cur.start, e.cur.end-e.cur.start, n-e.cur.start)
	}
	for _, el := range e.stack {
		if el.end > n {
			return fmt.Sprintf("element %s at offset %d declares %d bytes; the file ends after %d",
				ebmlName(el.id), el.start, el.end-el.start, n-el.start)
		}
	}
	return ""
}
