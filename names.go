package reelq

import (
	"slices"
	"strconv"
	"strings"
)

// Streams and buckets. They are part of the public contract: other
// programs (and the nats CLI recipes in the README) read them directly.
const (
	// StreamJobs holds job requests (WorkQueue), on JobSubject subjects.
	StreamJobs = "JOBS"
	// StreamResults holds one result event per job run, on ResultSubject.
	StreamResults = "RESULTS"
	// StreamEvents holds progress and operator events, on EventSubject.
	StreamEvents = "EVENTS"
	// StreamDLQ holds messages that could not run, with their payload.
	StreamDLQ = "DLQ"
	// StreamAdvisories keeps JetStream's max-deliveries advisories for JOBS.
	StreamAdvisories = "JOBS_ADVISORIES"
	// StreamControl carries operator requests the workers carry out
	// (resolving a held job); only operators may publish to it.
	StreamControl = "CONTROL"
	// StreamCounters holds per-batch and per-provider counters (JetStream
	// counters), maintained as jobs move.
	StreamCounters = "COUNTERS"
	// StreamBatches indexes jobs by batch (chunks of job ids on
	// BatchIndexSubject), so a batch can be listed without reading every
	// job state.
	StreamBatches = "BATCHES"

	// BucketJobs is the job state, written only by workers.
	BucketJobs = "reelq_jobs"
	// BucketProviders is the provider state (paused, why, since when).
	BucketProviders = "reelq_providers"
	// BucketRateLimit is the cluster-wide rate limiter state.
	BucketRateLimit = "reelq_ratelimit"
	// BucketCancel holds cancel requests, one key per job id. Producers
	// may write it; workers carry the requests out.
	BucketCancel = "reelq_cancel"
)

// Providers lists the providers reelq knows, in a stable order (the order
// of internal/providers/all.Specs, from which providers_gen.go is made).
var Providers = func() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.Name
	}
	return out
}()

// KnownProvider reports whether p is one of Providers.
func KnownProvider(p string) bool { return slices.Contains(Providers, p) }

// JobSubject is where a job for provider is published. A normal-priority
// job goes on jobs.<provider>.<id> (the form published before priorities
// existed); high and low priority jobs go on jobs.<provider>.high.<id> and
// jobs.<provider>.low.<id>. An empty id gives the bare jobs.<provider>
// (the worker then names the job after its Nats-Msg-Id or its stream
// sequence).
func JobSubject(provider string, p Priority, id string) string {
	if id == "" {
		return "jobs." + provider
	}
	switch p {
	case High, Low:
		return "jobs." + provider + "." + string(p) + "." + id
	}
	return "jobs." + provider + "." + id
}

// JobSubjects lists every subject form a job for provider may be
// published on: what the JOBS stream accepts for that provider.
func JobSubjects(provider string) []string {
	return []string{
		"jobs." + provider,
		"jobs." + provider + ".*",
		"jobs." + provider + ".high.*",
		"jobs." + provider + ".normal.*",
		"jobs." + provider + ".low.*",
	}
}

// ParsedSubject is what a job subject says.
type ParsedSubject struct {
	Provider string
	// Priority is set only by the jobs.<provider>.<priority>.<id> form.
	Priority Priority
	// ID is the subject's id token, empty for jobs.<provider>.
	ID string
}

// ParseJobSubject reads a job subject; ok is false when subj is not one
// of the JobSubjects forms.
func ParseJobSubject(subj string) (ParsedSubject, bool) {
	t := strings.Split(subj, ".")
	if len(t) < 2 || t[0] != "jobs" || t[1] == "" {
		return ParsedSubject{}, false
	}
	ps := ParsedSubject{Provider: t[1]}
	switch len(t) {
	case 2:
	case 3:
		ps.ID = t[2]
	case 4:
		p := Priority(t[2])
		if !p.valid() || p == "" {
			return ParsedSubject{}, false
		}
		ps.Priority, ps.ID = p, t[3]
	default:
		return ParsedSubject{}, false
	}
	return ps, true
}

