package media

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
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
// way (io.Copy into io.Discard, or into a file) without the Inspector,
// and tee tees it into io.Discard instead (the price of any tee): the
// difference in ns/op (wall time) and cpu-ns/op (the process's CPU time,
// which other work on a shared machine inflates less) is what inspecting
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
	for _, c := range []struct{ mode, into, stream string }{
		{"copy", "discard", "mp4"}, {"tee", "discard", "mp4"}, {"inspect", "discard", "mp4"}, {"inspect", "discard", "mp4_moov_last"},
		{"copy", "discard", "webm"}, {"inspect", "discard", "webm"},
		{"copy", "file", "mp4"}, {"inspect", "file", "mp4"},
	} {
		b.Run(c.mode+"/"+c.into+"/"+c.stream, func(b *testing.B) {
			_, n := streams[c.stream]()
			b.SetBytes(n)
			b.ReportAllocs()
			cpu := cpuTime()
			defer func() { b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op") }()
			for b.Loop() {
				src, _ := streams[c.stream]()
				var in *Inspector
				switch c.mode {
				case "tee":
					src = io.TeeReader(src, io.Discard)
				case "inspect":
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

// cpuTime is the CPU time (user and system) this process has used: on a
// shared machine it moves less than the wall time when other work takes
// the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

// BenchmarkWrite is what one Write costs an Inspector inside an MP4's
// mdat: the per-write price of inspecting a large output, whatever the
// size of the write (times 131072 8 KiB writes for 1 GiB).
//
//	go test -run '^$' -bench BenchmarkWrite ./internal/media/
func BenchmarkWrite(b *testing.B) {
	for _, size := range []int{8 << 10, 32 << 10} {
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			av := fixture(b, "av.mp4")
			in := New("video/mp4", -1)
			write(in, av[:boxAt(b, av, "mdat")], 0)
			write(in, []byte{0, 0, 0, 1, 'm', 'd', 'a', 't', 0x7f, 0, 0, 0, 0, 0, 0, 0}, 0) // an mdat of 2^62 bytes
			p := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				in.Write(p)
			}
		})
	}
}
