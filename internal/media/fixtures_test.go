package media

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// Fixtures. The files under testdata were made once with Debian's ffmpeg
// 5.1 and are never remade by the tests; each was made with
//
//	ffmpeg -f lavfi -i testsrc2=size=160x96:rate=10 -f lavfi -i sine=frequency=440:sample_rate=16000 \
//	  -map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact ARGS FILE
//
// (the image and audio-only files without the first or second input) and:
//
//	moovlast.mp4  -t 1 X264 -c:a aac -b:a 16k -ac 1          (moov after mdat)
//	frag.mp4      -t 1 X264 -c:a aac -b:a 16k -ac 1 -movflags frag_keyframe+empty_moov
//	av.mov        -t 1 X264 -c:a aac -b:a 16k -ac 1 -f mov
//	av.webm       -t 2 -c:v libvpx -crf 40 -b:v 50k -g 10 -c:a libopus -b:a 16k -ac 1
//	live.webm     -t 1 -c:v libvpx -crf 40 -b:v 50k -g 10 -c:a libopus -b:a 16k -ac 1 -f webm pipe:1 > live.webm
//	              (written to a pipe: a Segment of unknown size, no Duration)
//	av.mkv        -t 1 X264 -c:a libvorbis -ac 1
//	tone.mp3      -t 1 -c:a libmp3lame -b:a 32k -ac 1
//	tone.ogg      -t 1 -c:a libvorbis -ac 1
//	tone.opus     -t 1 -c:a libopus -b:a 16k -ac 1
//	tone.flac     -t 1 -c:a flac -ac 1
//	image.webp    -f lavfi -i testsrc2=size=64x36 -frames:v 1 -c:v libwebp -quality 20
//
// where X264 is -c:v libx264 -profile:v baseline -level 3.0 -pix_fmt
// yuv420p -crf 40 -g 10 -x264-params no-info=1. The simulator's two MP4s
// (internal/providersim/media: video.mp4 without audio, av.mp4 with AAC,
// both faststart) are read from there. WAV, PNG, JPEG and GIF files are
// generated below.

// fixture reads a file of testdata, or of the simulator's media.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if name == "video.mp4" || name == "av.mp4" {
		path = filepath.Join("..", "providersim", "media", name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixtureNames are every media fixture, generated ones included.
var fixtureNames = []string{"video.mp4", "av.mp4", "moovlast.mp4", "frag.mp4", "av.mov", "av.webm", "live.webm", "av.mkv",
	"tone.mp3", "tone.ogg", "tone.opus", "tone.flac", "image.webp", "tone.wav", "image.png", "image.jpg", "image.gif"}

// file returns a fixture by name, generating the ones that are generated.
func file(t testing.TB, name string) []byte {
	switch name {
	case "tone.wav":
		return wavFile(8000, 8000)
	case "image.png", "image.jpg", "image.gif":
		return imageFile(t, name)
	}
	return fixture(t, name)
}

// wavFile is a RIFF WAVE file of n 8-bit mono samples at rate: a 440 Hz tone.
func wavFile(rate, n int) []byte {
	b := []byte("RIFF")
	b = binary.LittleEndian.AppendUint32(b, uint32(36+n+n%2))
	b = append(b, "WAVEfmt "...)
	b = binary.LittleEndian.AppendUint32(b, 16)
	b = binary.LittleEndian.AppendUint16(b, 1) // PCM
	b = binary.LittleEndian.AppendUint16(b, 1) // mono
	b = binary.LittleEndian.AppendUint32(b, uint32(rate))
	b = binary.LittleEndian.AppendUint32(b, uint32(rate))
	b = binary.LittleEndian.AppendUint16(b, 1)
	b = binary.LittleEndian.AppendUint16(b, 8)
	b = append(b, "data"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	for i := range n {
		b = append(b, uint8(128+64*math.Sin(2*math.Pi*440*float64(i)/float64(rate))))
	}
	if n%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// imageFile is a 64x36 gradient as PNG, JPEG or GIF.
func imageFile(t testing.TB, name string) []byte {
	img := image.NewPaletted(image.Rect(0, 0, 64, 36), color.Palette{color.Black, color.White, color.RGBA{200, 30, 30, 255}})
	for y := range 36 {
		for x := range 64 {
			img.SetColorIndex(x, y, uint8((x+y)%3))
		}
	}
	var b bytes.Buffer
	var err error
	switch filepath.Ext(name) {
	case ".png":
		err = png.Encode(&b, img)
	case ".jpg":
		err = jpeg.Encode(&b, img, nil)
	case ".gif":
		err = gif.Encode(&b, img, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// inspect runs an Inspector over b, written chunk bytes at a time (all
// at once if chunk <= 0), as served with type ct and length cl.
func inspect(b []byte, ct string, cl int64, chunk int) Report {
	in := New(ct, cl)
	write(in, b, chunk)
	return in.Report()
}

func write(in *Inspector, b []byte, chunk int) {
	if chunk <= 0 {
		chunk = max(len(b), 1)
	}
	for len(b) > 0 {
		k := min(chunk, len(b))
		if n, err := in.Write(b[:k]); n != k || err != nil {
			panic("Inspector.Write failed")
		}
		b = b[k:]
	}
}