// ConsumerName is the durable consumer that carries provider's jobs of
// priority p. The normal queue's consumer keeps the provider's own name
// (as before priorities existed), so existing monitoring keeps working.
func ConsumerName(provider string, p Priority) string {
	switch p {
	case High, Low:
		return provider + "-" + string(p)
	}
	return provider
}

// ConsumerFilter lists the subjects the consumer for provider and
// priority p reads; the three filters never overlap.
func ConsumerFilter(provider string, p Priority) []string {
	switch p {
	case High, Low:
		return []string{"jobs." + provider + "." + string(p) + ".*"}
	}
	return []string{"jobs." + provider, "jobs." + provider + ".*", "jobs." + provider + ".normal.*"}
}

// ResultSubject is where a job's result events are published.
func ResultSubject(provider, id string) string { return "results." + provider + "." + id }

// ResultMsgID is the Nats-Msg-Id of a job's result event for run: the
// first run keeps the form result:<id>; later runs are result:<id>:<run>.
func ResultMsgID(id string, run int) string {
	if run <= 1 {
		return "result:" + id
	}
	return "result:" + id + ":" + strconv.Itoa(run)
}

// EventSubject is where events of kind about provider itself are
// published (provider_paused, provider_resumed, ...); events about one
// job go to JobEventSubject. Subscribe to "events.>" for all events, or
// EventFilter(provider, kind) for one kind of both.
func EventSubject(provider, kind string) string { return "events." + provider + "." + kind }

// JobEventSubject is where events of kind about job id are published:
// events.<provider>.<kind>.<job_id>, so one job's events can be read by
// subject (see Client.JobEvents).
func JobEventSubject(provider, kind, id string) string {
	return "events." + provider + "." + kind + "." + id
}

// EventFilter is the subject filters matching every event of kind about
// provider: the provider's own and its jobs'. "*" matches any provider or
// kind.
func EventFilter(provider, kind string) []string {
	s := "events." + provider + "." + kind
	return []string{s, s + ".*"}
}

// subject is where e is published.
func (e *Event) subject() string {
	if e.JobID != "" {
		return JobEventSubject(e.Provider, e.Kind, e.JobID)
	}
	return EventSubject(e.Provider, e.Kind)
}

// Subject is the subject e is published on.
func (e *Event) Subject() string { return e.subject() }

// DLQSubject is where a dead-lettered message's payload goes.
func DLQSubject(provider, id string) string { return "dlq.jobs." + provider + "." + id }

// ControlSubject is where an operator request of kind about job id goes.
func ControlSubject(kind, id string) string { return "control." + kind + "." + id }

// BatchIndexSubject is where the workers index batch's jobs: each message
// is a JSON array of job ids (workers write them in chunks, as they pull
// jobs; an id may appear more than once).
func BatchIndexSubject(batch string) string { return "batches." + batch }

// Counter subjects. Values are JetStream counters (integers); costs are
// counted in micro-units (1e-6 USD or 1e-6 credits).
func BatchCounterSubject(batch, field string) string { return "counters.batch." + batch + "." + field }

// SpendCounterField is the counter field holding the estimated spend in
// unit ("usd", "credits"), in millionths of the unit: spent_micro_<unit>.
func SpendCounterField(unit string) string { return "spent_micro_" + unit }

// HeldMarkerSubject marks, in COUNTERS, that job id of provider was held
// for an operator. Only its existence matters: [Client.Stats] reads the
// state of each marked job and counts those still held.
func HeldMarkerSubject(provider, id string) string {
	return "counters.held." + provider + "." + id
}

// ProviderCounterSubject is provider's counter field.
func ProviderCounterSubject(provider, field string) string {
	return "counters.provider." + provider + "." + field
}

// Message headers reelq reads or writes.
const (
	// HeaderMsgID is JetStream's de-duplication header.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderRun numbers a job's run: absent or 1 for the first, n+1 for a
	// retry of run n (see Client.Retry).
	HeaderRun = "Reelq-Run"
	// HeaderTraceparent carries a W3C trace context from a job to its
	// result.
	HeaderTraceparent = "traceparent"
)

// JobMsgID is the Nats-Msg-Id of job id's message for run (1: the id
// itself).
func JobMsgID(id string, run int) string {
	if run <= 1 {
		return id
	}
	return id + ":run:" + strconv.Itoa(run)
}
