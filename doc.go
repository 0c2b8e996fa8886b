// Package reelq is the Go client of reelq, a batch AI video job service
// on NATS JetStream. A service enqueues generation jobs for a paid
// provider (the list: [Providers]); worker replicas run
// them under each provider's cluster-wide rate limit, concurrency cap and
// budgets, and every job ends in exactly one result event per run, kept
// in the RESULTS stream. The package holds the job, result, state and
// event types, typed provider inputs, the subject and stream names, and a
// [Client] that enqueues, waits, consumes results and operates the queue
// with the same validation and idempotency as the enqueue command (which
// is built on this package only).
//
// Nothing here runs jobs: the workers (cmd/worker) create the streams and
// buckets at start-up (or a setup step does, REELQ_SETUP=only) and make
// the paid calls. A Client needs a NATS
// connection to a server where a worker has run ([ErrNotReady] otherwise)
// and never creates or changes a stream. The provider API keys are only
// the workers'.
//
// # The client
//
// [NewClient] wraps a *nats.Conn you connect as you like (URLs, TLS,
// credentials; see SECURITY.md for the identities). A Client is safe for
// concurrent use; make one per process.
//
//	nc, err := nats.Connect(url, nats.UserInfo("producer", password), nats.CustomInboxPrefix("_INBOX_producer"))
//	...
//	client, err := reelq.NewClient(ctx, nc, reelq.Options{By: "orders-service", ConsumerPrefix: "producer"})
//
// [Options] say how the client validates (ProviderEnv: the workers'
// provider options, such as SAMSAR_VIDEO_MODELS, that the input rules
// depend on; nil reads the process environment), how it names itself in
// events (By) and its consumers (ConsumerPrefix), how many jobs a batch
// has in flight (Window) and how long one request may take (Timeout).
//
// # Jobs and inputs
//
// A [Job] is a provider, an input, and optionally an id, a batch, a
// priority, a fairness key and metadata (any JSON, echoed in the result).
// Build the input as a Go value, one of the typed inputs (the
// <Provider>Input types, such as [SamsarInput]), whose fields are the provider's
// documented ones (docs/providers.md), and turn it into a job with
// [NewJob]; or set Job.Input to the JSON yourself. Input.Validate checks an
// input with the workers' default rules, [Client.Validate] with the client's; errors wrap [ErrInvalidJob] and name
// the field (`reelq: invalid job: input.duration is 300 s; the limit is 120 s`).
// An invalid job is never published, and never paid for.
//
// # Enqueue and wait
//
//	job, err := reelq.NewJob("order-1234", reelq.SamsarInput{
//		Prompt: "a red kite over dunes", ImageModel: "FLUX1.1PRO", VideoModel: "LUMA", Duration: 10,
//	})
//	...
//	if _, err := client.Enqueue(ctx, job); err != nil { ... }
//	res, err := client.Wait(ctx, job.ID) // blocks until the result event
//	if res.Status == reelq.StatusSucceeded { use(res.Outputs) } else { log(res.Error.Code, res.Error.Message) }
//
// [Client.Wait] returns the [Result] of the job's current run, at once if
// it has one. A Result's Status is [StatusSucceeded], [StatusFailed] or
// [StatusCancelled]; Error.Code is one of the Code constants (retryable
// failures have already been retried by the workers); Outputs are the
// provider's URLs, which expire (see Archived outputs); Cost is the
// estimate of what was paid. [Client.Get] returns a job's [JobState]
// (phase, attempts, the provider's task, the stored result) without
// waiting, including for a job still in the queue; [ErrNotFound] means
// nobody published the id (or its state has expired).
//
// # Idempotency: one job per id, paid once
//
// The job id is the job everywhere: the subject, the Nats-Msg-Id, the
// result subject and the state key. It is remembered for as long as the
// job state is kept (REELQ_JOB_STATE_TTL, 30 days by default). Enqueueing
// an id that is already known with the same payload (provider, input and
// metadata in canonical form, see [Job.Digest]; batch, priority and
// fairness key are not part of it) publishes nothing: the result says
// [Known], with the job's phase and, if it has finished, its result. It is
// never a second job and never a second payment, so retrying an Enqueue
// after an error or a crash is always safe. The same id with a different
// payload fails with [ErrConflict] and leaves the known job as it is.
//
// A job without an id gets a content id ([ContentID]: "j" and 24 hex
// digits of its digest, then -2, -3... for identical jobs in one
// EnqueueBatch call), so enqueueing the same list twice pays once, and an
// edited list pays only for its new and changed jobs. Give ids of your own (an order number) when the
// same payload may legitimately be wanted twice. An id of the content-id
// form must carry its own content ([CheckContentID]), and input or
// metadata that JSON decoding would change (invalid UTF-8, lone surrogate
// escapes, repeated keys) is refused, so different inputs never share an
// id.
//
// # Results that must not be missed
//
// [Client.Results] is a durable consumer on RESULTS, named
// ConsumerPrefix_Name: it delivers every result (optionally one
// provider's or one batch's) until it is acknowledged with
// [Delivery.Ack], and a process that restarts with the same Name resumes
// after the last acknowledged one. Delivery is at least once: a result
// handled but not yet acknowledged when the process stops comes again, so
// make handling idempotent on (Result.ID, Result.Run).
//
//	for d, err := range client.Results(ctx, reelq.ResultsOptions{Name: "main"}) {
//		if err != nil { return err } // ctx ended, or no consumer
//		if err := handle(d.Result); err != nil { _ = d.Nak(time.Minute); continue }
//		if err := d.Ack(ctx); err != nil { return err }
//	}
//
// Without a Name, Results reads RESULTS by direct get from
// [ResultsOptions].After on (and on as results are stored, with Follow),
// keeping no state on the server (for tools and dashboards); the
// operator package's Inspector.DeleteResults removes a durable consumer
// that is no longer wanted.
//
// # Batches
//
// [Client.EnqueueBatch] validates and publishes many jobs, Window at a
// time, calling BatchOptions.Progress after each; it returns one
// [EnqueueResult] per job, in order. An invalid or conflicting job fails
// alone (Status [Failed], Err set) and the others are still published;
// validate every job first if you want all or nothing. [Client.WaitAll]
// waits for the results of a list of ids (those already finished count at
// once). The Batch label groups jobs for [inspect.Inspector.Stats] (counters kept as
// jobs move: enqueued, succeeded, failed, cancelled, spent),
// [Client.BatchJobs], [Client.CancelBatch], [Client.RetryBatch] and batch
// budgets.
//
// # Priorities and fair shares
//
// Job.Priority is [High], [Normal] (the default) or [Low]: a provider's
// free slot goes to the highest priority waiting, with one dispatch in ten
// kept for a lower priority that has jobs waiting, so none starves. Within
// a priority, fairness keys share the provider equally: Job.FairnessKey
// (a tenant, say), or by default the batch. Neither changes the
// provider's rate or cap, only the order in which jobs get them.
//
// # Runs, retry and cancel
//
// A job that failed or was cancelled can run again under the same id with
// [Client.Retry] (or RetryBatch): run 2, 3..., each with its own result
// event (Result.Run) and its own payment. A job that succeeded is never
// run again ([ErrSucceeded]); one that has not finished is refused with
// [ErrNotFinished]. Wait waits for the current run.
//
// [Client.Cancel] asks the workers to cancel a job: a queued job finishes
// as cancelled without reaching the provider; a running one is stopped at
// the provider where its API allows ([Client.Cancelable]).
// Elsewhere the job still ends as cancelled but the provider finishes and
// bills the task: [CancelOutcome].StillBilled says so. The cancelled
// result arrives like any other (Wait).
//
// # Budgets and estimates
//
// [Client.Estimate] prices jobs before they are
// published. [inspect.Inspector.SetBudget] sets a spending limit for a batch (over
// its life) or a provider (per period): before every paid submission the
// workers reserve the job's estimate against each limit that applies, so
// replicas together never spend past it; a job that does not fit waits,
// without using an attempt, until the limit is raised or the period rolls
// over. [inspect.Inspector.Budgets] and [inspect.Inspector.BatchSpend] show what was spent.
//
// # Archived outputs
//
// Provider links expire (Segmind's after about an hour, Camb's audio
// after 24 hours), so the workers copy every output before publishing the
// result (REELQ_ARCHIVE: a JetStream object store by default, or S3):
// [Output].Archive then locates the durable copy, or Output.ArchiveError
// says why there is none.
// [inspect.Inspector.DownloadOutput] writes a copy to a file, checking its size and
// SHA-256; [OutputFile] names it.
//
// On the way the workers inspect each output as media: [Output].Media
// says what the bytes are, and [Output].ValidationError why they are not
// what the provider's folder declares for the output (with the job's own
// [Expect] on top): empty, truncated, an HTML page served with 200, the
// wrong type, no audio, the wrong duration. By default such a run fails
// with [CodeInvalidOutput]; each provider's P_OUTPUT_POLICY may instead
// retry it (paid again, within the job's budgets) or accept it.
//
// # Operating the queue
//
// [inspect.Inspector.Stats] reads each provider's queue by priority, jobs in flight
// against the cap, pause state and next allowed call, and the recent
// batches' counters, without reading any job state: its cost does not
// grow with the number of jobs kept.
// [inspect.Inspector.Pause] and [inspect.Inspector.Resume] stop and restart a provider for every
// worker; [inspect.Inspector.Resolve] settles a job held after a submission whose
// outcome was unknown; [inspect.Inspector.DeadLetters] and [inspect.Inspector.Redrive] list and
// republish the messages that could not run; [inspect.Inspector.JobEvents] and
// [inspect.Inspector.FollowEvents] read the progress events.
//
// # Permissions
//
// With the shipped NATS configuration (deploy/nats/auth.conf, described in
// SECURITY.md) each call needs one of these identities:
//
//   - producer (a service that submits jobs): Enqueue, EnqueueBatch, Get,
//     Wait, WaitAll, Follow, ReadResults, Results with its durable
//     producer_main (ConsumerPrefix "producer", Name "main"), BatchJobs,
//     Cancel, CancelBatch, Retry, RetryBatch, Stats, SetBudget for a
//     batch, Budgets, BatchSpend, DownloadOutput. (Validate
//     and Estimate need no server.)
//   - results (a downstream service): Results with results_main, Follow,
//     ReadResults and DownloadOutput only: it reads no job state or queued
//     job, so no Get, Wait, WaitAll or Enqueue.
//   - operator (people and tools): the producer's calls, plus Pause,
//     Resume, Resolve, DeadLetters, Redrive and SetBudget for a provider
//     (a request a worker carries out: SetBudget waits for it).
//   - JobEvents and FollowEvents read the EVENTS stream, which none of
//     these roles may read (the dashboard identity, disabled in the
//     shipped configuration until given a password, may).
//
// Each identity connects with its own reply prefix
// (nats.CustomInboxPrefix("_INBOX_<user>")) and uses its user name as
// ConsumerPrefix. Its durable Results consumer is the only consumer it
// may create, and is declared by name in auth.conf.
//
// # Stability
//
// Stable, with changes only additive: the exported types, functions and
// Client methods of this package and of package inspect (the operator
// calls); the wire contract, that is the subjects, streams, buckets and
// headers docs/contract.md names (their Go names are
// internal), and the JSON of jobs, results, events and job states; the error values
// and the result Code constants. Additive means new fields in the JSON
// (decoders must ignore unknown fields), new event kinds, error codes and
// providers (do not assume today's list), and new Input types. May change: the
// text of error messages (match with errors.Is and codes, not strings),
// cost estimates and their Basis text, defaults of Options, and everything
// under internal/.
package reelq
