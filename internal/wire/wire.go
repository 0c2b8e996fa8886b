// Package wire names what reelq puts on the wire: streams, buckets,
// subjects, message ids, headers, KV keys, counter fields and consumer
// names. The names are a contract with other programs (the README's
// "Wire contract" section documents them for nats CLI users); the Go
// names are internal, shared by the public packages and the workers.
package wire

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/providers/kind"
)

// Streams and buckets.
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
	// BucketSlots is the bucket the workers hold their providers' slots in
	// (what Stats reads as running against the cap).
	BucketSlots = "reelq_slots"
	// BucketBudgets holds spending limits and what has been spent and
	// reserved against them. Batch limits are written by producers and
	// operators; provider limits (which operators request through
	// CONTROL) and spend only by workers, with compare-and-set. Provider
	// limits are kept until changed; batch limits and spend expire after
	// the time the bucket's stream names in its metadata
	// (BudgetsKeyTTLMetadata).
	BucketBudgets = "reelq_budgets"
	// BucketTallies holds the done and spend counts of results, folded
	// from RESULTS by one worker at a time (package tally): one key per
	// count (TallyKey), the sequence folded through (TallyThroughKey) and
	// the folder's lease (TallyLeaseKey). Only workers write it.
	BucketTallies = "reelq_tallies"
	// BudgetsKeyTTLMetadata is the entry of the budgets bucket stream's
	// metadata that says how long batch limits and spend are kept (a Go
	// duration: the workers' REELQ_JOB_STATE_TTL). They are written with
	// that per-message TTL; provider limits with none.
	BudgetsKeyTTLMetadata = "reelq_key_ttl"
)

// Message headers reelq reads or writes.
const (
	// HeaderMsgID is JetStream's de-duplication header.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderRun numbers a job's run: absent or 1 for the first, n+1 for a
	// retry of run n.
	HeaderRun = "Reelq-Run"
	// HeaderTraceparent carries a W3C trace context from a job to its
	// result.
	HeaderTraceparent = "traceparent"
)

// The priorities' names in subjects and consumer names (reelq.Priority's
// values).
const (
	high   = "high"
	normal = "normal"
	low    = "low"
)

// JobSubject is where a job for provider is published. A normal-priority
// job goes on jobs.<provider>.<id> (the form published before priorities
// existed); high and low priority jobs go on jobs.<provider>.high.<id> and
// jobs.<provider>.low.<id>. An empty id gives the bare jobs.<provider>
// (the worker then names the job after its Nats-Msg-Id or its stream
// sequence).
func JobSubject[P ~string](provider string, p P, id string) string {
	if id == "" {
		return "jobs." + provider
	}
	switch p {
	case high, low:
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
	Priority string
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
		switch t[2] {
		case high, normal, low:
		default:
			return ParsedSubject{}, false
		}
		ps.Priority, ps.ID = t[2], t[3]
	default:
		return ParsedSubject{}, false
	}
	return ps, true
}

// ConsumerName is the durable consumer that carries provider's jobs of
// priority p. The normal queue's consumer keeps the provider's own name
// (as before priorities existed), so existing monitoring keeps working.
func ConsumerName[P ~string](provider string, p P) string {
	switch p {
	case high, low:
		return provider + "-" + string(p)
	}
	return provider
}

