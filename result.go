package reelq

import (
	"encoding/json"
	"time"
)

// Result statuses.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Result is the terminal event of one run of a job, published on
// ResultSubject(provider, id) with Nats-Msg-Id ResultMsgID(id, run). A job
// has exactly one result per run; most jobs have one run.
type Result struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	Batch    string `json:"batch,omitempty"`
	// Run numbers the job's runs from 1 (see Client.Retry).
	Run     int      `json:"run"`
	Status  string   `json:"status"`
	Outputs []Output `json:"outputs,omitempty"`
	// Error says why the run did not succeed.
	Error *ErrorInfo `json:"error,omitempty"`
	// Attempts counts attempts made, with retries after retryable errors
	// (pauses, 429s and shutdowns do not count).
	Attempts       int    `json:"attempts"`
	ProviderTaskID string `json:"provider_task_id,omitempty"`
	// Cost is the estimate for what was submitted (absent when nothing
	// was). Submissions paid twice through an ambiguous submission count
	// twice.
	Cost *Cost `json:"cost,omitempty"`
	// PayOnce says whether this run was paid for at most once:
	// PayOnceGuaranteed when the provider can recover a lost submission (an
	// idempotency key or a lookup; see `enqueue providers`), or when no
	// paid call of the run was made again after an unknown outcome;
	// PayOnceBestEffort when one was (the resubmit policy, or an
	// operator's resolve --resubmit, for a provider that cannot recover
	// it): the provider may have billed more than once, and Cost counts
	// each submission.
	PayOnce string `json:"pay_once"`
	// OutputRetries counts the paid runs of the provider made again
	// because an output failed its media check (P_OUTPUT_POLICY=retry);
	// Cost counts each.
	OutputRetries int             `json:"output_retries,omitempty"`
	EnqueuedAt    *time.Time      `json:"enqueued_at,omitempty"`
	SubmittedAt   *time.Time      `json:"submitted_at,omitempty"`
	CompletedAt   time.Time       `json:"completed_at"`
	Metadata      json.RawMessage `json:"metadata,omitempty"`
	// Priority and FairnessKey are the job's, when set.
	Priority    Priority `json:"priority,omitempty"`
	FairnessKey string   `json:"fairness_key,omitempty"`
	// Traceparent is the W3C trace context of the worker's span of the run
	// (reelq.job, a child of the job's traceparent); the job's own
	// traceparent when the worker records no span.
	Traceparent string `json:"traceparent,omitempty"`
}

// Output is one generated artefact.
type Output struct {
	// URL is the provider's link (it expires: about an hour for Segmind,
	// 24 hours for Camb audio).
	URL         string `json:"url"`
	ContentType string `json:"content_type,omitempty"`
	// Name is the provider's label for the output, when it has one.
	Name string `json:"name,omitempty"`
	// Archive is the durable copy the worker made before publishing the
	// result, when archiving is on and succeeded.
	Archive *ArchivedCopy `json:"archive,omitempty"`
	// ArchiveError says why there is no archived copy (the link was gone,
	// the file too large, ...), when archiving is on and failed.
	ArchiveError string `json:"archive_error,omitempty"`
	// Media is what the output's bytes are, as the worker saw them while
	// archiving (or downloading, with archiving off); absent when they
	// could not be downloaded.
	Media *MediaInfo `json:"media,omitempty"`
	// ValidationError says why the output failed its media check.
	ValidationError *ValidationError `json:"validation_error,omitempty"`
}

// ArchivedCopy locates an output's durable copy.
type ArchivedCopy struct {
	// Store is "jetstream" (a JetStream object store) or "s3".
	Store string `json:"store"`
	// Bucket is the object store or S3 bucket; Key the object's name,
	// <job_id>/<run>/<index>.
	Bucket      string `json:"bucket"`
	Key         string `json:"key"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type,omitempty"`
	SHA256      string `json:"sha256"`
}

// Cost is an estimate of what a job costs at the provider.
type Cost struct {
	Amount float64 `json:"amount"`
	// Unit is "usd" or "credits".
	Unit string `json:"unit"`
	// Basis explains the estimate, e.g. "10 credits/s x 30 s".
	Basis string `json:"basis,omitempty"`
}

// ErrorInfo says why a run did not succeed.
type ErrorInfo struct {
	// Code is a stable snake_case class (see the Code* constants). A run
	// that ran out of attempts carries its last error's class, and its
	// message says "gave up after N attempts".
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Values of Result.PayOnce.
const (
	PayOnceGuaranteed = "guaranteed"
	PayOnceBestEffort = "best_effort"
)

// Error codes of results.
const (
	CodeInvalidInput      = "invalid_input"      // the provider's rules reject the input
	CodeInvalidRequest    = "invalid_request"    // unreadable or contradictory message (answered under a seq- id)
	CodeConflict          = "conflict"           // the id is known with different content (answered under a seq- id)
	CodeAuth              = "auth"               // the provider rejected the account's credentials
	CodeForbidden         = "forbidden"          // the provider refused this one job (a private workflow, say)
	CodeCreditsExhausted  = "credits_exhausted"  // only when attempts ran out while credits were missing
	CodeRateLimited       = "rate_limited"       // only when attempts ran out on 429s
	CodeUnavailable       = "unavailable"        // 5xx, timeouts, network errors, attempts exhausted
	CodeNotFound          = "not_found"          // the provider lost the task
	CodeProviderFailed    = "provider_failed"    // the provider reported the task failed
	CodeUnknownSubmission = "unknown_submission" // the provider answered a submit without a task id; never resubmitted
	CodeTimeout           = "timeout"            // the task did not finish within the job timeout
	CodeResultTooLarge    = "result_too_large"   // the provider's answer does not fit in the job state (too many outputs or too much text)
	CodeCancelled         = "cancelled"
	CodeInvalidOutput     = "invalid_output" // an output failed its media check (P_OUTPUT_POLICY=fail, or retries used up)
	CodePoison            = "poison"         // delivered too many times without being settled
	CodeInternal          = "internal"       // a reelq bug
)
