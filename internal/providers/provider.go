package providers

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/reelq/reelq/internal/providers/kind"
)

// Provider is one paid video API. Implementations must be safe for
// concurrent use by many jobs.
type Provider interface {
	// Name is the provider's name in subjects (its Spec's Kind.Name).
	Name() string
	// Validate checks a job's input against the provider's documented rules
	// without any network call. It returns an error wrapping
	// ErrInvalidInput that names the offending field.
	Validate(input json.RawMessage) error
	// Estimate returns the expected cost of running input. It is only
	// called with input that passed Validate.
	Estimate(input json.RawMessage) Cost
	// Submit starts a paid generation. This is the call that costs money.
	Submit(ctx context.Context, req Request) (Task, error)
	// Poll reports the current state of a task returned by Submit.
	Poll(ctx context.Context, task Task) (Status, error)
}

// Canceler is implemented by providers whose API can stop a running task.
type Canceler interface {
	Cancel(ctx context.Context, task Task) error
}

// Finder is implemented by providers that can look up a task by the job
// reference sent with Submit. The worker uses it to recover a task whose
// submission succeeded but whose id was never recorded (a crash mid-call).
type Finder interface {
	// Find returns the task submitted for req, or an error wrapping
	// ErrNotFound if the provider has none.
	Find(ctx context.Context, req Request) (Task, error)
}

// CreditChecker is implemented by providers with a cheap balance endpoint.
// While a provider is paused for exhausted credits, the worker probes it
// instead of spending a job on the probe.
type CreditChecker interface {
	// CheckCredits returns nil when the account can pay for new work, and an
	// error wrapping ErrCreditsExhausted when it cannot.
	CheckCredits(ctx context.Context) error
}

// Request is what the worker asks a provider to generate.
type Request struct {
	// JobID is reelq's stable job id. Adapters send it wherever the API can
	// carry a client reference (an idempotency key, a title) so a lost
	// response can be recovered.
	JobID string
	// Input is the provider-specific input from the job request.
	Input json.RawMessage
	// CallbackURL is the job's callback URL on reelq's inbound endpoint
	// when callbacks are on for the provider (P_CALLBACKS), else "".
	// Adapters register it where the API takes a callback URL: a callback
	// only wakes the job's poll (docs/webhooks.md).
	CallbackURL string
}

// Task identifies a generation running at the provider. It is stored in the
// job state so that a redelivered job resumes polling instead of paying again.
type Task struct {
	// ID is the provider's id for the task (a request, workflow or task id).
	ID string `json:"id"`
	// PollURL is the URL to poll, when the provider returns one (Segmind).
	PollURL string `json:"poll_url,omitempty"`
	// ResultURL and CancelURL are the URLs to fetch the result and to
	// cancel, when the submit answer gives them (fal.ai, Replicate).
	ResultURL string `json:"result_url,omitempty"`
	CancelURL string `json:"cancel_url,omitempty"`
}

// State is the coarse state of a task.
type State int

const (
	// Pending means the task is queued or running.
	Pending State = iota
	// Succeeded means the task finished and Status.Outputs is set.
	Succeeded
	// Failed means the task finished without output; Status.Err says why.
	Failed
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Succeeded:
		return "succeeded"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Status is one poll's view of a task.
type Status struct {
	State State
	// Raw is the provider's own status word (QUEUED, PENDING, success, ...).
	Raw string
	// Progress is 0-100 when the provider reports it, or -1.
	Progress float64
	// Outputs holds the result URLs when State is Succeeded.
	Outputs []Output
	// Err says why the task failed when State is Failed. It wraps one of the
	// error classes: usually ErrTaskFailed; ErrCreditsExhausted for a task
	// that failed unpaid for missing credits (a provider whose Spec sets
	// CreditsOnPoll), which the worker submits again once credits return.
	Err error
	// NamesJob says the provider's task carries the reelq job it was
	// submitted for (a reference the adapter sent with it); JobRef is
	// that job, or "" when this task names none (it was not created by
	// reelq).
	NamesJob bool
	JobRef   string
}

// Output is one generated artefact.
type Output struct {
	URL         string `json:"url"`
	ContentType string `json:"content_type,omitempty"`
	// Name is the provider's label for the output (an output node, "audio"),
	// when it has one.
	Name string `json:"name,omitempty"`
}

// Cost is an estimate of what a job costs at the provider (see [kind.Cost]).
type Cost = kind.Cost
