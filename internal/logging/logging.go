// Package logging builds reelq's slog loggers: tint for terminals, JSON for
// machines, and a filter that removes registered secrets from every
// message and attribute before it is written.
package logging

import (
	"context"
	"encoding"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/lmittmann/tint"
)

// Secrets is a set of values that must never be logged. It is safe for
// concurrent use; the zero value is an empty set.
//
// Redact removes each secret as written and in the encoded forms a secret
// takes on its way into a log line: URL-encoded (url.QueryEscape and
// url.PathEscape, with upper- or lower-case %XX), hex (either case),
// base64 (standard and URL alphabets, with or without padding, and at any
// byte offset inside a longer encoded value), and the whole token of a
// `Basic <base64(user:pass)>` credential whose decoded text contains a
// secret. The encoded forms are computed once, when a secret is added.
//
// Lengths: values shorter than MinSecretLen are ignored (redacting "a"
// would mangle every line); the encoded forms are searched only for
// secrets of at least MinEncodedLen bytes, since a short secret's hex or
// base64 form is short enough to occur by chance in unrelated text. The
// Basic credential check applies to every registered secret: its context
// rules out chance matches.
type Secrets struct {
	mu   sync.RWMutex
	vals []string            // the secrets as registered
	pats []string            // every form to remove, longest first
	seen map[string]struct{} // pats as a set, for de-duplication
}

const (
	// MinSecretLen is the shortest value Add registers.
	MinSecretLen = 4
	// MinEncodedLen is the shortest secret whose encoded forms are
	// redacted too.
	MinEncodedLen = 6
	// Marker replaces every redacted span.
	Marker = "[REDACTED]"
)

// Add registers secret values; empty and very short values are ignored
// (see MinSecretLen).
func (s *Secrets) Add(vals ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]struct{}{}
	}
	changed := false
	for _, v := range vals {
		if len(v) < MinSecretLen || slices.Contains(s.vals, v) {
			continue
		}
		s.vals = append(s.vals, v)
		for _, p := range Variants(v) {
			if _, ok := s.seen[p]; !ok {
				s.seen[p] = struct{}{}
				s.pats = append(s.pats, p)
				changed = true
			}
		}
	}
	if changed {
		// Longest first, so that a full encoding wins over a part of it
		// when both start at the same place.
		slices.SortStableFunc(s.pats, func(a, b string) int { return len(b) - len(a) })
	}
}

