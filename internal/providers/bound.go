package providers

import (
	"strings"
	"unicode/utf8"
)

// Bounds on what a provider's answer may put into a job's state, its
// result and its events: a provider that sends a whole log as its failure
// message, a thousand outputs or a megabyte-long status word cannot make
// a job's record too large to store.
const (
	// MaxStatusText bounds a failure message kept from a poll.
	MaxStatusText = 1 << 10
	// MaxOutputs bounds the outputs kept from one task; the first
	// MaxOutputs are kept.
	MaxOutputs = 16
	// maxLabel bounds short provider words: a status, an output's name or
	// content type, a job reference.
	maxLabel = 128
)

// ClipText collapses whitespace, drops control characters and invalid
// UTF-8, and truncates s to limit bytes (on a rune boundary, marked with
// "..."). Every provider-supplied text passes through it before reelq
// stores it.
func ClipText(s string, limit int) string {
	if len(s) > 4*limit {
		s = s[:4*limit] // enough to fill limit after collapsing
	}
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || (r >= 0x7f && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// Bound returns st with every provider-supplied text clipped and at most
// MaxOutputs outputs: the raw status, the job reference, each output's
// name and content type (URLs are bounded by CheckOutputURL), and the
// failure's message. The worker passes every poll through it.
func Bound(st Status) Status {
	st.Raw = ClipText(st.Raw, maxLabel)
	st.JobRef = ClipText(st.JobRef, maxLabel)
	if len(st.Outputs) > MaxOutputs {
		st.Outputs = st.Outputs[:MaxOutputs:MaxOutputs]
	}
	if len(st.Outputs) > 0 {
		outs := make([]Output, len(st.Outputs))
		for i, o := range st.Outputs {
			outs[i] = Output{URL: o.URL, ContentType: ClipText(o.ContentType, maxLabel), Name: ClipText(o.Name, maxLabel)}
		}
		st.Outputs = outs
	}
	st.Err = boundErr(st.Err)
	return st
}

// boundErr clips err's provider text: an *Error keeps its class with its
// message clipped; any other error longer than MaxStatusText becomes its
// clipped text, wrapping the same classes.
func boundErr(err error) error {
	if err == nil {
		return nil
	}
	if pe, ok := err.(*Error); ok {
		cp := *pe
		cp.Message = ClipText(cp.Message, MaxStatusText)
		if cp.Cause != nil && len(cp.Cause.Error()) > MaxStatusText {
			cp.Cause = &clipped{msg: ClipText(cp.Cause.Error(), MaxStatusText), err: cp.Cause}
		}
		return &cp
	}
	if len(err.Error()) <= MaxStatusText {
		return err
	}
	return &clipped{msg: ClipText(err.Error(), MaxStatusText), err: err}
}

// clipped is an error whose text is clipped; errors.Is still sees the
// original's classes.
type clipped struct {
	msg string
	err error
}

func (c *clipped) Error() string { return c.msg }
func (c *clipped) Unwrap() error { return c.err }
