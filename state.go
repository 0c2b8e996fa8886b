package reelq

import (
	"encoding/json"
	"time"
)

// Phase is where a job is in its current run.
//
//	queued ──> submitting ──> submitted ──> [archiving] ──> finished
//	              │   └──> held ──(operator: resolve)──> submitted or queued
//	              └── (and any phase) ──> finished (failed or cancelled)
//
// "submitting" is written just before the paid call and "submitted"
// (with the provider's task id) just after it. A job found in
// "submitting" by a later delivery is the one window where the outcome
// of a paid call is unknown; the provider's policy then resubmits it
// (it may be paid twice) or holds it for an operator.
type Phase string

// The phases.
const (
	PhaseQueued     Phase = "queued"
	PhaseSubmitting Phase = "submitting"
	PhaseSubmitted  Phase = "submitted"
	PhaseHeld       Phase = "held"
	PhaseArchiving  Phase = "archiving"
	PhaseFinished   Phase = "finished"
)

// JobState is a job's durable record in the reelq_jobs bucket, keyed by
// job id. Only workers write it (every write a compare-and-set); anyone
// allowed to read the bucket can read it (`nats kv get reelq_jobs ID`).
// A job published but not yet picked up by a worker has no state: it is
// still a message in the JOBS stream.
type JobState struct {
	ID          string   `json:"id"`
	Provider    string   `json:"provider"`
	Batch       string   `json:"batch,omitempty"`
	Priority    Priority `json:"priority,omitempty"`
	FairnessKey string   `json:"fairness_key,omitempty"`
	// Digest is the content digest (Job.Digest) the id was first seen with.
	Digest string `json:"digest,omitempty"`
	Phase  Phase  `json:"phase"`
	// Run is the current run, from 1.
	Run int `json:"run"`
	// Seq is the JOBS stream sequence of the message that carries the
	// current run (0: the next message of this run claims it).
	Seq uint64 `json:"seq,omitempty"`
	// Input and Metadata are the job's payload, kept so a run can be
	// retried and a held job resolved after its message is gone.
	Input       json.RawMessage `json:"input,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	Expect      *Expect         `json:"expect,omitempty"`
	Traceparent string          `json:"traceparent,omitempty"`
	// Task is the provider task of the current run, from "submitted" on.
	Task *Task `json:"task,omitempty"`
	// Attempts counts this run's attempts that failed with a retryable
	// error. Pauses, rate limits and shutdowns do not count.
	Attempts int `json:"attempts"`
	// Submissions counts paid calls made for this run whose outcome was a
	// task or unknown: 1 normally, more when an ambiguous submission was
	// resubmitted (the provider may have billed each).
	Submissions int `json:"submissions,omitempty"`
	// AmbiguousSubmits counts submissions whose outcome was unknown.
	AmbiguousSubmits int `json:"ambiguous_submits,omitempty"`
	// OutputRetries counts submissions made again because an output
	// failed its media check (P_OUTPUT_POLICY=retry); each is in
	// Submissions.
	OutputRetries int `json:"output_retries,omitempty"`
	// OutputChecks records the failed media checks of this run's earlier
	// submissions, oldest first (one line each).
	OutputChecks []string `json:"output_checks,omitempty"`
	// Worker is the replica that last claimed the job; SubmitToken
	// identifies its paid call, so a late answer cannot overwrite another
	// delivery's task.
	Worker          string     `json:"worker,omitempty"`
	SubmitToken     string     `json:"submit_token,omitempty"`
	EnqueuedAt      *time.Time `json:"enqueued_at,omitempty"`
	SubmitStartedAt *time.Time `json:"submit_started_at,omitempty"`
	SubmittedAt     *time.Time `json:"submitted_at,omitempty"`
	// SubmitUnknown is set in "submitting" when the paid call ended
	// without an answer (a timeout or dropped connection).
	SubmitUnknown bool `json:"submit_unknown,omitempty"`
	// HeldReason says why the job is held for an operator.
	HeldReason string     `json:"held_reason,omitempty"`
	HeldSince  *time.Time `json:"held_since,omitempty"`
	// ResolveRefused says why a worker refused the operator's last resolve
	// of this held job (a task another job owns, one the provider does not
	// know, one that names another job); the job stays held.
	ResolveRefused string `json:"resolve_refused,omitempty"`
	// Outputs are the outputs learnt from the final poll, stored before
	// archiving so a crash re-archives from them instead of polling again.
	Outputs []Output `json:"outputs,omitempty"`
	// Reserved is the budget reservation taken for the current run's
	// submission, until it is settled.
	Reserved *Cost `json:"reserved,omitempty"`
	// LastError is the most recent error, for status.
	LastError string `json:"last_error,omitempty"`
	// Result is the current run's result event, once finished.
	Result json.RawMessage `json:"result,omitempty"`
	// Runs summarises earlier runs, oldest first.
	Runs      []RunSummary `json:"runs,omitempty"`
	UpdatedAt time.Time    `json:"updated_at"`
}

// Task identifies a generation running at the provider.
type Task struct {
	// ID is the provider's id for the generation (a request, workflow or
	// task id).
	ID string `json:"id"`
	// PollURL is the URL to poll, when the provider returns one (Segmind).
	PollURL string `json:"poll_url,omitempty"`
	// ResultURL and CancelURL are the URLs to fetch the result and to
	// cancel, when the provider's submit answer gives them (fal.ai,
	// Replicate).
	ResultURL string `json:"result_url,omitempty"`
	CancelURL string `json:"cancel_url,omitempty"`
}

// RunSummary is a finished run of a job.
type RunSummary struct {
	Run         int       `json:"run"`
	Status      string    `json:"status"`
	Code        string    `json:"code,omitempty"`
	TaskID      string    `json:"provider_task_id,omitempty"`
	Attempts    int       `json:"attempts"`
	Cost        *Cost     `json:"cost,omitempty"`
	CompletedAt time.Time `json:"completed_at"`
}

// StoredResult decodes the state's result of the current run, or nil.
func (s *JobState) StoredResult() *Result {
	if s == nil || len(s.Result) == 0 {
		return nil
	}
	var r Result
	if json.Unmarshal(s.Result, &r) != nil {
		return nil
	}
	return &r
}

// Succeeded reports whether the current run finished successfully.
func (s *JobState) Succeeded() bool {
	r := s.StoredResult()
	return s.Phase == PhaseFinished && r != nil && r.Status == StatusSucceeded
}
