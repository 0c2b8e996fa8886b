package config

import (
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/reelq/reelq/internal/providers/all"
)

// allowedPrefixes are REELQ_ names that tests, benchmarks and the
// deployment files read, not the worker; UnknownVars never reports them:
//
//   - REELQ_BENCH_*: benchmark knobs (internal/bench)
//   - REELQ_TEST_*: test knobs
//   - REELQ_FAULTTEST_*, REELQ_FAULT_*: fault tests (REELQ_FAULTTEST_RACE, REELQ_FAULT_SEED)
//   - REELQ_STATIC_*: deployment validation (REELQ_STATIC_CHECK)
//   - REELQ_NATS_*: the NATS servers' user passwords in deploy/ (REELQ_NATS_WORKER_PASSWORD, ...)
var allowedPrefixes = []string{"REELQ_BENCH_", "REELQ_TEST_", "REELQ_FAULTTEST_", "REELQ_FAULT_", "REELQ_STATIC_", "REELQ_NATS_"}

// AllowedPrefixes returns the REELQ_ prefixes UnknownVars ignores.
func AllowedPrefixes() []string { return slices.Clone(allowedPrefixes) }

// KnownVars returns the name of every variable the worker reads: the env
// tags of Worker (provider prefixes applied) and of every adapter's
// Options. A slice of structs appears as NAME_<N>_FIELD.
func KnownVars() []string {
	var out []string
	for _, f := range workerFields() {
		out = append(out, f.Key)
	}
	for _, s := range all.Specs {
		for _, f := range fieldsOf(reflect.TypeFor[Provider](), s.Kind.Prefix()) {
			out = append(out, f.Key)
		}
	}
	for _, o := range optionTypes() {
		for _, f := range fieldsOf(o.Type, o.Prefix) {
			out = append(out, f.Key) // with <N> for a slice of structs
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ProviderPrefixes returns the prefixes of the per-provider settings
// (SAMSAR_, ...), one per provider of internal/providers/all.
func ProviderPrefixes() []string {
	var out []string
	for _, s := range all.Specs {
		out = append(out, s.Kind.Prefix())
	}
	return out
}

// OptionsType is one options struct of a provider (the input rules' or
// the adapter's) and the prefix its fields are read under.
type OptionsType struct {
	Provider string       // e.g. "samsar"
	Prefix   string       // e.g. "SAMSAR_"
	Type     reflect.Type // the options struct
}

// optionTypes returns every provider's options structs: its input rules'
// (Kind.Options) and its adapter's (Spec.Options).
func optionTypes() []OptionsType {
	var out []OptionsType
	for _, s := range all.Specs {
		for _, t := range []reflect.Type{s.Kind.Options, s.Options} {
			if t != nil && t.Kind() == reflect.Struct {
				out = append(out, OptionsType{Provider: s.Name(), Prefix: s.Kind.Prefix(), Type: t})
			}
		}
	}
	return out
}

// UnknownVars returns a warning for every variable in environ that starts
// with REELQ_ or a provider prefix (in any letter case) but is not one
// the worker reads, nor under AllowedPrefixes, with the closest known
// name when one is near: "SAMSAR_MAX_INFLIGT: unknown variable, ignored
// (did you mean SAMSAR_MAX_INFLIGHT?)". The warnings are sorted by name
// and never contain values.
func UnknownVars(environ map[string]string) []string {
	known := KnownVars()
	checked := append([]string{"REELQ_"}, ProviderPrefixes()...)
	var out []string
	for _, name := range slices.Sorted(maps.Keys(environ)) {
		upper := strings.ToUpper(name)
		if !hasAnyPrefix(upper, checked) || hasAnyPrefix(name, allowedPrefixes) || isKnown(name, known) {
			continue
		}
		w := name + ": unknown variable, ignored"
		if s := suggest(upper, known); s != "" {
			w += " (did you mean " + s + "?"
			if upper == s {
				w += " names are case-sensitive"
			}
			w += ")"
		}
		out = append(out, w)
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func isKnown(name string, known []string) bool {
	if _, ok := slices.BinarySearch(known, name); ok {
		return true
	}
	for _, k := range known {
		if strings.Contains(k, indexPlaceholder) && matchKey(k, name) {
			return true
		}
	}
	return false
}

// suggest returns the known name closest to name (upper case) by edit
// distance, if it is close enough to be a typo, or the same option under
// another provider's prefix (SAMSAR_WORKFLOW_ID: SEGMIND_WORKFLOW_ID).
func suggest(name string, known []string) string {
	best, bestD := "", -1
	for _, k := range known {
		if strings.Contains(k, indexPlaceholder) {
			continue
		}
		if d := editDistance(name, k); bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD >= 0 && bestD <= maxTypoDistance(len(name)) {
		return best
	}
	for _, p := range ProviderPrefixes() {
		rest, ok := strings.CutPrefix(name, p)
		if !ok {
			continue
		}
		for _, q := range ProviderPrefixes() {
			if _, ok := slices.BinarySearch(known, q+rest); ok && q != p {
				return q + rest
			}
		}
	}
	return ""
}

// maxTypoDistance is the largest edit distance still taken for a typo:
// one edit per six characters, from one to three.
func maxTypoDistance(n int) int { return min(max(n/6, 1), 3) }

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// characters each count one.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