// ConsumerFilter lists the subjects the consumer for provider and
// priority p reads; the three filters never overlap.
func ConsumerFilter[P ~string](provider string, p P) []string {
	switch p {
	case high, low:
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
// job go to JobEventSubject.
func EventSubject(provider, kind string) string { return "events." + provider + "." + kind }

// JobEventSubject is where events of kind about job id are published:
// events.<provider>.<kind>.<job_id>, so one job's events can be read by
// subject.
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

// DLQSubject is where a dead-lettered message's payload goes.
func DLQSubject(provider, id string) string { return "dlq.jobs." + provider + "." + id }

// ControlSubject is where an operator request of kind about job id goes.
func ControlSubject(kind, id string) string { return "control." + kind + "." + id }

// WakeSubject is the core NATS subject (no stream keeps it) on which the
// callback endpoint wakes job id of provider: the replica holding the job
// polls it now. A wake changes nothing by itself.
func WakeSubject(provider, id string) string { return "reelq.wake." + provider + "." + id }

// WakeFilter is what a replica subscribes to for provider's wakes.
func WakeFilter(provider string) string { return "reelq.wake." + provider + ".*" }

// BatchIndexSubject is where the workers index batch's jobs: each message
// is a JSON array of job ids (workers write them in chunks, as they pull
// jobs; an id may appear more than once).
func BatchIndexSubject(batch string) string { return "batches." + batch }

// BatchCounterSubject is batch's counter field. Values are JetStream
// counters (integers); costs are counted in micro-units (1e-6 USD or 1e-6
// credits).
func BatchCounterSubject(batch, field string) string { return "counters.batch." + batch + "." + field }

// SpendCounterField is the counter field holding the estimated spend in
// unit ("usd", "credits"), in millionths of the unit: spent_micro_<unit>.
func SpendCounterField(unit string) string { return "spent_micro_" + unit }

// HeldMarkerSubject marks, in COUNTERS, that job id of provider was held
// for an operator. Only its existence matters: Stats reads the state of
// each marked job and counts those still held.
func HeldMarkerSubject(provider, id string) string {
	return "counters.held." + provider + "." + id
}

// TallyKey is the key in BucketTallies of a count of results: scope is
// "batch" or "provider", name the batch or provider, field done_<status>
// or SpendCounterField(unit). Its value is {"val":"N","through":S}: the
// count, as a JetStream counter's value reads, and the RESULTS sequence
// of the last result counted in it.
func TallyKey(scope, name, field string) string { return scope + "." + name + "." + field }

// TallyThroughKey is the key in BucketTallies that says the RESULTS
// sequence every tally is folded through ({"through":S}).
const TallyThroughKey = "fold.through"

// TallyLeaseKey is the key in BucketTallies the worker that folds holds.
const TallyLeaseKey = "fold.lease"

// ProviderCounterSubject is provider's counter field.
func ProviderCounterSubject(provider, field string) string {
	return "counters.provider." + provider + "." + field
}

// JobMsgID is the Nats-Msg-Id of job id's message for run (1: the id
// itself).
func JobMsgID(id string, run int) string {
	if run <= 1 {
		return id
	}
	return id + ":run:" + strconv.Itoa(run)
}

// SeqID is the id a worker gives a message it cannot attribute to a job
// (no id anywhere, or an unreadable or contradictory message): seq-<stream
// sequence>. It cannot collide with a producer's id.
func SeqID(seq uint64) string { return "seq-" + strconv.FormatUint(seq, 10) }

// BudgetLimitKey is scope's limit for name in BucketBudgets.
func BudgetLimitKey(scope, name string) string { return "limit." + scope + "." + name }

// BudgetSpendKey is where workers account spend for a scope in a period
// (period 0: the whole life of a batch).
func BudgetSpendKey(scope, name string, periodStart int64) string {
	if periodStart == 0 {
		return "spend." + scope + "." + name
	}
	return "spend." + scope + "." + name + "." + strconv.FormatInt(periodStart, 10)
}

// PeriodStart is the start (Unix seconds) of the period containing t.
func PeriodStart(t time.Time, period time.Duration) int64 {
	if period <= 0 {
		return 0
	}
	p := int64(period / time.Second)
	if p <= 0 {
		p = 1
	}
	u := t.Unix()
	return u - u%p
}

// ContentID is the id a job gets from its content when it has none: "j"
// and 24 hex digits of its digest, then "-<n>" for the n-th identical job
// of one input file (n >= 2). Adding, removing, reordering or fixing
// lines of a file therefore never changes the ids of the other lines.
//
// The digest sees what the provider will be sent: two inputs that differ
// only in ways JSON decoding erases (invalid UTF-8, a lone UTF-16
// surrogate escape, a key given twice) would share a digest, so
// validation refuses them. An id of this form names its content:
// CheckContentID refuses it for any other content.
func ContentID(digest string, occurrence int) string {
	hexd := strings.TrimPrefix(digest, "sha256:")
	if len(hexd) > 24 {
		hexd = hexd[:24]
	}
	id := "j" + hexd
	if occurrence > 1 {
		id += "-" + strconv.Itoa(occurrence)
	}
	return id
}

// contentIDForm matches the ids ContentID makes.
var contentIDForm = regexp.MustCompile(`^j([0-9a-f]{24})(-[0-9]+)?$`)

// CheckContentID refuses an id of ContentID's form ("j" and 24 hex
// digits, perhaps "-<n>") that is not derived from digest: such an id
// names its content, and a job with other content under it would take
// the id from the job whose content it is.
func CheckContentID(id, digest string) error {
	m := contentIDForm.FindStringSubmatch(id)
	if m == nil || strings.HasPrefix(strings.TrimPrefix(digest, "sha256:"), m[1]) {
		return nil
	}
	return fmt.Errorf("%w: id %q has the form of a content id but is not this content's (%s): leave the id out to have it derived, or choose one of another form",
		kind.ErrInvalidJob, id, ContentID(digest, 1))
}
