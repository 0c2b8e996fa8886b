package media

import "fmt"

// sniffLen is how much of the start an Inspector looks at to tell the
// format, as net/http's content sniffing does.
const sniffLen = 512

// An Inspector is an io.Writer that inspects a file as media while it is
// written, keeping only what it needs of it (at most about a megabyte,
// whatever the file's size). Feed it the bytes in order, for example with
// io.TeeReader, then call Report once. Write never fails, so an
// Inspector never stops the copy it watches. It is not safe for
// concurrent use.
type Inspector struct {
	declType string
	declLen  int64
	n        int64
	head     []byte // the first bytes, until the format is known
	f        format
	s        *stepper // f's stepper, for the fast path, if its feed is the stepper's
	rep      *Report
}

// format is one format's walker as the Inspector drives it.
type format interface {
	// feed takes the next bytes of the file.
	feed(p []byte)
	// end is called once the file ended; it fills in the report (Kind,
	// tracks, duration, Complete and Cut, Malformed). r.Bytes is set.
	end(r *Report)
}

// New returns an Inspector for a body served with the given Content-Type
// and Content-Length (-1 when the server sent none, as in
// http.Response.ContentLength).
func New(contentType string, contentLength int64) *Inspector {
	return &Inspector{declType: contentType, declLen: contentLength, head: make([]byte, 0, sniffLen)}
}

// Write inspects p. It always returns len(p), nil; bytes written after
// Report are ignored.
func (in *Inspector) Write(p []byte) (int, error) {
	if in.rep != nil {
		return len(p), nil
	}
	in.n += int64(len(p))
	if in.s != nil && in.s.skips(len(p)) {
		return len(p), nil
	}
	rest := p
	if in.f == nil {
		k := min(sniffLen-len(in.head), len(p))
		in.head = append(in.head, p[:k]...)
		if len(in.head) < sniffLen {
			return len(p), nil
		}
		in.start()
		rest = p[k:]
	}
	if len(rest) > 0 {
		in.f.feed(rest)
	}
	return len(p), nil
}

// start picks the format from the head and feeds it the head.
func (in *Inspector) start() {
	in.use(sniff(in.head))
	in.f.feed(in.head)
	in.head = nil
}

// use makes f the format the bytes are fed to.
func (in *Inspector) use(f format) {
	in.f, in.s = f, nil
	if f, ok := f.(interface{ steps() *stepper }); ok {
		in.s = f.steps()
	}
}

// Report ends the inspection and returns what it found. Call it once the
// copy is over, whether or not it succeeded; later calls return the same.
func (in *Inspector) Report() Report {
	if in.rep != nil {
		return *in.rep
	}
	if in.f == nil {
		in.start()
	}
	r := Report{Kind: Unknown, DeclaredType: in.declType, DeclaredLength: in.declLen, Bytes: in.n, Complete: true}
	in.f.end(&r)
	switch {
	case in.declLen >= 0 && in.n < in.declLen:
		r.Complete, r.Cut = false, fmt.Sprintf("%d of the %d bytes the Content-Length declares arrived", in.n, in.declLen)
	case in.declLen >= 0 && in.n > in.declLen:
		r.Complete, r.Cut = false, fmt.Sprintf("%d bytes arrived, more than the %d the Content-Length declares", in.n, in.declLen)
	}
	if !r.Complete && r.Cut == "" {
		r.Cut = "the file ends early"
	}
	if len(r.Video) > 0 && r.Width == 0 {
		r.Width, r.Height = r.Video[0].Width, r.Video[0].Height
	}
	if r.Type == "" {
		r.Type = mediaType(r.Kind, len(r.Video) > 0)
	}
	in.rep = &r
	return r
}
