package config

import (
	"reflect"
	"slices"
	"strings"
)

// field is one environment variable a config struct reads, found by
// reflection over its env tags the way caarlos0/env walks them: nested
// structs add their envPrefix, `env:"-"` fields are skipped, and a slice
// of structs reads PREFIX_<N>_NAME for each element.
type field struct {
	Key   string              // the variable's full name, prefixes applied
	Own   string              // the name in the env tag, without prefixes
	SF    reflect.StructField // the field, for its tags and type
	Index []int               // the path from the walked struct, for FieldByIndex
}

// indexPlaceholder stands for an element index in a slice of structs.
const indexPlaceholder = "<N>"

// fieldsOf returns the variables struct type t reads under prefix.
func fieldsOf(t reflect.Type, prefix string) []field {
	var out []field
	walkStruct(t, prefix, nil, &out)
	return out
}

func walkStruct(t reflect.Type, prefix string, index []int, out *[]field) {
	for i := range t.NumField() {
		walkField(t.Field(i), prefix, append(slices.Clone(index), i), out)
	}
}

func walkField(sf reflect.StructField, prefix string, index []int, out *[]field) {
	if !sf.IsExported() {
		return
	}
	name, opts := parseEnvTag(sf.Tag.Get("env"))
	if name == "-" || slices.Contains(opts, "-") {
		return
	}
	inner := prefix + sf.Tag.Get("envPrefix")
	t := sf.Type
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		// caarlos0/env fills a nil pointer to a struct only with `init`.
		if !slices.Contains(opts, "init") {
			if name != "" {
				*out = append(*out, field{Key: prefix + name, Own: name, SF: sf, Index: index})
			}
			return
		}
		t = t.Elem()
	}
	if name != "" {
		*out = append(*out, field{Key: prefix + name, Own: name, SF: sf, Index: index})
	}
	switch {
	case t.Kind() == reflect.Struct:
		walkStruct(t, inner, index, out)
	case isSliceOfStructs(t):
		if inner != "" && !strings.HasSuffix(inner, "_") {
			inner += "_"
		}
		et := t
		if et.Kind() == reflect.Pointer {
			et = et.Elem()
		}
		// The element fields have no Index: they are not reachable from
		// the zero value.
		var elems []field
		walkStruct(et.Elem(), inner+indexPlaceholder+"_", nil, &elems)
		for _, f := range elems {
			f.Index = nil
			*out = append(*out, f)
		}
	}
}

func isSliceOfStructs(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct
}

func parseEnvTag(tag string) (string, []string) {
	parts := strings.Split(tag, ",")
	return parts[0], parts[1:]
}

// matchKey reports whether the environment name key is the variable f
// reads, allowing any index in place of the slice placeholder.
func matchKey(pattern, key string) bool {
	if !strings.Contains(pattern, indexPlaceholder) {
		return pattern == key
	}
	for pattern != "" {
		before, after, found := strings.Cut(pattern, indexPlaceholder)
		if !strings.HasPrefix(key, before) {
			return false
		}
		key = key[len(before):]
		if !found {
			return key == ""
		}
		n := 0
		for n < len(key) && key[n] >= '0' && key[n] <= '9' {
			n++
		}
		if n == 0 {
			return false
		}
		key, pattern = key[n:], after
	}
	return key == ""
}
