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
//	{"holders": {"<worker id>/<incarnation>": {"n": 3, "want": 5, "top": 2,
//	  "ttl_ms": 120000, "renewed": "<RFC 3339>", "until": "<RFC 3339>"}}}
//
// A holder is one [Pool]: one process's lease on one provider. Its name
// carries a random incarnation besides the worker id, so a process
// restarted under the same REELQ_WORKER_ID (a StatefulSet pod, a fixed id)
// starts a lease of its own and never takes over its predecessor's, whose
// tasks may still run at the provider: the two together hold at most Cap.
// n is the slots the holder holds, want the slots it could use now (its
// running and waiting jobs, capped by its local limit) and top the highest
// priority rank among its waiting jobs ([PriorityNone] to
// [PriorityResume]). renewed is the server's timestamp of the write that
// last renewed the lease (absent in the entry of the holder that made the
// value's write: that write's own timestamp), ttl_ms the lease length from
// it, and until = renewed + ttl_ms, kept for readers. A holder is live
// while until is after the server's now, and free = Cap - sum of n over
// live holders.
//
// # Invariant
//
// Every write is a compare-and-set on the key's revision computed from the
// value at that revision. A writer prunes the holders whose lease has
// expired by the server's clock and never raises the sum of n over the remaining
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
// Leases are measured on the server's clock, never a worker's: a lease
// starts at the timestamp JetStream gave the write that renewed it (a KV
// entry's Created time), and a writer carrying other holders' entries
// into its value fills in that timestamp for the entry whose holder wrote
// the value it read. To judge expiry, a Pool estimates the server's now as
// the latest server timestamp it has seen (values it read or watched, and
// the bucket's stream info at start) plus the time elapsed locally since:
// a lower bound, so it finds a lease expired only once it has expired on
// the server. A worker stops using its own slots TTL/8 before TTL has
// passed on its own clock since it sent the write, which came before the
// server stamped it. So a worker's clock skew changes nothing: a crashed
// worker whose clock ran ahead blocks its slots for TTL, not TTL plus its
// skew, and a writer whose clock runs ahead cannot prune a live lease.
// What is assumed is that clocks run at the same rate (within TTL/8 over
// a TTL) and that the servers of a cluster agree within a small fraction
// of TTL (a failover hands the stamping to another server). Entries of
// older releases (no ttl_ms) keep their until as written, on their
// writer's clock.
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
