// Package input is Segmind's job input, HTTP-free: the typed Input
// (re-exported as reelq.SegmindInput), the options its rules depend on,
// its validation and its cost estimate. The adapter (package segmind)
// sends what Parse returns.
package input

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/providers/kind"
)

// Name is the provider's name in subjects and configuration.
const Name = "segmind"

// Documented facts about the default workflow ("AI Video Story Boarding").
const (
	DefaultWorkflowID = "67ee7aecd4ffdb6b8c9315ea-v4"
	// DefaultPricePerRun is $2.4066 per run, from the workflow's API page.
	DefaultPricePerRun money.Micros = 2_406_600
	// WorkflowIDKey is the reserved input key that picks the workflow; it
	// is removed from the body sent to Segmind.
	WorkflowIDKey = "workflow_id"
)

var workflowIDRe = regexp.MustCompile(`^[0-9a-f]{24}-v[0-9]+$`)

// Options are the provider options the input rules depend on.
type Options struct {
	// WorkflowID is used when the job input has no workflow_id; default
	// DefaultWorkflowID. Shape: 24 hex digits, "-v", version.
	WorkflowID string `env:"WORKFLOW_ID" help:"the workflow of a job that names none (24 hex digits, -v, version)"`
	// PricePerRun is the cost estimate in USD, read exactly as a decimal
	// (money.Parse); default DefaultPricePerRun.
	PricePerRun money.Micros `env:"PRICE_PER_RUN" help:"cost estimate of one workflow run, in USD"`
}

func (o Options) withDefaults() Options {
	if o.WorkflowID == "" {
		o.WorkflowID = DefaultWorkflowID
	}
	if o.PricePerRun <= 0 {
		o.PricePerRun = DefaultPricePerRun
	}
	return o
}

// Input runs a Segmind PixelFlow workflow (POST
// /workflows/{workflow_id}). A workflow takes its own named inputs, so
// they are a map; the default workflow, "AI Video Story Boarding", takes
// none. It costs the workflow's price per run (SEGMIND_PRICE_PER_RUN,
// default $2.4066).
type Input struct {
	// WorkflowID picks the workflow: 24 lowercase hex digits, "-v" and a
	// version (67ee7aecd4ffdb6b8c9315ea-v4). Empty means the workers'
	// SEGMIND_WORKFLOW_ID (by default the storyboard workflow).
	WorkflowID string
	// Inputs are the workflow's named inputs, sent to Segmind unchanged
	// as one flat JSON object ({"input_image": "https://..."}). Values
	// are anything encoding/json encodes. The key "workflow_id" is
	// reserved for WorkflowID.
	Inputs map[string]any
}

// Provider names the provider that runs the input.
func (Input) Provider() string { return Name }

// Validate checks the input with the rules of a worker running Segmind
// with its default options, without a server. The error wraps
// reelq.ErrInvalidJob and names the field at fault.
func (in Input) Validate() error { return kind.ValidateTyped(Kind, in) }

// MarshalJSON encodes the input as Segmind takes it: the named inputs and
// workflow_id in one object.
func (in Input) MarshalJSON() ([]byte, error) {
	if _, ok := in.Inputs[WorkflowIDKey]; ok {
		return nil, fmt.Errorf("%w: segmind input: set the workflow with WorkflowID, not Inputs[\"workflow_id\"]", kind.ErrInvalidJob)
	}
	fields := make(map[string]any, len(in.Inputs)+1)
	maps.Copy(fields, in.Inputs)
	if in.WorkflowID != "" {
		fields[WorkflowIDKey] = in.WorkflowID
	}
	b, err := kind.EncodeJSON(fields)
	if err != nil {
		var ue *json.UnsupportedTypeError
		var uv *json.UnsupportedValueError
		if errors.As(err, &ue) || errors.As(err, &uv) {
			return nil, fmt.Errorf("%w: segmind input: the value of %s cannot be sent as JSON: %v", kind.ErrInvalidJob, badKey(in.Inputs), err)
		}
		return nil, fmt.Errorf("%w: segmind input: %v", kind.ErrInvalidJob, err)
	}
	return b, nil
}

// badKey names the first input (in key order) that does not encode.
func badKey(m map[string]any) string {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if _, err := json.Marshal(m[k]); err != nil {
			return "input." + k
		}
	}
	return "an input"
}

// UnmarshalJSON reads the object MarshalJSON writes (a job's input).
func (in *Input) UnmarshalJSON(data []byte) error {
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("segmind input must be a JSON object of the workflow's named inputs: %w", err)
	}
	*in = Input{}
	if v, ok := fields[WorkflowIDKey]; ok {
		s, isString := v.(string)
		if !isString {
			return errors.New("segmind input: workflow_id must be a string")
		}
		in.WorkflowID = s
		delete(fields, WorkflowIDKey)
	}
	if len(fields) > 0 {
		in.Inputs = fields
	}
	return nil
}

// Parse decodes and checks a job's input under o: the workflow's flat
// JSON object of named inputs ({} or nothing for workflows without
// parameters), optionally with a workflow_id. The Input it returns names
// its workflow (o's default if the job names none), and each of its
// Inputs is the job's JSON value as written (a json.RawMessage), so
// Segmind receives exactly what the job held.
func Parse(raw json.RawMessage, o Options) (Input, error) {
	o = o.withDefaults()
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return Input{}, kind.Invalid(Name, "input must be a JSON object of the workflow's named inputs")
	}
	in := Input{WorkflowID: o.WorkflowID}
	if v, ok := fields[WorkflowIDKey]; ok {
		if err := json.Unmarshal(v, &in.WorkflowID); err != nil {
			return Input{}, kind.Invalid(Name, "input.%s must be a string", WorkflowIDKey)
		}
		delete(fields, WorkflowIDKey)
	}
	if !workflowIDRe.MatchString(in.WorkflowID) {
		return Input{}, kind.Invalid(Name, "input.%s %q is not a workflow id (24 hex digits, \"-v\", version, e.g. %s)", WorkflowIDKey, in.WorkflowID, DefaultWorkflowID)
	}
	in.Inputs = make(map[string]any, len(fields))
	for k, v := range fields {
		if strings.TrimSpace(k) == "" {
			return Input{}, kind.Invalid(Name, "input has an empty key")
		}
		in.Inputs[k] = v
	}
	return in, nil
}

// Price is the workflow's list price per run.
func Price(in Input, o Options) kind.Cost {
	o = o.withDefaults()
	return kind.Cost{Amount: o.PricePerRun.Float(), Unit: "usd", Basis: fmt.Sprintf("list price per run of workflow %s", in.WorkflowID)}
}

//go:embed schema.json
var schema []byte

// Kind is Segmind as the public package knows it.
var Kind = kind.New(kind.Kind{Name: Name, Title: "Segmind", Unit: "usd", Schema: schema}, Parse, Price)
