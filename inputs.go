package reelq

import (
	"fmt"

	"github.com/reelq/reelq/internal/providers/kind"
)

// Input is a provider's job input as a Go value: one of the typed inputs
// (SamsarInput, CambInput, ...; see providers_gen.go). NewJob turns one
// into a Job. Each is encoded as the JSON object the provider's section of
// docs/providers.md describes, under the same field names; the JSON names
// (input.prompt, input.duration, ...) are the ones errors use.
type Input interface {
	// Provider is the provider that runs the input ("samsar", ...).
	Provider() string
	// Validate checks the input with the rules of a worker running the
	// provider with its default options, without a server (see
	// [Client.Validate] for a configured deployment's). The error
	// wraps ErrInvalidJob and names the field at fault:
	// `reelq: invalid job: input.duration is 121 s; the limit is 120 s`.
	Validate() error
}

// NewJob returns a job with id (empty: the content id EnqueueBatch gives
// it) for in's provider. It checks the id and the size of the
// input, not the provider's rules, which depend on the deployment's
// provider options (models, workflows): in.Validate checks those with the
// defaults, Client.Validate with the client's, and Enqueue always does.
// Set Batch, Priority, FairnessKey and Metadata on the returned job.
func NewJob(id string, in Input) (Job, error) {
	if in == nil {
		return Job{}, fmt.Errorf("%w: input is required", ErrInvalidJob)
	}
	raw, err := encodeInput(in)
	if err != nil {
		return Job{}, err
	}
	j := Job{ID: id, Provider: in.Provider(), Input: raw}
	if err := j.Validate(nil, Limits{}); err != nil {
		return Job{}, err
	}
	return j, nil
}

// encodeInput encodes a typed input as a job's input.
func encodeInput(in Input) ([]byte, error) {
	k, ok := kindOf(in.Provider())
	if !ok {
		return nil, fmt.Errorf("%w: unknown provider %q", ErrInvalidJob, in.Provider())
	}
	return kind.EncodeTyped(k, in)
}

// kindOf returns the provider named name.
func kindOf(name string) (kind.Kind, bool) {
	for _, k := range kinds {
		if k.Name == name {
			return k, true
		}
	}
	return kind.Kind{}, false
}
