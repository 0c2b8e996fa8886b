package reelq

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/wire"
)

// Job is a job request, published on its JobSubject.
type Job struct {
	// ID identifies the job everywhere: the subject's last token, the
	// Nats-Msg-Id, the result subject and the job state key. 1-128 of
	// [A-Za-z0-9_-]; ids starting with "seq-" are reserved for messages
	// the worker has to name itself. Generated when absent (see ContentID).
	ID       string `json:"id,omitempty"`
	Provider string `json:"provider"`
	// Batch labels the job for stats, status, cancel, budgets; it is also
	// the default fairness key. It is not part of the job's identity.
	Batch string `json:"batch,omitempty"`
	// Priority is high, normal (the default) or low; it must agree with the
	// subject (jobs.<provider>.high.<id> for high).
	Priority Priority `json:"priority,omitempty"`
	// FairnessKey groups jobs that share the provider's capacity
	// round-robin within a priority (a tenant, say). Default: Batch.
	FairnessKey string          `json:"fairness_key,omitempty"`
	Input       json.RawMessage `json:"input"`
	// Metadata is any JSON, echoed in the result.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Expect overrides, field by field, what the provider expects its
	// outputs to be as media (see Expect). Not part of the job's digest.
	Expect *Expect `json:"expect,omitempty"`
	// EnqueuedAt is set by the client; the worker falls back to the
	// stream timestamp.
	EnqueuedAt *time.Time `json:"enqueued_at,omitempty"`
}

// Priority orders a provider's queue: a free slot goes to a high job
// before a normal one, and to a normal one before a low one (with a
// minimum share for the lower levels, so they never starve).
type Priority string

// The priorities. The empty Priority means Normal.
const (
	High   Priority = "high"
	Normal Priority = "normal"
	Low    Priority = "low"
)

// Priorities lists the priorities from the highest.
var Priorities = []Priority{High, Normal, Low}

// Or returns p, or Normal when p is empty.
func (p Priority) Or() Priority {
	if p == "" {
		return Normal
	}
	return p
}

// Rank is 3 for high, 2 for normal (and empty), 1 for low.
func (p Priority) Rank() int {
	switch p {
	case High:
		return 3
	case Low:
		return 1
	}
	return 2
}

func (p Priority) valid() bool { return p == "" || p == High || p == Normal || p == Low }

// FairKey is the job's fairness key: FairnessKey, or else Batch.
func (j *Job) FairKey() string {
	if j.FairnessKey != "" {
		return j.FairnessKey
	}
	return j.Batch
}

// Size limits: job requests beyond them are refused by the client and
// dead-lettered by the worker, and the JOBS stream refuses messages over
// MaxJobBytes at publish time, so every accepted message fits in the DLQ
// with its headers.
const (
	MaxInputBytes    = 32 << 10
	MaxMetadataBytes = 16 << 10
	MaxJobBytes      = 64 << 10
)

// Limits are the size limits in force; the zero value means the defaults.
type Limits struct {
	MaxInputBytes, MaxMetadataBytes, MaxJobBytes int
}

func (l Limits) withDefaults() Limits {
	if l.MaxInputBytes <= 0 {
		l.MaxInputBytes = MaxInputBytes
	}
	if l.MaxMetadataBytes <= 0 {
		l.MaxMetadataBytes = MaxMetadataBytes
	}
	if l.MaxJobBytes <= 0 {
		l.MaxJobBytes = MaxJobBytes
	}
	return l
}

// ErrInvalidJob classifies a job request that can never run: bad JSON,
// unknown provider, bad id, a field over its size limit, or input the
// provider's rules reject.
var ErrInvalidJob = kind.ErrInvalidJob

// ValidID reports whether id can be a job id: 1-128 characters of
// [A-Za-z0-9_-], so it is one NATS subject token and a KV key.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// Validator checks one provider's input offline.
type Validator interface {
	Validate(input json.RawMessage) error
}

