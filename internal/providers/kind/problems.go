package kind

import (
	"fmt"
	"strings"
)

// Problems collects the rules an input breaks, so validation names every
// bad field of a job at once rather than the first.
type Problems struct {
	Provider string
	msgs     []string
}

// Add records one broken rule, worded as Invalid words it.
func (p *Problems) Add(format string, args ...any) {
	p.msgs = append(p.msgs, fmt.Sprintf(format, args...))
}

// Err is nil when no rule is broken, else one ErrInvalidInput error whose
// message lists them all, separated by "; ".
func (p *Problems) Err() error {
	if len(p.msgs) == 0 {
		return nil
	}
	return Invalid(p.Provider, "%s", strings.Join(p.msgs, "; "))
}
