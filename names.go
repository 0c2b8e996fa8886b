package reelq

import (
	"slices"

	"github.com/reelq/reelq/internal/wire"
)

// Providers lists the providers reelq knows, in a stable order (the order
// of internal/providers/all.Specs, from which providers_gen.go is made).
var Providers = func() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.Name
	}
	return out
}()

// KnownProvider reports whether p is one of Providers.
func KnownProvider(p string) bool { return slices.Contains(Providers, p) }

// subject is where e is published.
func (e *Event) subject() string {
	if e.JobID != "" {
		return wire.JobEventSubject(e.Provider, e.Kind, e.JobID)
	}
	return wire.EventSubject(e.Provider, e.Kind)
}

// Subject is the subject e is published on.
func (e *Event) Subject() string { return e.subject() }
