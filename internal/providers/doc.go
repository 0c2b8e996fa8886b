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
//	ErrRetryable         5xx, timeouts, network errors, an unfollowed redirect
//	                     (but see ErrUnknownSubmission), a failing balance
//	                     endpoint: try again later
//	ErrRateLimited       429: slow every replica down (see [RetryAfter])
//	ErrInvalidInput      400/422 or input that breaks documented rules: never retried
//	ErrUnknownSubmission a submit answered 2xx without a usable task id (or a
//	                     301/302/303 to a submit): the provider may have charged
//	                     for a task that cannot be followed; never resubmitted
//	ErrForbidden         a 403 about this job (a private workflow, a template the
//	                     plan excludes, a task refused as forbidden): the job fails, the
//	                     provider keeps running
//	ErrAuth              401, or a 403 whose body says the key is invalid or
//	                     missing: pause the provider until an operator resumes it
//	ErrCreditsExhausted  the provider's credit error (a 402, a 406 saying so, a
//	                     task failed unpaid: see Spec.CreditsOnPoll)
//	ErrNotFound          404: the task is unknown or has expired
//	ErrTaskFailed        the provider ran the task and reported failure, or
//	                     returned an output URL [CheckOutputURL] refuses
//
// Every error an adapter returns is an [*Error], so callers can read the HTTP
// status and provider message with errors.As, and the class with errors.Is.
//
// # Keys and redirects
//
// Adapters send requests only through [Config.Client]: redirects are
// followed only for GET and HEAD to the base URL's own host, and the key is
// never sent to another host, nor over plain http except to loopback or
// with [Config.AllowInsecure].
package providers
