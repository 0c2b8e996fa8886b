package reelq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/reelq/reelq/internal/providers/registry"
)

// Input is a provider's job input as a Go value: SamsarInput,
// SegmindInput, VimmerseInput or CambInput. NewJob turns one into a Job.
// Each is encoded as the JSON object the provider's section of
// docs/providers.md describes, under the same field names; the JSON
// names (input.prompt, input.duration, ...) are the ones errors use.
//
// The set of inputs is closed: the interface has an unexported method, so
// only this package implements it.
type Input interface {
	// Provider is the provider that runs the input ("samsar", ...).
	Provider() string
	// Validate checks the input with the rules of a worker running the
	// provider with its default options, without a server (see
	// [Client.ValidateInput] for a configured deployment's). The error
	// wraps ErrInvalidJob and names the field at fault:
	// `invalid job: input.duration is 121 s; the limit is 120 s`.
	Validate() error

	raw() (json.RawMessage, error)
}

// NewJob returns a job with id (empty: the content id EnqueueBatch gives
// it) for in's provider. It checks the id and the size of the
// input, not the provider's rules, which depend on the deployment's
// provider options (models, workflows): in.Validate checks those with the
// defaults, Client.ValidateInput with the client's, and Enqueue always does.
// Set Batch, Priority, FairnessKey and Metadata on the returned job.
func NewJob(id string, in Input) (Job, error) {
	if in == nil {
		return Job{}, fmt.Errorf("%w: input is required", ErrInvalidJob)
	}
	raw, err := in.raw()
	if err != nil {
		return Job{}, err
	}
	j := Job{ID: id, Provider: in.Provider(), Input: raw}
	if err := j.Validate(nil, Limits{}); err != nil {
		return Job{}, err
	}
	return j, nil
}

// ValidateInput checks in with the client's rules: the rules of workers
// configured with the client's provider options (Options.ProviderEnv).
// The error wraps ErrInvalidJob, as Validate's does.
func (c *Client) ValidateInput(in Input) error {
	if in == nil {
		return fmt.Errorf("%w: input is required", ErrInvalidJob)
	}
	raw, err := in.raw()
	if err != nil {
		return err
	}
	return c.Validate(&Job{Provider: in.Provider(), Input: raw})
}

// defaultValidators are the provider adapters built with no options,
// the rules of a worker with the default provider configuration.
var defaultValidators = sync.OnceValues(func() (map[string]Validator, error) {
	provs, err := registry.Validators(map[string]string{})
	if err != nil {
		return nil, err
	}
	out := make(map[string]Validator, len(provs))
	for n, p := range provs {
		out[n] = p
	}
	return out, nil
})

func validateDefault(in Input) error {
	v, err := defaultValidators()
	if err != nil {
		return fmt.Errorf("reelq: provider rules: %w", err)
	}
	raw, err := in.raw()
	if err != nil {
		return err
	}
	// The checks of Client.Validate: the job envelope (size limits) and
	// the provider's input rules, reworded for people.
	j := Job{Provider: in.Provider(), Input: raw}
	return readableInvalid(j.Validate(v, Limits{}))
}

// SamsarInput is a movie for Samsar (POST /v1/video/create_movie). It
// costs 10 credits per second of Duration.
type SamsarInput struct {
	// Prompt describes the movie: required, at most 500 characters.
	Prompt string `json:"prompt"`
	// ImageModel is required: FLUX1.1PRO or IMAGEN3 (SAMSAR_IMAGE_MODELS
	// on the workers replaces the list).
	ImageModel string `json:"image_model"`
	// VideoModel is required: LUMA, KLINGIMGTOVIDPRO, PIXVERSEI2V, WAN2.1
	// or VEOI2V (SAMSAR_VIDEO_MODELS replaces the list).
	VideoModel string `json:"video_model"`
	// Duration is the movie's length in seconds: required, above 0, at
	// most 120.
	Duration float64 `json:"duration,omitempty"`
	// AspectRatio is 16:9 or 9:16; empty leaves it to Samsar.
	AspectRatio string `json:"aspect_ratio,omitempty"`
	// Tone and VideoModelSubType exist in later versions of Samsar's API
	// and are passed through when set.
	Tone              string `json:"tone,omitempty"`
	VideoModelSubType string `json:"video_model_sub_type,omitempty"`
	// WebhookURL is an http(s) URL Samsar calls when the movie is done
	// (reelq polls either way).
	WebhookURL string `json:"webhookUrl,omitempty"`
}

// Provider implements Input.
func (SamsarInput) Provider() string { return "samsar" }

// Validate implements Input.
func (in SamsarInput) Validate() error { return validateDefault(in) }

func (in SamsarInput) raw() (json.RawMessage, error) { return marshalInput(in) }

