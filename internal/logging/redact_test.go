package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type nilErr struct{}

func (*nilErr) Error() string { return "boom" }

// Attributes that are nil pointers with a String or Error method (an
// unset *time.Time such as a pause's next probe) are logged, not turned
// into a panic by the redaction; secrets in set values are still removed.
func TestRedactNilPointerAttrs(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		secrets := &Secrets{}
		secrets.Add("sk-secret-value")
		log := New(&buf, format, slog.LevelDebug, secrets, true)
		var next *time.Time
		var perr *nilErr
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		log.Warn("provider paused", "next_probe_at", next, "err", perr, "since", &now,
			"cause", errors.New("bad key sk-secret-value"), "msg2", "key sk-secret-value")
		out := buf.String()
		if strings.Contains(out, "sk-secret-value") {
			t.Errorf("%s: secret logged: %s", format, out)
		}
		if !strings.Contains(out, "provider paused") || !strings.Contains(out, "2026") || strings.Count(out, "[REDACTED]") != 2 {
			t.Errorf("%s: unexpected output %s", format, out)
		}
	}
}
