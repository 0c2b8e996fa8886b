package reelq

import "time"

// Event is a progress or operator event, published on
// JobEventSubject(provider, kind, job id) when it is about one job, else
// EventSubject(provider, kind), and kept in the EVENTS stream. Events are
// best-effort: a lost event never affects a job.
type Event struct {
	Kind     string    `json:"kind"`
	Provider string    `json:"provider"`
	JobID    string    `json:"job_id,omitempty"`
	Batch    string    `json:"batch,omitempty"`
	Run      int       `json:"run,omitempty"`
	Time     time.Time `json:"time"`
	// Attempt is the job's attempt number, where it applies.
	Attempt int `json:"attempt,omitempty"`
	// TaskID is the provider's task id, where known.
	TaskID string `json:"provider_task_id,omitempty"`
	// Progress is the provider's 0-100 progress, where reported.
	Progress *float64 `json:"progress,omitempty"`
	// Status is the provider's raw status word, where relevant.
	Status string `json:"status,omitempty"`
	// Reason explains pauses, retries and dead letters.
	Reason string `json:"reason,omitempty"`
	Code   string `json:"code,omitempty"`
	// Until is when a pause or back-off ends, where known.
	Until *time.Time `json:"until,omitempty"`
	// Cost is what a submission is estimated to cost (submitted,
	// paid_twice) or what a budget allows (budget_paused).
	Cost *Cost `json:"cost,omitempty"`
	// Worker names the replica (or "enqueue") that published the event.
	Worker string `json:"worker,omitempty"`
}

// Event kinds.
const (
	EventSubmitted        = "submitted"
	EventProgress         = "progress"
	EventRetry            = "retry"
	EventRateLimited      = "rate_limited"
	EventProviderPaused   = "provider_paused"
	EventProviderResumed  = "provider_resumed"
	EventAmbiguousSubmit  = "ambiguous_submit"
	EventPaidTwice        = "paid_twice"
	EventRecoveredTask    = "recovered_task"
	EventHeld             = "held"
	EventResolved         = "resolved"
	EventDeadLettered     = "dead_lettered"
	EventCancelled        = "cancelled"
	EventCancelRequested  = "cancel_requested"
	EventCompleted        = "completed"
	EventDuplicateDropped = "duplicate_dropped"
	EventRetryRefused     = "retry_refused"
	EventArchived         = "archived"
	EventArchiveFailed    = "archive_failed"
	EventInvalidOutput    = "invalid_output" // an output failed its media check (Code: the validation code)
	EventBudgetPaused     = "budget_paused"
	EventBudgetResumed    = "budget_resumed"
	// EventLimiterUnavailable: the provider's rate limiter has not been
	// able to write its shared state (Reason names the bucket and the
	// server's error) for longer than its bound; no call to the provider
	// goes out until EventLimiterRecovered.
	EventLimiterUnavailable = "limiter_unavailable"
	EventLimiterRecovered   = "limiter_recovered"
)
