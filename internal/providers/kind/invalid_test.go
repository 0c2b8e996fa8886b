package kind_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/reelq/reelq/internal/providers/kind"
	samsar "github.com/reelq/reelq/internal/providers/samsar/input"
)

func TestValidationErrorsAreWordedForPeople(t *testing.T) {
	for msg, want := range map[string]string{
		`input: json: unknown field "promt"`: `input: unknown field "promt"`,
		`input: json: cannot unmarshal string into Go struct field Input.duration of type float64`:    `field "duration" must be a number, not a string`,
		`input: json: cannot unmarshal number into Go struct field O.options.prompt of type string`:   `field "options.prompt" must be a string, not a number`,
		`input: json: cannot unmarshal number 1.5 into Go struct field Input.n of type int`:           `field "n" must be a whole number, not a number`,
		`input: json: cannot unmarshal string into Go struct field Input.image_urls of type []string`: `field "image_urls" must be an array, not a string`,
		`input: json: cannot unmarshal array into Go value of type samsar.Input`:                      `input must be a JSON object, not an array`,
		`input: missing`: `input is required`,
		`input.prompt is 501 characters; the limit is 500`: `input.prompt is 501 characters; the limit is 500`,
	} {
		err := kind.Readable(fmt.Errorf("%w: %w", kind.ErrInvalidJob, kind.Invalid("samsar", "%s", msg)))
		if got := err.Error(); got != "reelq: invalid job: "+want {
			t.Errorf("%s\n got %s\nwant reelq: invalid job: %s", msg, got, want)
		}
		if !errors.Is(err, kind.ErrInvalidJob) || !errors.Is(err, kind.ErrInvalidInput) {
			t.Errorf("%s: the reworded error must still match ErrInvalidJob and the provider's class", msg)
		}
	}
}

// A typed input's own decoding (through its wire struct, which embeds the
// typed Input) is worded as the docs name the fields.
func TestTypedInputErrorsNameTheField(t *testing.T) {
	for raw, want := range map[string]string{
		`{"prompt":5,"image_model":"IMAGEN3","video_model":"LUMA","duration":5}`:       `reelq: invalid job: field "prompt" must be a string, not a number`,
		`{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA","duration":"5"}`:   `reelq: invalid job: field "duration" must be a number, not a string`,
		`{"prompt":"p","image_model":"IMAGEN3","video_model":"LUMA","webhook_url":[]}`: `reelq: invalid job: field "webhook_url" must be a string, not an array`,
	} {
		_, err := samsar.Parse([]byte(raw), samsar.Options{})
		if got := kind.Readable(fmt.Errorf("%w: %w", kind.ErrInvalidJob, err)); got == nil || got.Error() != want {
			t.Errorf("%s\n got %v\nwant %s", raw, got, want)
		}
	}
}
