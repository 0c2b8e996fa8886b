package media

import "math"

// maxWant bounds what a format may ask for in one step, and so what an
// Inspector holds of the stream at once (formats ask for a few dozen
// bytes; images and JSON keep their own bounded copies).
const maxWant = 64 << 10

// stepper turns the written stream into the steps a format's walker asks
// for: want(n) delivers the next n bytes in one piece, however the writes
// split them; pass(n) goes over n bytes without keeping them. The walker
// asks for its next steps from inside got; passes run before the want.
type stepper struct {
	pos  int64  // file offset of the next byte not yet delivered or passed
	need int    // bytes the pending want asks for (0: none)
	skip int64  // bytes still to pass over
	buf  []byte // the pending want's bytes gathered so far
	w    walker
}

// walker is a format's state machine driven by a stepper.
type walker interface {
	// got receives the bytes of the last want, which start at
	// s.pos-len(b); b is only valid during the call.
	got(b []byte)
}

// want asks for the next n bytes (1 <= n <= maxWant).
func (s *stepper) want(n int) {
	if n < 1 || n > maxWant {
		panic("media: want out of range")
	}
	s.need = n
}

// pass skips n more bytes.
func (s *stepper) pass(n int64) {
	if n > 0 {
		s.skip = min(s.skip+n, math.MaxInt64-1)
	}
}

// passAll skips everything that follows.
func (s *stepper) passAll() { s.skip = math.MaxInt64 }

// stop ends the walk: what follows is not looked at.
func (s *stepper) stop() { s.need, s.skip = 0, 0 }

// stopped reports whether the walk ended (nothing pending).
func (s *stepper) stopped() bool { return s.need == 0 && s.skip == 0 }

// clean reports whether the stream ended where the walker wanted a new
// step and not a byte of it had arrived: at a boundary of the format.
func (s *stepper) clean() bool { return s.skip == 0 && len(s.buf) == 0 }

// skips passes over all of the next n bytes if the pending pass covers
// them, and reports whether it did: feed's fast path, for the bulk of a
// file (an MP4's mdat, a cluster's blocks) that arrives while a walker
// passes over it.
func (s *stepper) skips(n int) bool {
	if s.skip < int64(n) {
		return false
	}
	if s.skip != math.MaxInt64 {
		s.skip -= int64(n)
	}
	s.pos += int64(n)
	return true
}

// feed walks p and returns what is left of it once the walk stopped.
func (s *stepper) feed(p []byte) []byte {
	for len(p) > 0 {
		if s.skip > 0 {
			k := int(min(s.skip, int64(len(p))))
			if s.skip != math.MaxInt64 {
				s.skip -= int64(k)
			}
			s.pos += int64(k)
			p = p[k:]
			continue
		}
		if s.need == 0 {
			return p
		}
		var b []byte
		if len(s.buf) == 0 && len(p) >= s.need {
			b, p = p[:s.need], p[s.need:]
		} else {
			k := min(s.need-len(s.buf), len(p))
			s.buf = append(s.buf, p[:k]...)
			p = p[k:]
			if len(s.buf) < s.need {
				return nil
			}
			b = s.buf
		}
		s.pos += int64(len(b))
		s.need = 0
		s.w.got(b)
		s.buf = s.buf[:0]
	}
	return nil
}
