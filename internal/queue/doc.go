// Package queue is reelq's use of NATS JetStream: the stream, consumer and
// bucket layout, the job request and result event types, publishing jobs
// and results, and the pull loop that hands one message per free slot to a
// handler while keeping it alive with InProgress heartbeats.
//
// # Layout
//
//	JOBS       jobs.<provider>[.<job_id>]      WorkQueue, file, Nats-Msg-Id = job id
//	RESULTS    results.<provider>.<job_id>     Limits + MaxAge, one event per job
//	EVENTS     events.<provider>.<kind>        progress and operator events
//	DLQ        dlq.jobs.<provider>.<job_id>    original payloads that could not run
//	JOBS_ADVISORIES  max-deliveries advisories for JOBS (dead-letter safety net)
//	KV reelq_jobs       job state: phase, provider task id, attempts
//	KV reelq_providers  provider state: paused, reason, since
//	KV reelq_ratelimit  cluster-wide rate limiter state (soft, in memory)
//	KV reelq_tallies    done and spend counts folded from RESULTS (package tally)
//
// Each provider has one durable pull consumer on JOBS named after it and
// filtered to its subjects; its MaxAckPending is the provider's
// cluster-wide concurrency cap. A paused provider's consumers keep
// delivering: the workers hold its new paid calls, not its polls.
//
// # Handler outcomes
//
// A handler settles every message itself (Ack, Nak, NakWithDelay or Term)
// through the [Msg] it is given; the pull loop only owns delivery and
// heartbeats. The worker acks a job only after its result event's publish
// was acknowledged by the server.
package queue
