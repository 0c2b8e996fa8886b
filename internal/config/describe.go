package config

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Var describes one environment variable of the worker, for --help.
type Var struct {
	Name    string // e.g. REELQ_ACK_WAIT; per-provider settings as P_RATE
	Default string // the default as text, empty when there is none
	Help    string // one line
}

// providerPlaceholder stands for a provider prefix in Describe.
const providerPlaceholder = "P_"

// Describe lists the worker's environment variables in struct order, from
// the env, envDefault and help struct tags (an adapter option without a
// help tag is described as "option of the <name> adapter") (helpDefault, when present,
// describes a default that is not a literal value, such as "host-pid"):
// the NATS settings, the per-provider settings once as P_NAME (P_ is each
// of ProviderPrefixes, defaults from ProviderDefaults), the worker's own,
// then every adapter's options under its prefix.
func Describe() []Var {
	var out []Var
	t := reflect.TypeFor[Worker]()
	for i := range t.NumField() {
		sf := t.Field(i)
		var fs []field
		walkField(sf, "", []int{i}, &fs)
		for _, f := range fs {
			out = append(out, Var{Name: f.Key, Default: tagDefault(f.SF), Help: f.SF.Tag.Get("help")})
		}
		if sf.Type == reflect.TypeFor[NATS]() {
			// The per-provider settings follow the NATS settings.
			for _, f := range fieldsOf(reflect.TypeFor[Provider](), providerPlaceholder) {
				out = append(out, Var{Name: f.Key, Default: providerDefault(f), Help: f.SF.Tag.Get("help")})
			}
		}
	}
	for _, o := range optionTypes() {
		for _, f := range fieldsOf(o.Type, o.Prefix) {
			help := f.SF.Tag.Get("help")
			if help == "" {
				help = "option of the " + o.Provider + " adapter"
			}
			out = append(out, Var{Name: f.Key, Default: tagDefault(f.SF), Help: help})
		}
	}
	return out
}

func tagDefault(sf reflect.StructField) string {
	if d, ok := sf.Tag.Lookup("helpDefault"); ok {
		return d
	}
	return sf.Tag.Get("envDefault")
}

// providerDefault renders a Provider field's default from its tags or,
// without them, from ProviderDefaults: "60s" when every provider has
// the same, else "segmind 0.833, others 1".
func providerDefault(f field) string {
	if d, ok := f.SF.Tag.Lookup("helpDefault"); ok {
		return d
	}
	if d, ok := f.SF.Tag.Lookup("envDefault"); ok {
		return d
	}
	byValue := map[string][]string{}
	var values []string
	defaults := ProviderDefaults()
	for _, name := range slices.Sorted(maps.Keys(defaults)) {
		v, err := reflect.ValueOf(defaults[name]).FieldByIndexErr(f.Index)
		if err != nil {
			continue
		}
		s := formatValue(v)
		if _, ok := byValue[s]; !ok {
			values = append(values, s)
		}
		byValue[s] = append(byValue[s], name)
	}
	switch len(values) {
	case 0:
		return ""
	case 1:
		return values[0]
	}
	// The value most providers share is "others"; the rest are named.
	slices.SortStableFunc(values, func(a, b string) int { return len(byValue[b]) - len(byValue[a]) })
	var parts []string
	for _, v := range values[1:] {
		label := v
		if label == "" {
			label = "none"
		}
		parts = append(parts, strings.Join(byValue[v], ", ")+" "+label)
	}
	return strings.Join(parts, "; ") + ", others " + values[0]
}

// formatValue renders a default value as it would be written in the
// environment; the zero value is "".
func formatValue(v reflect.Value) string {
	if v.IsZero() {
		return ""
	}
	if v.Type() == durationType {
		return fmtDuration(time.Duration(v.Int()))
	}
	switch v.Kind() {
	case reflect.Pointer:
		return formatValue(v.Elem())
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', 3, 64)
	}
	return fmt.Sprint(v.Interface())
}

// FormatHelp writes Describe as an aligned table, with what P_ stands for
// and which other names UnknownVars leaves alone.
func FormatHelp(w io.Writer) {
	writeVars(w, Describe())
	fmt.Fprintf(w, "\n%s is each provider's prefix: %s.\n", providerPlaceholder, strings.Join(ProviderPrefixes(), ", "))
	var allowed []string
	for _, p := range AllowedPrefixes() {
		allowed = append(allowed, p+"*")
	}
	fmt.Fprintf(w, "Other names starting with REELQ_ or a provider prefix are reported as unknown,\nexcept %s (tests, benchmarks, deployment).\n",
		strings.Join(allowed, ", "))
}

// writeVars writes vars as an aligned VARIABLE DEFAULT MEANING table.
func writeVars(w io.Writer, vars []Var) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for _, v := range vars {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, v.Default, v.Help)
	}
	_ = tw.Flush()
	for line := range strings.Lines(buf.String()) {
		fmt.Fprintln(w, strings.TrimRight(line, " \n"))
	}
}
