package media

import (
	"bytes"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/webp"
)

// Images (PNG, JPEG, GIF, WebP): the first imageKeep bytes are kept and
// their size read with DecodeConfig (the standard library's decoders and
// golang.org/x/image/webp). An image is complete when a PNG's chunks end
// with IEND, a JPEG ends with its end-of-image marker (FF D9), a GIF with
// its trailer (3B), or a WebP's RIFF size matches what arrived.

const imageKeep = 256 << 10

var imageConfig = map[Kind]func(io.Reader) (image.Config, error){
	PNG: png.DecodeConfig, JPEG: jpeg.DecodeConfig, GIF: gif.DecodeConfig, WebP: webp.DecodeConfig}

type picture struct {
	kind    Kind
	head    []byte
	tail    [2]byte // the last two bytes
	s       stepper // PNG: the chunks; WebP: the RIFF header
	state   int
	chunk   string
	at      int64 // the chunk's offset
	size    int64 // its length, with type and CRC
	iend    bool
	riffEnd int64
	bad     string
}

const (
	pngSignature = iota
	pngChunk
	webpHeader
)

func newImage(k Kind) *picture {
	p := &picture{kind: k}
	p.s.w = p
	switch k {
	case PNG:
		p.s.want(8)
	case WebP:
		p.state = webpHeader
		p.s.want(12)
	}
	return p
}

func (p *picture) feed(b []byte) {
	if k := min(len(b), imageKeep-len(p.head)); k > 0 {
		p.head = append(p.head, b[:k]...)
	}
	if len(b) >= 2 {
		copy(p.tail[:], b[len(b)-2:])
	} else {
		p.tail = [2]byte{p.tail[1], b[0]}
	}
	p.s.feed(b)
}

func (p *picture) got(b []byte) {
	switch p.state {
	case pngSignature:
		p.state = pngChunk
		p.s.want(8)
	case pngChunk:
		p.at, p.chunk = p.s.pos-8, string(b[4:8])
		n := be.Uint32(b)
		if n > 1<<31-1 || !boxType(p.chunk) {
			p.fail("no PNG chunk at offset %d", p.at)
			return
		}
		p.size = int64(n) + 12
		p.s.pass(int64(n) + 4)
		if p.chunk == "IEND" {
			p.iend = true // what follows IEND is not looked at
			return
		}
		p.s.want(8)
	case webpHeader:
		p.riffEnd = 8 + int64(le.Uint32(b[4:]))
		p.riffEnd += p.riffEnd & 1
	}
}

func (p *picture) fail(format string, args ...any) {
	p.bad = fmt.Sprintf(format, args...)
	p.s.stop()
}

func (p *picture) end(r *Report) {
	r.Kind = p.kind
	if p.bad != "" {
		r.Malformed = p.bad
		return
	}
	if cut := p.cutAt(r.Bytes); cut != "" {
		r.Complete, r.Cut = false, cut
	}
	cfg, err := imageConfig[p.kind](bytes.NewReader(p.head))
	switch {
	case err == nil:
		r.Width, r.Height = cfg.Width, cfg.Height
	case len(p.head) == imageKeep:
		r.Malformed = fmt.Sprintf("no image size in the first %d KiB: %v", imageKeep>>10, err)
	case r.Complete:
		r.Malformed = fmt.Sprintf("the %s header cannot be read: %v", p.kind, err)
	}
}

// cutAt says where an image of n bytes fell short, or "".
func (p *picture) cutAt(n int64) string {
	switch p.kind {
	case PNG:
		switch {
		case p.state == pngSignature:
			return "the file ends inside the PNG signature"
		case !p.s.clean():
			return fmt.Sprintf("the %s chunk at offset %d declares %d bytes; the file ends after %d", p.chunk, p.at, p.size, n-p.at)
		case !p.iend:
			return "the PNG has no IEND chunk"
		}
	case JPEG:
		if p.tail != [2]byte{0xff, 0xd9} {
			return "the JPEG does not end with its end-of-image marker"
		}
	case GIF:
		if p.tail[1] != 0x3b {
			return "the GIF does not end with its trailer"
		}
	case WebP:
		if p.riffEnd > n || p.riffEnd == 0 {
			return fmt.Sprintf("the RIFF header declares %d bytes; the file ends after %d", p.riffEnd, n)
		}
	}
	return ""
}
