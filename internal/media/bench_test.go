package media

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkInspect inspects one large MP4 (1 GiB by default;
// REELQ_MEDIA_BENCH_BYTES changes it), generated while streaming: the
// simulator's av.mp4 with its mdat replaced by one of that size,
// written with the moov first (faststart) or after the mdat
// (moov_last). Each inspect case has a copy case beside it that moves
// the same stream the same way (io.Copy into io.Discard, or into a file)
// without the Inspector: the difference in ns/op is what inspecting
// costs, and B/op is everything the Inspector allocated. Run it with
//
//	go test -run '^$' -bench BenchmarkInspect -benchtime 3x ./internal/media/
func BenchmarkInspect(b *testing.B) {
	size := int64(1 << 30)
	if v := os.Getenv("REELQ_MEDIA_BENCH_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("REELQ_MEDIA_BENCH_BYTES=%q: %v", v, err)
		}
		size = n
	}
	av := fixture(b, "av.mp4")
	mdat := boxAt(b, av, "mdat")
	ftypMoov := av[:mdat] // ftyp, moov (and free), the simulator's file being faststart
	ftyp := ftypMoov[:be.Uint32(ftypMoov)]
	moov := ftypMoov[len(ftyp):]
	dir := b.TempDir()
	for _, c := range []struct {
		name       string
		head, tail []byte
		inspect    bool
		file       bool
	}{
		{"copy/discard", ftypMoov, nil, false, false},
		{"inspect/discard/faststart", ftypMoov, nil, true, false},
		{"inspect/discard/moov_last", ftyp, moov, true, false},
		{"copy/file", ftypMoov, nil, false, true},
		{"inspect/file/faststart", ftypMoov, nil, true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				src := largeMP4(c.head, c.tail, size)
				var in *Inspector
				if c.inspect {
					in = New("video/mp4", size)
					src = io.TeeReader(src, in)
				}
				if n, err := copyTo(dir, c.file, src); err != nil || n != size {
					b.Fatalf("copied %d of %d bytes: %v", n, size, err)
				}
				if in != nil {
					if r := in.Report(); r.Check(Expect{Types: []string{"video/mp4"}, Audio: true, Duration: time.Second}) != nil {
						b.Fatalf("report %+v: %v", r, r.Check(Expect{}))
					}
				}
			}
		})
	}
}

// copyTo copies src into io.Discard, or into a new file in dir.
func copyTo(dir string, file bool, src io.Reader) (int64, error) {
	if !file {
		return io.Copy(io.Discard, src)
	}
	f, err := os.Create(filepath.Join(dir, "out.mp4"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.Copy(f, src)
}

// largeMP4 is an MP4 of size bytes: head (ftyp and moov, or ftyp alone),
// an mdat with a 64-bit size holding a repeated pattern, then tail (the
// moov, or nothing).
func largeMP4(head, tail []byte, size int64) io.Reader {
	fill := size - int64(len(head)+16+len(tail))
	hdr := binary.BigEndian.AppendUint32(nil, 1)
	hdr = append(hdr, "mdat"...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(16+fill))
	// Only Read, so that every case copies through the same 8 KiB reads
	// (io.MultiReader's WriteTo would give the plain copy a shortcut).
	return struct{ io.Reader }{io.MultiReader(bytes.NewReader(head), bytes.NewReader(hdr), &pattern{left: fill}, bytes.NewReader(tail))}
}

// pattern reads left bytes of a repeated 64 KiB block.
type pattern struct {
	left int64
	off  int
}

var patternBlock = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i*31 + 7)
	}
	return b
}()

func (p *pattern) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(int64(len(b)), p.left)], patternBlock[p.off:])
	p.off = (p.off + n) % len(patternBlock)
	p.left -= int64(n)
	return n, nil
}
