package reelq

import (
	"errors"
	"testing"

	"github.com/reelq/reelq/internal/providers"
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
		err := readableInvalid(providers.Invalid("samsar", "%s", msg))
		if got := err.Error(); got != "invalid job: "+want {
			t.Errorf("%s\n got %s\nwant invalid job: %s", msg, got, want)
		}
		if !errors.Is(err, ErrInvalidJob) || !errors.Is(err, providers.ErrInvalidInput) {
			t.Errorf("%s: the reworded error must still match ErrInvalidJob and the provider's class", msg)
		}
	}
}