// Validate checks j's envelope and, through the provider's validator, its
// input. The error wraps ErrInvalidJob and names the field at fault.
// validators maps provider names to validators; nil checks the envelope
// only.
//
// Every broken rule is reported, not only the first: the error's message
// lists them separated by "; " (a rule that depends on another, such as
// the provider's input rules on a known provider and a valid input, is
// checked only when that one holds).
func (j *Job) Validate(validators map[string]Validator, lim Limits) error {
	lim = lim.withDefaults()
	var bad problems
	switch {
	case j.ID != "" && !ValidID(j.ID):
		bad.addf("id %q must be 1-128 characters of letters, digits, '-' or '_'", j.ID)
	case strings.HasPrefix(j.ID, "seq-"):
		bad.addf("id %q: the seq- prefix is reserved for messages the worker names itself", j.ID)
	}
	if j.Batch != "" && !ValidID(j.Batch) {
		bad.addf("batch %q must be 1-128 characters of letters, digits, '-' or '_'", j.Batch)
	}
	if j.FairnessKey != "" && !ValidID(j.FairnessKey) {
		bad.addf("fairness_key %q must be 1-128 characters of letters, digits, '-' or '_'", j.FairnessKey)
	}
	if !j.Priority.valid() {
		bad.addf("priority %q must be high, normal or low", j.Priority)
	}
	known := KnownProvider(j.Provider)
	switch {
	case j.Provider == "":
		bad.addf("provider is required (one of %s)", strings.Join(Providers, ", "))
	case !known:
		bad.addf("unknown provider %q (one of %s)", j.Provider, strings.Join(Providers, ", "))
	}
	inputOK := false
	switch in := bytes.TrimSpace(j.Input); {
	case len(in) == 0 || string(in) == "null":
		bad.addf("input is required")
	case len(j.Input) > lim.MaxInputBytes:
		bad.addf("input is %d bytes; the limit is %d", len(j.Input), lim.MaxInputBytes)
	default:
		inputOK = bad.add(checkJSON("input", j.Input))
	}
	metaOK := true
	switch {
	case len(j.Metadata) > lim.MaxMetadataBytes:
		metaOK = false
		bad.addf("metadata is %d bytes; the limit is %d", len(j.Metadata), lim.MaxMetadataBytes)
	case len(j.Metadata) > 0:
		metaOK = bad.add(checkJSON("metadata", j.Metadata))
	}
	j.Expect.check(&bad)
	if j.ID != "" && known && inputOK && metaOK {
		bad.add(wire.CheckContentID(j.ID, j.Digest()))
	}
	if v, ok := validators[j.Provider]; ok && v != nil && inputOK {
		if err := v.Validate(j.Input); err != nil {
			bad.add(kind.Readable(fmt.Errorf("%w: %w", ErrInvalidJob, err)))
		}
	}
	return bad.err()
}

// problems collects the rules a job breaks.
type problems struct{ errs []error }

// add records err (each wraps ErrInvalidJob) and reports whether it was nil.
func (p *problems) add(err error) bool {
	if err != nil {
		p.errs = append(p.errs, err)
	}
	return err == nil
}

func (p *problems) addf(format string, args ...any) {
	p.add(fmt.Errorf("%w: "+format, append([]any{ErrInvalidJob}, args...)...))
}

// err is nil, the one error, or an error listing them all that matches
// each one's classes with errors.Is.
func (p *problems) err() error { return kind.JoinInvalid(p.errs...) }

// DecodeJob parses a job request strictly: unknown top-level fields are
// rejected, so a typo ("inputs") is an error rather than a silent empty
// input. Errors name the field the way a person reads it.
func DecodeJob(data []byte) (Job, error) {
	var j Job
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return j, fmt.Errorf("%w: %s", ErrInvalidJob, describeJSONError(data, err))
	}
	if dec.More() {
		return j, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidJob)
	}
	return j, nil
}

func describeJSONError(data []byte, err error) string {
	if len(bytes.TrimSpace(data)) == 0 {
		return "empty message"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("not valid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(err.Error(), "invalid character "))
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Sprintf("a job must be a JSON object, not a %s", te.Value)
		}
		return fmt.Sprintf("field %q must be %s, not %s", te.Field, jsonKind(te.Type.String()), te.Value)
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + msg + " (fields: id, provider, batch, priority, fairness_key, input, metadata, enqueued_at)"
	}
	if errors.Is(err, errUnexpectedEOF) || strings.Contains(err.Error(), "unexpected end of JSON input") {
		return "the JSON object is cut short"
	}
	return err.Error()
}

var errUnexpectedEOF = errors.New("unexpected EOF")

func jsonKind(goType string) string {
	switch {
	case goType == "string", goType == "reelq.Priority":
		return "a string"
	case strings.Contains(goType, "time.Time"):
		return "an RFC 3339 time string"
	case strings.HasPrefix(goType, "json.RawMessage"):
		return "JSON"
	}
	return goType
}

