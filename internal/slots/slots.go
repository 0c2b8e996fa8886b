// Package slots is a provider's cluster-wide concurrency cap held as leases
// in a JetStream KV bucket: a worker runs a job on a provider only while it
// holds one of the provider's Cap slots. Jobs that wait (retry back-off,
// paused provider, waiting for a slot) hold none, whichever of the
// provider's consumers (priorities) delivered them.
//
// # Data
//
// Bucket [Bucket] (History 1, see [BucketConfig]) has one key per provider,
// named after it, whose value is
//
//	{"holders": {"<worker id>": {"n": 3, "until": "<RFC 3339>", "want": 5, "top": 2}}}
//
// n is the slots the worker holds, until its lease expiry, want the slots it
// could use now (its running and waiting jobs, capped by its local limit)
// and top the highest priority rank among its waiting jobs ([PriorityNone]
// to [PriorityResume]). A holder is live while until is after now, and
// free = Cap - sum of n over live holders.
//
// # Invariant
//
// Every write is a compare-and-set on the key's revision computed from the
// value at that revision. A writer prunes the holders whose lease has
// expired by its clock and never raises the sum of n over the remaining
// holders above its Cap: a slot is granted only out of free, and a lease
// that had expired is renewed like a new acquisition. So every committed
// value holds at most Cap slots (all writers sharing one Cap). There is no
// slot without a committed write: when the KV is unavailable nothing is
// granted (fail closed).
//
// # Costs
//
// A worker keeps the slots it holds and reuses them job after job. It
// writes only when its holding changes (a grant, a release), when its
// demand changes, and once per TTL/4 to renew its lease (15 s by default).
// Demand updates ([Pool.SetDemand]) are skipped when unchanged and
// otherwise written by Run at most once per 50 ms, except the first one
// after this worker's holding changed, which goes at once so that other
// workers do not keep slots reserved for a stale top. So a saturated worker
// with a steady backlog writes nothing per job. [Pool.Yield], [Pool.Held],
// [Pool.Snapshot] and a TryAcquire that the local view already refuses read
// a local view kept current by a KV watch: no I/O. Writes from one Pool are
// serialised, so only workers contend for the key.
//
// # Priority and fairness
//
// Slots move only when a job ends: the worker asks [Pool.Yield] whether to
// reuse its slot or give it to a holder that comes first, i.e. one with
// unmet demand (want > n) and a higher top, or the same top while below its
// fair share max(1, Cap / live holders with want > 0). [Pool.TryAcquire]
// leaves free slots to those holders too, so a slot given up for a
// higher-priority worker is not taken back by the one that gave it up.
//
// # Clocks
//
// until is written and compared with each writer's clock ([Config.Now]).
// NTP-synced hosts are assumed, with a skew well below TTL: a writer whose
// clock runs s ahead sees leases expire s early. A worker stops treating its
// own lease as valid TTL/8 before its until, so a skew below TTL/8 never
// lets it start jobs on slots another writer already considers free.
//
// # Failures
//
// A worker that crashes loses its slots when its lease expires (TTL, 60 s
// by default); nothing has to clean up. When the KV is unreachable,
// TryAcquire fails, renewals are retried and logged, and once the worker's
// own lease is about to expire [Pool.Held] reports 0 until a renewal
// succeeds, so the worker starts no new jobs. Its running jobs go on: in a
// partition longer than the lease, other workers may be granted those slots
// and the provider may briefly see more than Cap jobs, exactly as with a
// JetStream redelivery after AckWait. The renewal that ends the partition
// claims the slots back only within free.
package slots

import (
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket holding every provider's slots.
const Bucket = "reelq_slots"

// Priority ranks of a worker's waiting jobs, as advertised in top.
const (
	PriorityNone   = 0 // no waiting job
	PriorityLow    = 1
	PriorityNormal = 2
	PriorityHigh   = 3
	// PriorityResume ranks above every priority: jobs whose task already
	// runs at the provider (redelivered after their worker died) and need a
	// slot to be polled again, before any new submission.
	PriorityResume = 4
)

// BucketConfig is the configuration of [Bucket] with the given number of
// replicas (values below 1 mean 1): file storage and one revision per key.
func BucketConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "reelq: provider concurrency slots (leases per worker)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, replicas),
	}
}
