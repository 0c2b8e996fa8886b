package providersim

import (
	"encoding/binary"
	"io"
	"testing"
)

// A 64-bit free box, for files past 4 GiB, is only built here: serving
// one is too slow for a test.
func TestLargeMP4Header(t *testing.T) {
	t.Parallel()
	m := mp4Media(avMP4, 5<<30)
	hdr := make([]byte, len(avMP4)+16)
	if _, err := io.ReadFull(m.body, hdr); err != nil || m.size != 5<<30 ||
		binary.BigEndian.Uint32(hdr[len(avMP4):]) != 1 || binary.BigEndian.Uint64(hdr[len(avMP4)+8:]) != uint64(5<<30-len(avMP4)) {
		t.Errorf("large MP4 header % x (size %d, %v)", hdr[len(avMP4):], m.size, err)
	}
}
