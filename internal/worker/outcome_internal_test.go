package worker

import (
	"strconv"
	"testing"
)

// Every outcome kind has its own name in logs (String indexed a table of
// 7 names with 10 kinds: logging a park, say, panicked).
func TestOutcomeNames(t *testing.T) {
	seen := map[string]outcomeKind{}
	for k := range outKinds {
		name := outcome{kind: k}.String()
		if name == "" {
			t.Errorf("outcome kind %d has no name", k)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("outcome kinds %d and %d are both named %q", prev, k, name)
		}
		seen[name] = k
	}
	want := "outcome(" + strconv.Itoa(int(outKinds)) + ")"
	if got := (outcome{kind: outKinds}).String(); got != want {
		t.Errorf("an unknown kind is named %q, want %s", got, want)
	}
}
