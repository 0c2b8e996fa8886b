// Package media inspects an output as media while it streams past,
// without holding it, and checks it against what was expected: a paid
// "success" that is a truncated MP4, an HTML error page served with 200,
// zero bytes, a clip of the wrong length or a video without the audio
// track that was asked for is caught before it is called a success.
//
// An [Inspector] is an io.Writer: feed it the bytes as they are copied
// (io.TeeReader, io.MultiWriter), with the Content-Type and
// Content-Length the server declared. [Inspector.Report] then says what
// the bytes are (MP4 or MOV, WebM or Matroska, WAV, FLAC, MP3, Ogg, PNG,
// JPEG, GIF, WebP, JSON, HTML or unknown), their duration, video and
// audio tracks (codec, size, sample rate) and whether the file is
// complete: every declared size (the Content-Length, MP4 boxes, RIFF
// chunks, EBML elements, Ogg pages, MPEG frames, FLAC's sample count)
// matched what arrived. [Report.Check] holds the report against an
// [Expect] and returns a [*ValidationError] with a stable [Code]
// (not_media, truncated, empty, duration_mismatch, missing_audio,
// wrong_type) and words saying what was wrong:
//
//	in := media.New(resp.Header.Get("Content-Type"), resp.ContentLength)
//	if _, err := io.Copy(dst, io.TeeReader(resp.Body, in)); err != nil {
//		return err // the copy failed: retry it as before
//	}
//	if err := in.Report().Check(media.Expect{Types: []string{"video/*"}, Audio: true}); err != nil {
//		return err // errors.Is(err, media.ErrInvalid)
//	}
//
// Memory does not grow with the file: each format's walker reads only
// the headers and the first bytes of the few boxes, elements or chunks it
// needs and passes over the rest, so an MP4's mdat is never held, and a
// moov that comes after it (a file written without "faststart") is read
// when it arrives. An Inspector keeps at most the first 512 bytes, one
// header, 256 KiB of an image and 1 MiB of a JSON document (a larger
// JSON document is reported as JSON without its syntax checked).
//
// What "complete" cannot see: a live WebM (a Segment and Clusters of
// unknown size) or a GIF cut exactly between two of its parts, an MP3
// without a Xing, Info or VBRI header cut between two frames, and an MP4
// whose optional trailing boxes were all lost. The Content-Length, when
// the server sends one, catches those cuts too.
//
// The parsers are this package's own small walkers, fuzzed against
// truncated and hostile input (go test -fuzz); images are read with the
// standard library's decoders and golang.org/x/image/webp.
package media
