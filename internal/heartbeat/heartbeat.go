// Package heartbeat is what every worker replica says about itself, every
// Interval, on the WORKERS stream: its version, since when it runs, and
// per provider the slots it holds, its running and waiting jobs, the
// provider's queue as it read it, and what it did since its previous
// record (paid submissions, results by status, estimated spend). The
// dashboard's workers view reads each replica's last record (one batched
// direct get, "multi_last" on workers.*), and its charts add the records
// of a time range up (a direct get from "start_time"): no Prometheus is
// needed to see what happened.
//
// # Data
//
// Stream [Stream], subject workers.<worker> ([Subject]: the worker id with
// every character a subject token cannot hold replaced by '_'), one JSON
// [Record] per message, kept [MaxAge]. A replica that stops publishes a
// last record with Stopping set. The records are statistics: a replica
// that dies loses what it did since its last record, and a record the
// server did not take is not sent again.
package heartbeat

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream is the stream of the workers' records.
const Stream = "WORKERS"

// Interval is how often a worker publishes its record.
const Interval = 15 * time.Second

// MaxAge is how long records are kept: the charts' longest range.
const MaxAge = 24 * time.Hour

// Record is one worker's record.
type Record struct {
	Worker  string    `json:"worker"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// At is when the record was made, Since when the previous one was
	// (the counts in Providers cover [Since, At)).
	At    time.Time `json:"at"`
	Since time.Time `json:"since"`
	// EveryMS is the interval between records, in milliseconds.
	EveryMS int64 `json:"every_ms"`
	// Stopping is set on the last record of a worker shutting down.
	Stopping  bool                `json:"stopping,omitempty"`
	Providers map[string]Provider `json:"providers"`
}

// Provider is a worker's figures for one provider it runs.
type Provider struct {
	// Slots is how many of the provider's cluster-wide slots this worker
	// holds, Limit how many it may run at once (its P_SLOTS), Running and
	// Waiting its jobs at the provider and pulled ahead or backing off.
	Slots   int `json:"slots"`
	Limit   int `json:"limit"`
	Running int `json:"running"`
	Waiting int `json:"waiting"`
	// Queued is how many of the provider's jobs wait in JOBS, all
	// priorities, as this worker read it when making the record (-1: it
	// could not).
	Queued int64 `json:"queued"`
	// What happened since the previous record: paid submissions accepted,
	// results published by status, and their estimated cost by unit.
	Submits   uint64             `json:"submits,omitempty"`
	Succeeded uint64             `json:"succeeded,omitempty"`
	Failed    uint64             `json:"failed,omitempty"`
	Cancelled uint64             `json:"cancelled,omitempty"`
	Spent     map[string]float64 `json:"spent,omitempty"`
}

// Subject is where worker publishes its records.
func Subject(worker string) string {
	return "workers." + strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, worker)
}

// StreamConfig is the configuration of [Stream] with the given number of
// replicas (values below 1 mean 1).
func StreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        Stream,
		Description: "reelq worker records: version, slots, queue and activity per provider, every 15s",
		Subjects:    []string{"workers.*"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, replicas),
		MaxAge:      MaxAge,
		MaxBytes:    256 << 20,
		Discard:     jetstream.DiscardOld,
		Duplicates:  2 * time.Minute,
		AllowDirect: true,
	}
}
