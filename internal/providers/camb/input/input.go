// Package input is Camb.ai's job input, HTTP-free: the typed Input
// (re-exported as reelq.CambInput), its options, its validation and its
// cost estimate. The adapter (package camb) sends what Parse returns.
package input

import (
	_ "embed"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/providers/kind"
)

// Name is the provider's name in subjects and configuration.
const Name = "camb"

// Documented limits of POST /story.
const (
	MinLanguage    = 1
	MaxLanguage    = 148
	MinTitle       = 3
	MaxTitle       = 255
	MinDescription = 3
	MaxDescription = 5000
	// DefaultCreditsPerTask is the cost estimate: Camb publishes no story price.
	DefaultCreditsPerTask money.Micros = 1 * money.Scale
)

// Options are the provider options the estimate depends on
// (CAMB_CREDITS_PER_TASK).
type Options struct {
	// CreditsPerTask is the cost estimate per story, read exactly as a
	// decimal; default DefaultCreditsPerTask.
	CreditsPerTask money.Micros `env:"CREDITS_PER_TASK" help:"cost estimate per story (Camb publishes no story price)"`
}

// Input is a narrated audio story for Camb.ai (POST /apis/story): it
// makes audio, not video. Camb publishes no story price; it is estimated
// at CAMB_CREDITS_PER_TASK (1) credit.
type Input struct {
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
	// leaves it to Camb. A job written by hand may call it voice.
	NarratorVoiceID int `json:"narrator_voice_id,omitempty"`
	// ChosenDictionaries are ids of pronunciation dictionaries to apply.
	ChosenDictionaries []int `json:"chosen_dictionaries,omitempty"`
	// FolderID files the story in one of the account's folders.
	FolderID int `json:"folder_id,omitempty"`
}

// Provider names the provider that runs the input.
func (Input) Provider() string { return Name }

// Validate checks the input with the rules of a worker running Camb with
// its default options, without a server. The error wraps
// reelq.ErrInvalidJob and names the field at fault.
func (in Input) Validate() error { return kind.ValidateTyped(Kind, in) }

// wire is a job's input as written: a field set to zero is told from one
// left out, and the voice may be spelt voice.
type wire struct {
	Input
	SourceLanguage  *int `json:"source_language"`
	NarratorVoiceID *int `json:"narrator_voice_id,omitempty"`
	Voice           *int `json:"voice,omitempty"`
	FolderID        *int `json:"folder_id,omitempty"`
}

// Parse decodes and checks a job's input. In the Input it returns, a zero
// NarratorVoiceID or FolderID and a nil ChosenDictionaries were absent.
// The error names every rule the input breaks, not only the first.
func Parse(raw json.RawMessage, _ Options) (Input, error) {
	var w wire
	if err := kind.StrictDecode(raw, &w); err != nil {
		return Input{}, kind.Invalid(Name, "input: %v", err)
	}
	in := w.Input
	bad := kind.Problems{Provider: Name}
	switch {
	case strings.TrimSpace(in.Text) == "":
		bad.Add("input.text is required (the story to narrate)")
	case !utf8.ValidString(in.Text):
		bad.Add("input.text is not valid UTF-8")
	}
	switch {
	case w.SourceLanguage == nil:
		bad.Add("input.source_language is required (Camb language id, 1 = English)")
	case *w.SourceLanguage < MinLanguage || *w.SourceLanguage > MaxLanguage:
		bad.Add("input.source_language %d is not a language id (%d..%d)", *w.SourceLanguage, MinLanguage, MaxLanguage)
	default:
		in.SourceLanguage = *w.SourceLanguage
	}
	length(&bad, "title", in.Title, MinTitle, MaxTitle)
	length(&bad, "description", in.Description, MinDescription, MaxDescription)
	voice := w.NarratorVoiceID
	if voice != nil && w.Voice != nil && *voice != *w.Voice {
		bad.Add("input.voice and input.narrator_voice_id disagree; set one")
	}
	if voice == nil {
		voice = w.Voice
	}
	if voice != nil {
		if *voice <= 0 {
			bad.Add("input.narrator_voice_id must be a positive voice id")
		}
		in.NarratorVoiceID = *voice
	}
	if in.ChosenDictionaries != nil && len(in.ChosenDictionaries) == 0 {
		bad.Add("input.chosen_dictionaries must list at least one dictionary id when present")
	}
	if w.FolderID != nil {
		if *w.FolderID <= 0 {
			bad.Add("input.folder_id must be a positive folder id")
		}
		in.FolderID = *w.FolderID
	}
	return in, bad.Err()
}

// length checks an optional string's length in characters.
func length(bad *kind.Problems, field, s string, lo, hi int) {
	if s == "" {
		return
	}
	if n := utf8.RuneCountInString(s); n < lo || n > hi {
		bad.Add("input.%s is %d characters; it must be %d to %d", field, n, lo, hi)
	}
}

// Price is a flat estimate per story.
func Price(_ Input, o Options) kind.Cost {
	if o.CreditsPerTask <= 0 {
		o.CreditsPerTask = DefaultCreditsPerTask
	}
	return kind.Cost{Amount: o.CreditsPerTask.Float(), Unit: "credits",
		Basis: "estimate: flat per story (Camb publishes no story price; plans bill by characters or minutes)"}
}

//go:embed schema.json
var schema []byte

// Kind is Camb.ai as the public package knows it.
var Kind = kind.New(kind.Kind{Name: Name, Title: "Camb.ai", Unit: "credits", Schema: schema}, Parse, Price)