// SegmindInput runs a Segmind PixelFlow workflow (POST
// /workflows/{workflow_id}). A workflow takes its own named inputs, so
// they are a map; the default workflow, "AI Video Story Boarding", takes
// none. It costs the workflow's price per run (SEGMIND_PRICE_PER_RUN,
// default $2.4066).
type SegmindInput struct {
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

// Provider implements Input.
func (SegmindInput) Provider() string { return "segmind" }

// Validate implements Input.
func (in SegmindInput) Validate() error { return validateDefault(in) }

func (in SegmindInput) raw() (json.RawMessage, error) {
	if _, ok := in.Inputs["workflow_id"]; ok {
		return nil, fmt.Errorf("%w: segmind input: set the workflow with WorkflowID, not Inputs[\"workflow_id\"]", ErrInvalidJob)
	}
	fields := make(map[string]any, len(in.Inputs)+1)
	for k, v := range in.Inputs {
		fields[k] = v
	}
	if in.WorkflowID != "" {
		fields["workflow_id"] = in.WorkflowID
	}
	b, err := encodeJSON(fields)
	if err != nil {
		var ue *json.UnsupportedTypeError
		var uv *json.UnsupportedValueError
		if errors.As(err, &ue) || errors.As(err, &uv) {
			return nil, fmt.Errorf("%w: segmind input: the value of %s cannot be sent as JSON: %v", ErrInvalidJob, badKey(in.Inputs), err)
		}
		return nil, fmt.Errorf("%w: segmind input: %v", ErrInvalidJob, err)
	}
	return b, nil
}

// badKey names the first input (in key order) that does not encode.
func badKey(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, err := json.Marshal(m[k]); err != nil {
			return fmt.Sprintf("input.%s", k)
		}
	}
	return "an input"
}

// MarshalJSON encodes the input as Segmind takes it: the named inputs and
// workflow_id in one object.
func (in SegmindInput) MarshalJSON() ([]byte, error) { return in.raw() }

// UnmarshalJSON reads the object MarshalJSON writes (a job's input).
func (in *SegmindInput) UnmarshalJSON(data []byte) error {
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("segmind input must be a JSON object of the workflow's named inputs: %w", err)
	}
	*in = SegmindInput{}
	if v, ok := fields["workflow_id"]; ok {
		s, isString := v.(string)
		if !isString {
			return errors.New("segmind input: workflow_id must be a string")
		}
		in.WorkflowID = s
		delete(fields, "workflow_id")
	}
	if len(fields) > 0 {
		in.Inputs = fields
	}
	return nil
}

// VimmerseInput is a Vimmerse workflow (POST /workflow): a template
// applied to images. It costs the template's credits (e.g.
// each_ugcproduct_0226 320; 100, an estimate, for templates without a
// published price).
type VimmerseInput struct {
	// TemplateID picks the template (letters, digits, '_', '-', '.');
	// empty means the workers' VIMMERSE_DEFAULT_TEMPLATE (by default
	// overlay_gray_5443).
	TemplateID string `json:"template_id,omitempty"`
	// Options are the template's options, e.g. {"prompt": "...",
	// "motion_type": "Auto", "background_urls": "https://..."}.
	Options map[string]any `json:"options,omitempty"`
	// ImageURLs are http(s) URLs of the images the template uses.
	ImageURLs []string `json:"image_urls,omitempty"`
	// Title names the workflow; reelq appends " [reelq:<job id>]" (so it
	// must not contain "[reelq:" itself). Default "reelq job".
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	// VisibilityStatus is "0" (private), "1" (unlisted, the default) or
	// "2" (public).
	VisibilityStatus string `json:"visibility_status,omitempty"`
	// WebhookURL is an http(s) URL Vimmerse calls when done, if the
	// template supports it.
	WebhookURL string `json:"webhook_url,omitempty"`
}

// Provider implements Input.
func (VimmerseInput) Provider() string { return "vimmerse" }

// Validate implements Input.
func (in VimmerseInput) Validate() error { return validateDefault(in) }

func (in VimmerseInput) raw() (json.RawMessage, error) { return marshalInput(in) }

// CambInput is a narrated audio story for Camb.ai (POST /apis/story): it
// makes audio, not video. Camb publishes no story price; it is estimated
// at CAMB_CREDITS_PER_TASK (1) credit.
type CambInput struct {
	// Text is the story: required, uploaded as story.txt.
	Text string `json:"text"`
	// SourceLanguage is Camb's id of the text's language, 1 to 148
	// (1 = English): required.
	SourceLanguage int `json:"source_language,omitempty"`
	// Title (3 to 255 characters) and Description (3 to 5000) are
	// optional.
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	// NarratorVoiceID picks the narrator's voice (e.g. 147320); zero
	// leaves it to Camb.
	NarratorVoiceID int `json:"narrator_voice_id,omitempty"`
	// ChosenDictionaries are ids of pronunciation dictionaries to apply.
	ChosenDictionaries []int `json:"chosen_dictionaries,omitempty"`
	// FolderID files the story in one of the account's folders.
	FolderID int `json:"folder_id,omitempty"`
}

// Provider implements Input.
func (CambInput) Provider() string { return "camb" }

// Validate implements Input.
func (in CambInput) Validate() error { return validateDefault(in) }

func (in CambInput) raw() (json.RawMessage, error) { return marshalInput(in) }

// marshalInput encodes a struct input.
func marshalInput(in Input) (json.RawMessage, error) {
	b, err := encodeJSON(in)
	if err != nil {
		return nil, fmt.Errorf("%w: %s input cannot be sent as JSON: %v", ErrInvalidJob, in.Provider(), err)
	}
	return b, nil
}

// encodeJSON is json.Marshal without HTML escaping (a prompt's "<" stays
// "<", as a person wrote it).
func encodeJSON(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
