package kind

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// ErrInvalidJob classifies a job request that can never run: bad JSON,
// unknown provider, bad id, a field over its size limit, or input the
// provider's rules reject. The public package exports it as
// reelq.ErrInvalidJob.
var ErrInvalidJob = errors.New("reelq: invalid job")

// MaxInputBytes is the default limit on a job's input (REELQ_MAX_INPUT_BYTES).
const MaxInputBytes = 32 << 10

// ValidateTyped checks a typed input the way a worker with the default
// options does: it encodes in (without HTML escaping), checks its size
// against MaxInputBytes and k's rules. The error wraps ErrInvalidJob and
// is worded by Readable.
func ValidateTyped(k Kind, in any) error {
	raw, err := EncodeTyped(k, in)
	if err != nil {
		return err
	}
	if len(raw) > MaxInputBytes {
		return fmt.Errorf("%w: input is %d bytes; the limit is %d", ErrInvalidJob, len(raw), MaxInputBytes)
	}
	r, err := k.Rules(nil)
	if err != nil {
		return fmt.Errorf("reelq: provider rules: %w", err)
	}
	if err := r.Validate(raw); err != nil {
		return Readable(fmt.Errorf("%w: %w", ErrInvalidJob, err))
	}
	return nil
}

// EncodeTyped encodes a typed input as a job's input: with its own
// MarshalJSON when it has one, else without HTML escaping. An input that
// cannot be encoded is an invalid job.
func EncodeTyped(k Kind, in any) ([]byte, error) {
	if m, ok := in.(interface{ MarshalJSON() ([]byte, error) }); ok {
		return m.MarshalJSON()
	}
	b, err := EncodeJSON(in)
	if err != nil {
		return nil, fmt.Errorf("%w: %s input cannot be sent as JSON: %v", ErrInvalidJob, k.Name, err)
	}
	return b, nil
}

// invalidError is a validation error reworded for people; it still
// matches ErrInvalidJob and the provider's error with errors.Is.
type invalidError struct {
	msg   string
	cause error
}

func (e *invalidError) Error() string   { return ErrInvalidJob.Error() + ": " + e.msg }
func (e *invalidError) Unwrap() []error { return []error{ErrInvalidJob, e.cause} }

// Readable rewords a provider's input rule error without its
// "<provider> validate: invalid input:" prefix and without Go's JSON
// decoder vocabulary (struct and type names).
func Readable(err error) error {
	var ie *invalidError
	if errors.As(err, &ie) {
		return err // already worded
	}
	var pe *Error
	if err == nil || !errors.As(err, &pe) || !errors.Is(err, ErrInvalidInput) {
		return err
	}
	return &invalidError{msg: readableInput(pe.Message), cause: err}
}

// JoinInvalid returns nil for no errors, the error for one, and for
// several (each wrapping ErrInvalidJob) one error listing their messages
// separated by "; ", which matches each one's classes with errors.Is and
// which Readable leaves as it is.
func JoinInvalid(errs ...error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = strings.TrimPrefix(e.Error(), ErrInvalidJob.Error()+": ")
	}
	return &invalidError{msg: strings.Join(msgs, "; "), cause: errors.Join(errs...)}
}

var (
	reTypeField = regexp.MustCompile(`^(?:input: )?json: cannot unmarshal (\w+)(?: [^ ]+)? into Go struct field [\w]+\.([\w.]+) of type (\S+)$`)
	reTypeValue = regexp.MustCompile(`^(?:input: )?json: cannot unmarshal (\w+)(?: [^ ]+)? into Go value of type \S+$`)
)

func readableInput(msg string) string {
	if m := reTypeField.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("field %q must be %s, not %s", jsonPath(m[2]), goKind(m[3]), jsonValue(m[1]))
	}
	if m := reTypeValue.FindStringSubmatch(msg); m != nil {
		return "input must be a JSON object, not " + jsonValue(m[1])
	}
	if msg == "input: missing" {
		return "input is required"
	}
	return strings.Replace(msg, "json: unknown field", "unknown field", 1)
}

// goKind names the JSON a Go type takes.
func goKind(t string) string {
	t = strings.TrimLeft(t, "*")
	switch {
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	case strings.HasPrefix(t, "map["):
		return "an object"
	}
	return "an object"
}

// jsonValue names a JSON value kind as Go's decoder reports it.
func jsonValue(v string) string {
	switch v {
	case "array", "object":
		return "an " + v
	case "bool":
		return "a boolean"
	}
	return "a " + v
}

// jsonPath drops the Go names of embedded structs (a typed input inside
// the struct that decodes it: "Input.prompt") from a decoder's field
// path; JSON names start with a lower-case letter.
func jsonPath(p string) string {
	parts := strings.Split(p, ".")
	for len(parts) > 1 && parts[0] != "" && unicode.IsUpper(rune(parts[0][0])) {
		parts = parts[1:]
	}
	return strings.Join(parts, ".")
}
