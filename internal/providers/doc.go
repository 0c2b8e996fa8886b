// Package providers defines the contract between the reelq worker and the
// paid video APIs it drives, and the one error classification every adapter
// shares.
//
// An adapter (one package per vendor under internal/providers/<name>) turns a
// job's provider-specific input into HTTP calls: [Provider.Submit] starts a
// paid generation and returns a [Task]; [Provider.Poll] reports its [Status].
// Adapters never retry on their own: they classify each failure into one of
// the sentinel classes below, wrapped with %w, and the worker decides.
//
// # Error classes
//
//	ErrRetryable        5xx, timeouts, network errors: try again later
//	ErrRateLimited      429: slow every replica down (see [RateLimitError])
//	ErrInvalidInput     400/422 or input that breaks documented rules: never retried
//	ErrAuth             401/403: pause the provider until an operator resumes it
//	ErrCreditsExhausted Segmind 406, Samsar 402, Vimmerse 402, Camb PAYMENT_REQUIRED
//	ErrNotFound         404: the task is unknown or has expired
//	ErrTaskFailed       the provider ran the task and reported failure
//
// Every error an adapter returns is an [*Error], so callers can read the HTTP
// status and provider message with errors.As, and the class with errors.Is.
package providers
