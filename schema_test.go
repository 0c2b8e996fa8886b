package reelq_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/reelq/reelq"
)

// schema is the part of a JSON Schema the tests read.
type schema struct {
	Required   []string           `json:"required"`
	Properties map[string]*schema `json:"properties"`
	Items      *schema            `json:"items"`
	Enum       []string           `json:"enum"`
}

func loadSchema(t *testing.T, path string) *schema {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s schema
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &s
}

// checkFields compares s's properties with the JSON fields of typ, and,
// when required is set, s's required list with the fields that are not
// omitempty; it descends into structs and slices of structs.
func checkFields(t *testing.T, where string, s *schema, typ reflect.Type, required bool) {
	t.Helper()
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		typ = typ.Elem()
		if s.Items != nil {
			s = s.Items
		}
	}
	var names, must []string
	for f := range typ.Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" {
			continue
		}
		names = append(names, name)
		if !strings.Contains(opts, "omitempty") {
			must = append(must, name)
		}
		p, ok := s.Properties[name]
		if !ok {
			t.Errorf("%s: field %q of %s is not in the schema", where, name, typ)
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() == typ.PkgPath() {
			checkFields(t, where+"."+name, p, f.Type, required)
		}
	}
	for name := range s.Properties {
		if !slices.Contains(names, name) {
			t.Errorf("%s: the schema has %q, which %s does not", where, name, typ)
		}
	}
	if required {
		slices.Sort(must)
		got := slices.Sorted(slices.Values(s.Required))
		if !slices.Equal(got, must) {
			t.Errorf("%s: schema requires %v, the fields always written are %v", where, got, must)
		}
	}
}

func enumOf(t *testing.T, s *schema, path ...string) []string {
	t.Helper()
	for _, p := range path {
		if p == "[]" {
			s = s.Items
			continue
		}
		s = s.Properties[p]
		if s == nil {
			t.Fatalf("schema has no %v", path)
		}
	}
	return slices.Sorted(slices.Values(s.Enum))
}

func sortedStrings[T ~string](v []T) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = string(x)
	}
	slices.Sort(out)
	return out
}

// errorCodes reads the Code* constants of result.go.
func errorCodes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "result.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || !strings.HasPrefix(vs.Names[0].Name, "Code") || len(vs.Values) != 1 {
			return true
		}
		if lit, ok := vs.Values[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			v, _ := strconv.Unquote(lit.Value)
			codes = append(codes, v)
		}
		return true
	})
	slices.Sort(codes)
	return codes
}

// The JSON Schemas in docs/schema are the wire contract: every field of
// the job and result types is in them, nothing else is, the required
// lists are the fields always written, and the enums are reelq's.
func TestSchemasMatchTheTypes(t *testing.T) {
	job := loadSchema(t, "docs/schema/job.schema.json")
	checkFields(t, "job", job, reflect.TypeFor[reelq.Job](), false)
	if want := []string{"input", "provider"}; !slices.Equal(slices.Sorted(slices.Values(job.Required)), want) {
		t.Errorf("job schema requires %v, want %v", job.Required, want)
	}
	res := loadSchema(t, "docs/schema/result.schema.json")
	checkFields(t, "result", res, reflect.TypeFor[reelq.Result](), true)

	providers := slices.Sorted(slices.Values(reelq.Providers))
	for _, s := range []*schema{job, res} {
		if got := enumOf(t, s, "provider"); !slices.Equal(got, providers) {
			t.Errorf("provider enum %v, want %v", got, providers)
		}
		if got := enumOf(t, s, "priority"); !slices.Equal(got, sortedStrings(reelq.Priorities)) {
			t.Errorf("priority enum %v, want %v", got, reelq.Priorities)
		}
	}
	if got, want := enumOf(t, res, "status"), []string{reelq.StatusCancelled, reelq.StatusFailed, reelq.StatusSucceeded}; !slices.Equal(got, want) {
		t.Errorf("status enum %v, want %v", got, want)
	}
	if got, want := enumOf(t, res, "error", "code"), errorCodes(t); !slices.Equal(got, want) {
		t.Errorf("error code enum %v, want the Code constants %v", got, want)
	}
}