// Variants returns the forms of secret that Redact removes: secret itself
// and, if it has at least MinEncodedLen bytes, its URL-encoded, hex and
// base64 forms (see Secrets). A base64 form is given as the characters
// that depend on secret alone, for each of the three byte offsets the
// secret can have inside a longer encoded value (as in
// base64("user:"+secret)).
func Variants(secret string) []string {
	if len(secret) < MinSecretLen {
		return nil
	}
	out := []string{secret}
	if len(secret) < MinEncodedLen {
		return out
	}
	for _, esc := range []string{url.QueryEscape(secret), url.PathEscape(secret)} {
		out = append(out, esc, lowerPercent(esc))
	}
	h := hex.EncodeToString([]byte(secret))
	out = append(out, h, strings.ToUpper(h))
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		out = append(out, enc.EncodeToString([]byte(secret))) // offset 0, whole
		for k := range 3 {
			out = append(out, base64Core(enc, secret, k))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// base64Core returns the part of the base64 encoding of a value that
// depends only on secret when secret starts k bytes (mod 3) into the
// value: the characters whose 6 bits all lie inside secret's bytes.
func base64Core(enc *base64.Encoding, secret string, k int) string {
	buf := make([]byte, k+len(secret))
	copy(buf[k:], secret)
	e := enc.EncodeToString(buf)
	start := (8*k + 5) / 6           // first character starting at or after bit 8k
	end := (8*k + 8*len(secret)) / 6 // characters ending at or before the secret's last bit
	return e[start:end]
}

// lowerPercent writes the hex digits of %XX escapes in lower case.
func lowerPercent(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = toLowerHex(b[i+1]), toLowerHex(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func toLowerHex(c byte) byte {
	if c >= 'A' && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

// basicAuth finds Basic credentials: the scheme name (any case), blanks,
// and a base64 token.
var basicAuth = regexp.MustCompile(`(?i)\bbasic[ \t]+([A-Za-z0-9+/_-]+={0,2})`)

// Redact replaces every registered secret in v, in any of the forms
// described at Secrets, with Marker. Overlapping and adjacent matches
// become one Marker.
func (s *Secrets) Redact(v string) string {
	if s == nil || v == "" {
		return v
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var spans []span
	for _, p := range s.pats {
		if !strings.Contains(v, p) {
			continue
		}
		for off := 0; ; {
			i := strings.Index(v[off:], p)
			if i < 0 {
				break
			}
			spans = append(spans, span{off + i, off + i + len(p)})
			off += i + len(p)
		}
	}
	if len(s.vals) > 0 && containsFold(v, "basic") {
		for _, m := range basicAuth.FindAllStringSubmatchIndex(v, -1) {
			if s.basicHasSecret(v[m[2]:m[3]]) {
				spans = append(spans, span{m[2], m[3]})
			}
		}
	}
	if len(spans) == 0 {
		return v
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start - b.start })
	var b strings.Builder
	b.Grow(len(v))
	last := 0
	for i := 0; i < len(spans); {
		start, end := spans[i].start, spans[i].end
		for i++; i < len(spans) && spans[i].start <= end; i++ {
			end = max(end, spans[i].end)
		}
		b.WriteString(v[last:start])
		b.WriteString(Marker)
		last = end
	}
	b.WriteString(v[last:])
	return b.String()
}

type span struct{ start, end int }

// basicHasSecret reports whether a Basic credential token decodes to text
// containing a secret.
func (s *Secrets) basicHasSecret(token string) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		dec, err := enc.DecodeString(token)
		if err != nil {
			continue
		}
		for _, sec := range s.vals {
			if strings.Contains(string(dec), sec) {
				return true
			}
		}
		return false // the encodings that decode a token agree on its bytes
	}
	return false
}

// containsFold reports whether s contains sub, an ASCII word starting
// with b, in any letter case.
func containsFold(s, sub string) bool {
	for i := 0; ; i++ {
		j := strings.IndexAny(s[i:], "bB")
		if j < 0 || i+j+len(sub) > len(s) {
			return false
		}
		i += j
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
}

// New returns a logger writing to w in format "text" (tint, colour when w
// is a terminal and noColor is false) or "json", at level, with secrets
// filtered out.
func New(w io.Writer, format string, level slog.Level, secrets *Secrets, noColor bool) *slog.Logger {
	replace := func(_ []string, a slog.Attr) slog.Attr {
		return redactAttr(a, secrets)
	}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: replace})
	} else {
		h = tint.NewTextHandler(w, &tint.Options{Level: level, ReplaceAttr: replace, NoColor: noColor, TimeFormat: "15:04:05.000"})
	}
	return slog.New(&redactHandler{Handler: h, secrets: secrets})
}

func redactAttr(a slog.Attr, secrets *Secrets) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(secrets.Redact(a.Value.String()))
	case slog.KindAny:
		if rv := reflect.ValueOf(a.Value.Any()); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return a // a nil *time.Time (say) would panic in String(); nothing to redact
		}
		switch v := a.Value.Any().(type) {
		case error:
			a.Value = slog.StringValue(secrets.Redact(v.Error()))
		case interface{ String() string }:
			a.Value = slog.StringValue(secrets.Redact(v.String()))
		default:
			// Anything else is rendered by the handler (MarshalText, the
			// bytes, fmt or JSON); it is replaced by its redacted text only
			// when that text holds a secret, so values without one keep
			// their rendering.
			if secrets.empty() {
				return a
			}
			text := anyText(v)
			if r := secrets.Redact(text); r != text {
				a.Value = slog.StringValue(r)
			}
		}
	}
	return a
}

// anyText renders v as a handler would, for redaction.
func anyText(v any) string {
	switch v := v.(type) {
	case encoding.TextMarshaler:
		if b, err := v.MarshalText(); err == nil {
			return string(b)
		}
	case []byte:
		return string(v)
	}
	return fmt.Sprintf("%+v", v)
}

func (s *Secrets) empty() bool {
	if s == nil {
		return true
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.vals) == 0
}

// redactHandler filters the message, which ReplaceAttr does not see in
// every handler.
type redactHandler struct {
	slog.Handler
	secrets *Secrets
}

func (h *redactHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, h.secrets.Redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, nr)
}

func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &redactHandler{Handler: h.Handler.WithAttrs(attrs), secrets: h.secrets}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{Handler: h.Handler.WithGroup(name), secrets: h.secrets}
}
