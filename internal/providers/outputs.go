package providers

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
)

// MaxOutputURLLen bounds an output URL.
const MaxOutputURLLen = 8 << 10

// CheckOutputURL reports why raw may not be returned as an output: it
// must be an absolute http or https URL with a host and no user info
// (user:pass@), at most MaxOutputURLLen bytes, without spaces or control
// characters. file:, javascript:, data: and similar URLs are refused:
// whoever downloads or shows an output would otherwise read a local file
// or run a script.
func CheckOutputURL(raw string) error {
	if raw == "" {
		return errors.New("empty URL")
	}
	if len(raw) > MaxOutputURLLen {
		return fmt.Errorf("URL is %d bytes long (limit %d)", len(raw), MaxOutputURLLen)
	}
	for _, r := range raw {
		if r <= ' ' || r == 0x7f {
			return errors.New("URL contains a space or control character")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		if u.Scheme == "" {
			return errors.New("not an absolute URL")
		}
		return fmt.Errorf("scheme %q is not http or https", u.Scheme)
	case u.User != nil:
		return errors.New("URL contains user info")
	case u.Opaque != "" || u.Hostname() == "":
		return errors.New("URL has no host")
	}
	return nil
}

// CheckOutputs returns an ErrTaskFailed error naming the first output
// whose URL [CheckOutputURL] refuses, or nil if all are acceptable.
func CheckOutputs(provider string, outs []Output) error {
	for i, o := range outs {
		if err := CheckOutputURL(o.URL); err != nil {
			name := o.Name
			if name == "" {
				name = "#" + strconv.Itoa(i+1)
			}
			return &Error{Provider: provider, Op: "poll", Class: ErrTaskFailed,
				Message: fmt.Sprintf("output %q has an unusable URL %s: %v", name, ShowURL(o.URL), err)}
		}
	}
	return nil
}

// Vet returns st unchanged unless it succeeded with an output that
// [CheckOutputs] refuses; then it is a failed task (ErrTaskFailed, naming
// the bad output) without outputs. Every adapter passes its successful
// polls through it (Segmind's inlined text outputs aside, which are not
// provider URLs).
func Vet(provider string, st Status) Status {
	if st.State != Succeeded {
		return st
	}
	if err := CheckOutputs(provider, st.Outputs); err != nil {
		st.State, st.Outputs, st.Err = Failed, nil, err
	}
	return st
}

// ShowURL renders an untrusted URL for an error message: quoted, without
// user info, query or fragment (signed links keep tokens there), and
// truncated.
func ShowURL(raw string) string {
	s := raw
	if u, err := url.Parse(raw); err == nil {
		u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
		s = u.String()
	} else {
		return "(unparseable)"
	}
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}
