package media

import (
	"bytes"
	"net/http"
	"strings"
)

// sniff picks the format from the first bytes of a file (all of it when
// shorter than sniffLen): by signature for media, then JSON by its first
// character, then net/http's content sniffing for HTML and the rest.
func sniff(b []byte) format {
	has := func(off int, sig string) bool { return len(b) >= off+len(sig) && string(b[off:off+len(sig)]) == sig }
	switch {
	case has(4, "ftyp"):
		return newMP4(MP4)
	case quickTime(b):
		return newMP4(MOV)
	case has(0, "\x1a\x45\xdf\xa3"):
		return newEBML()
	case has(0, "RIFF") && has(8, "WAVE"):
		return newWAV()
	case has(0, "RIFF") && has(8, "WEBP"):
		return newImage(WebP)
	case has(0, "fLaC"):
		return newFLAC()
	case has(0, "OggS"):
		return newOgg()
	case has(0, "ID3") || len(b) >= 4 && mpegHeader(b).valid():
		return newMP3()
	case has(0, "\x89PNG\r\n\x1a\n"):
		return newImage(PNG)
	case has(0, "\xff\xd8\xff"):
		return newImage(JPEG)
	case has(0, "GIF87a") || has(0, "GIF89a"):
		return newImage(GIF)
	}
	if len(b) == 0 {
		return &opaque{kind: Unknown}
	}
	t := bytes.TrimLeft(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), " \t\r\n")
	if len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return newJSON()
	}
	ct := http.DetectContentType(b)
	if strings.HasPrefix(ct, "text/html") {
		return &opaque{kind: HTML, typ: "text/html"}
	}
	return &opaque{kind: Unknown, typ: ct}
}

// quickTime reports whether b starts with a QuickTime atom that may open
// a movie without an ftyp box, with a size that fits a header.
func quickTime(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	switch string(b[4:8]) {
	case "moov", "mdat", "wide", "free", "skip", "pnot":
		size := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		return size == 1 || size >= 8
	}
	return false
}

// opaque is a file with no structure to walk (HTML, unknown bytes): only
// the Content-Length tells whether it is complete.
type opaque struct {
	kind Kind
	typ  string
}

func (o *opaque) feed([]byte) {}

func (o *opaque) end(r *Report) {
	r.Kind, r.Type = o.kind, o.typ
}
