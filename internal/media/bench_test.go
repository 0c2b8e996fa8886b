package media

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkInspect inspects one large output (1 GiB by default;
// REELQ_MEDIA_BENCH_BYTES changes it), generated while streaming:
//
//   - mp4: the simulator's av.mp4 with its mdat replaced by one of that
//     size, the moov first (faststart) or after the mdat (moov_last);
//   - webm: live.webm's header (a Segment of unknown size) and its
//     clusters repeated to that size: a block every 150 bytes or so, the
//     walker's worst case among the video formats.
//
// Each inspect case has a copy case that moves the same stream the same
// way (io.Copy into io.Discard, or into a file) without the Inspector:
// the difference in ns/op is what inspecting costs, and B/op is
// everything the Inspector allocated. Run it with
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
	ftypMoov := av[:boxAt(b, av, "mdat")] // ftyp, moov (and free): the simulator's file is faststart
	ftyp := ftypMoov[:be.Uint32(ftypMoov)]
	moov := ftypMoov[len(ftyp):]
	live := fixture(b, "live.webm")
	clusters := bytes.Index(live, []byte{0x1f, 0x43, 0xb6, 0x75})
	streams := map[string]func() (io.Reader, int64){
		"mp4":           func() (io.Reader, int64) { return largeMP4(ftypMoov, nil, size), size },
		"mp4_moov_last": func() (io.Reader, int64) { return largeMP4(ftyp, moov, size), size },
		"webm": func() (io.Reader, int64) {
			return repeated(live[:clusters], live[clusters:], size)
		},
	}
	dir := b.TempDir()
	for _, c := range []struct {
		stream, into string
		inspect      bool
	}{
		{"mp4", "discard", false}, {"mp4", "discard", true}, {"mp4_moov_last", "discard", true},
		{"webm", "discard", false}, {"webm", "discard", true},
		{"mp4", "file", false}, {"mp4", "file", true},
	} {
		name := map[bool]string{false: "copy", true: "inspect"}[c.inspect] + "/" + c.into + "/" + c.stream
		b.Run(name, func(b *testing.B) {
			_, n := streams[c.stream]()
			b.SetBytes(n)
			b.ReportAllocs()
			for b.Loop() {
				src, _ := streams[c.stream]()
				var in *Inspector
				if c.inspect {
					in = New("video/mp4", n)
					src = io.TeeReader(src, in)
				}
				if got, err := copyTo(dir, c.into == "file", src); err != nil || got != n {
					b.Fatalf("copied %d of %d bytes: %v", got, n, err)
				}
				if in != nil {
					if r := in.Report(); r.Check(Expect{Types: []string{"video/*"}, Audio: true}) != nil || !r.Complete {
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
// an mdat with a 64-bit size holding a repeated 64 KiB pattern, then tail (the
// moov, or nothing).
func largeMP4(head, tail []byte, size int64) io.Reader {
	fill := size - int64(len(head)+16+len(tail))
	hdr := binary.BigEndian.AppendUint32(nil, 1)
	hdr = append(hdr, "mdat"...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(16+fill))
	// Only Read, so that every case copies through the same 8 KiB reads
	// (io.MultiReader's WriteTo would give the plain copy a shortcut).
	return struct{ io.Reader }{io.MultiReader(bytes.NewReader(head), bytes.NewReader(hdr), &pattern{block: patternBlock, left: fill}, bytes.NewReader(tail))}
}

// repeated is head followed by body repeated as many whole times as fit
// in size bytes, and its length.
func repeated(head, body []byte, size int64) (io.Reader, int64) {
	n := (size - int64(len(head))) / int64(len(body)) * int64(len(body))
	return struct{ io.Reader }{io.MultiReader(bytes.NewReader(head), &pattern{block: body, left: n})}, int64(len(head)) + n
}

// pattern reads left bytes of block repeated.
type pattern struct {
	block []byte
	left  int64
	off   int
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
	n := copy(b[:min(int64(len(b)), p.left)], p.block[p.off:])
	p.off = (p.off + n) % len(p.block)
	p.left -= int64(n)
	return n, nil
}
