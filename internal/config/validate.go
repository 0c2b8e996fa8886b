package config

import (
	"encoding"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// checkValues parses every set variable of fs the way caarlos0/env will,
// so that a bad value is reported as "NAME: invalid duration "abc"" and
// not with the Go field name. It returns one error per bad variable.
func checkValues(fs []field, environ map[string]string) []error {
	var errs []error
	for _, f := range fs {
		if strings.Contains(f.Key, indexPlaceholder) {
			for k, v := range environ {
				if matchKey(f.Key, k) && v != "" {
					if err := checkValue(f.SF, v); err != nil {
						errs = append(errs, fmt.Errorf("%s: %w", k, err))
					}
				}
			}
			continue
		}
		v, ok := environ[f.Key]
		if !ok || v == "" {
			continue // unset or empty: the default applies (tests check every default parses)
		}
		if err := checkValue(f.SF, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Key, err))
		}
	}
	return errs
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	urlType             = reflect.TypeFor[url.URL]()
	locationType        = reflect.TypeFor[time.Location]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkValue reports whether v is a valid value for the field sf.
func checkValue(sf reflect.StructField, v string) error {
	t := sf.Type
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isTextUnmarshaler(t) {
		return checkScalar(t, v)
	}
	switch t.Kind() {
	case reflect.Slice:
		sep := tagOr(sf, "envSeparator", ",")
		for _, part := range strings.Split(v, sep) {
			if err := checkScalar(deref(t.Elem()), part); err != nil {
				return fmt.Errorf("%w in list %q", err, v)
			}
		}
		return nil
	case reflect.Map:
		sep := tagOr(sf, "envSeparator", ",")
		kv := tagOr(sf, "envKeyValSeparator", ":")
		for _, part := range strings.Split(v, sep) {
			key, val, ok := strings.Cut(part, kv)
			if !ok {
				return fmt.Errorf("invalid entry %q: want key%svalue[%skey%svalue...]", part, kv, sep, kv)
			}
			if err := checkScalar(t.Key(), key); err != nil {
				return fmt.Errorf("key: %w", err)
			}
			if err := checkScalar(t.Elem(), val); err != nil {
				return fmt.Errorf("%w for key %q", err, key)
			}
		}
		return nil
	}
	return checkScalar(t, v)
}

func deref(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer {
		return t.Elem()
	}
	return t
}

func isTextUnmarshaler(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(textUnmarshalerType)
}

func tagOr(sf reflect.StructField, tag, def string) string {
	if s := sf.Tag.Get(tag); s != "" {
		return s
	}
	return def
}

// checkScalar parses one value of type t with the parsers caarlos0/env
// uses (its int is 32 bits wide).
func checkScalar(t reflect.Type, v string) error {
	switch {
	case isTextUnmarshaler(t):
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(v)); err != nil {
			return fmt.Errorf("invalid value %q: %v", v, err)
		}
		return nil
	case t == durationType:
		if _, err := time.ParseDuration(v); err != nil {
			return fmt.Errorf("invalid duration %q", v)
		}
		return nil
	case t == urlType:
		if _, err := url.Parse(v); err != nil {
			return fmt.Errorf("invalid URL %q", v)
		}
		return nil
	case t == locationType:
		if _, err := time.LoadLocation(v); err != nil {
			return fmt.Errorf("invalid time zone %q", v)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Bool:
		if _, err := strconv.ParseBool(v); err != nil {
			return fmt.Errorf("invalid boolean %q (want true or false)", v)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := t.Bits()
		if t.Kind() == reflect.Int {
			bits = 32
		}
		if _, err := strconv.ParseInt(v, 10, bits); err != nil {
			return numErr("integer", v, err)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		bits := t.Bits()
		if t.Kind() == reflect.Uint {
			bits = 32
		}
		if _, err := strconv.ParseUint(v, 10, bits); err != nil {
			return numErr("non-negative integer", v, err)
		}
	case reflect.Float32, reflect.Float64:
		if _, err := strconv.ParseFloat(v, t.Bits()); err != nil {
			return numErr("number", v, err)
		}
	}
	return nil
}

func numErr(what, v string, err error) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%s %q out of range", what, v)
	}
	return fmt.Errorf("invalid %s %q", what, v)
}
