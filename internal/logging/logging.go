// Package logging builds reelq's slog loggers: tint for terminals, JSON for
// machines, and a filter that removes registered secrets from every
// message and attribute before it is written.
package logging

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"

	"github.com/lmittmann/tint"
)

// Secrets is a set of values that must never be logged. It is safe for
// concurrent use.
type Secrets struct {
	mu   sync.RWMutex
	vals []string
}

// Add registers secret values; empty and very short values are ignored
// (redacting "a" would mangle every line).
func (s *Secrets) Add(vals ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vals {
		if len(v) >= 4 {
			s.vals = append(s.vals, v)
		}
	}
}

// Redact replaces every registered secret in v with [REDACTED].
func (s *Secrets) Redact(v string) string {
	if s == nil {
		return v
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, sec := range s.vals {
		if strings.Contains(v, sec) {
			v = strings.ReplaceAll(v, sec, "[REDACTED]")
		}
	}
	return v
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
		h = tint.NewHandler(w, &tint.Options{Level: level, ReplaceAttr: replace, NoColor: noColor, TimeFormat: "15:04:05.000"})
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
		}
	}
	return a
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
