package worker

import "testing"

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
	if got := (outcome{kind: outKinds}).String(); got != "outcome(10)" {
		t.Errorf("an unknown kind is named %q, want outcome(10)", got)
	}
}