// Digest is the job's content digest, "sha256:<hex>", over its provider,
// input and metadata in canonical form (keys sorted, whitespace removed,
// numbers as written). Id, batch, priority and fairness key are not part
// of it. A job id already known with a different digest is refused.
func (j *Job) Digest() string {
	h := sha256.New()
	h.Write([]byte(j.Provider))
	h.Write([]byte{0})
	writeCanonical(h, j.Input)
	h.Write([]byte{0})
	writeCanonical(h, j.Metadata)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// checkJSON refuses field's JSON unless it is valid and means exactly
// what its bytes say: invalid UTF-8 and lone UTF-16 surrogate escapes
// (which decoding silently replaces with U+FFFD) and an object key given
// twice (which parsers resolve differently) are errors naming the byte.
func checkJSON(field string, raw []byte) error {
	if !json.Valid(raw) {
		return fmt.Errorf("%w: %s is not valid JSON", ErrInvalidJob, field)
	}
	if !utf8.Valid(raw) {
		at := 0
		for at < len(raw) {
			r, n := utf8.DecodeRune(raw[at:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			at += n
		}
		return fmt.Errorf("%w: %s is not valid UTF-8 (byte %d)", ErrInvalidJob, field, at+1)
	}
	if at := loneSurrogate(raw); at >= 0 {
		return fmt.Errorf("%w: %s holds a lone UTF-16 surrogate escape %s (byte %d), which no text can hold", ErrInvalidJob, field, raw[at:at+6], at+1)
	}
	if key, at := duplicateKey(raw); at >= 0 {
		return fmt.Errorf("%w: %s gives the key %q twice (byte %d)", ErrInvalidJob, field, key, at+1)
	}
	return nil
}

// loneSurrogate returns the offset of the first \uXXXX escape in valid
// JSON that is half of a UTF-16 surrogate pair without its other half,
// or -1.
func loneSurrogate(raw []byte) int {
	in := false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '"':
			in = !in
		case c != '\\' || !in:
		case raw[i+1] != 'u':
			i++ // a one-character escape, \" included
		default:
			r := hexRune(raw[i+2 : i+6])
			switch {
			case r >= 0xd800 && r < 0xdc00:
				if i+12 > len(raw) || raw[i+6] != '\\' || raw[i+7] != 'u' {
					return i
				}
				if lo := hexRune(raw[i+8 : i+12]); lo < 0xdc00 || lo >= 0xe000 {
					return i
				}
				i += 11
			case r >= 0xdc00 && r < 0xe000:
				return i
			default:
				i += 5
			}
		}
	}
	return -1
}

func hexRune(h []byte) rune {
	n, _ := strconv.ParseUint(string(h), 16, 32)
	return rune(n)
}

// duplicateKey returns the first object key valid JSON gives twice in one
// object and the offset after it, or -1.
func duplicateKey(raw []byte) (string, int) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	type frame struct {
		keys     map[string]bool // nil for an array
		wantsKey bool
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", -1 // io.EOF: the value ended (it is valid JSON)
		}
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, frame{keys: map[string]bool{}, wantsKey: true})
			case '[':
				stack = append(stack, frame{})
			default:
				stack = stack[:top]
				if top > 0 && stack[top-1].keys != nil {
					stack[top-1].wantsKey = true
				}
			}
			continue
		}
		if top < 0 || stack[top].keys == nil {
			continue
		}
		if stack[top].wantsKey {
			k := tok.(string)
			if stack[top].keys[k] {
				return k, int(dec.InputOffset())
			}
			stack[top].keys[k] = true
			stack[top].wantsKey = false
		} else {
			stack[top].wantsKey = true
		}
	}
}

// writeCanonical writes raw JSON in canonical form: objects with sorted
// keys, no insignificant whitespace, numbers as written. Invalid JSON is
// written as is.
func writeCanonical(w interface{ Write([]byte) (int, error) }, raw json.RawMessage) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		_, _ = w.Write(raw)
		return
	}
	b, err := json.Marshal(v) // maps marshal with sorted keys; json.Number as written
	if err != nil {
		_, _ = w.Write(raw)
		return
	}
	_, _ = w.Write(b)
}

// NewID returns a fresh random job id: a time-ordered prefix and a random
// suffix.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%x", strings.ToLower(time.Now().UTC().Format("20060102t150405")), b)
}

// CheckMessage reports a job message larger than MaxJobBytes.
func (l Limits) CheckMessage(n int) error {
	l = l.withDefaults()
	if n > l.MaxJobBytes {
		return fmt.Errorf("%w: the message is %d bytes; the limit is %d", ErrInvalidJob, n, l.MaxJobBytes)
	}
	return nil
}
