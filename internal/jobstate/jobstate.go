// Package jobstate keeps each job's durable state in a NATS KV bucket:
// its phase, the provider task it started, and how many attempts failed.
// Every write is a compare-and-set on the key's revision, so two workers
// holding the same job after a redelivery cannot both submit it: the state
// is the record that makes a paid submission happen at most once per
// phase change.
//
// Phases move forward only:
//
//	queued ──> submitting ──> submitted ──> finished
//	   │            │              │
//	   └────────────┴──────────────┴──> finished (failed or cancelled)
//
// "submitting" is written just before the paid call and "submitted" (with
// the provider's task id) just after it; a job found in "submitting" by a
// later delivery is the one window where the outcome of a paid call is
// unknown (see RELIABILITY.md).
package jobstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/providers"
)

// Phase is where a job is in its life.
type Phase string

// The phases, in order.
const (
	Queued     Phase = "queued"
	Submitting Phase = "submitting"
	Submitted  Phase = "submitted"
	Finished   Phase = "finished"
)

// State is one job's record, stored as JSON under the job id.
type State struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	Batch    string `json:"batch,omitempty"`
	Phase    Phase  `json:"phase"`
	// Task is the provider task, set from "submitted" on.
	Task *providers.Task `json:"task,omitempty"`
	// Attempts counts attempts that failed with a retryable error. Pauses,
	// rate limits and shutdowns do not count.
	Attempts int `json:"attempts"`
	// AmbiguousSubmits counts submissions whose outcome was unknown
	// (a worker died during the paid call) and that were resubmitted.
	AmbiguousSubmits int `json:"ambiguous_submits,omitempty"`
	// Worker is the replica that last claimed the job.
	Worker          string     `json:"worker,omitempty"`
	EnqueuedAt      *time.Time `json:"enqueued_at,omitempty"`
	SubmitStartedAt *time.Time `json:"submit_started_at,omitempty"`
	SubmittedAt     *time.Time `json:"submitted_at,omitempty"`
	// SubmitUnknown is set in phase "submitting" when the worker saw its
	// paid call end without an answer (a timeout or dropped connection):
	// the provider may or may not have started the task.
	SubmitUnknown bool      `json:"submit_unknown,omitempty"`
	UpdatedAt     time.Time `json:"updated_at"`
	// CancelRequested is set by `enqueue cancel` for a job a worker holds;
	// the worker cancels it at the provider and finishes it as cancelled.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// LastError is the most recent error, for `enqueue status`.
	LastError string `json:"last_error,omitempty"`
	// Result is the terminal result event, stored before it is published
	// so a crash between the two republishes the same event.
	Result json.RawMessage `json:"result,omitempty"`
}

// Errors returned by Store.
var (
	ErrNotFound = errors.New("job state not found")
	ErrExists   = errors.New("job state already exists")
	ErrConflict = errors.New("job state changed concurrently")
	// ErrNoChange, returned by a Mutate function, skips the write.
	ErrNoChange = errors.New("no change")
)

// Store reads and writes job state in a KV bucket.
type Store struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// New returns a Store on kv (the reelq_jobs bucket).
func New(kv jetstream.KeyValue) *Store { return &Store{kv: kv, now: time.Now} }

// Subject is the KV subject of id's key, for callers that publish creates
// asynchronously (enqueue does, with an expected last subject sequence of 0).
func (s *Store) Subject(id string) string { return "$KV." + s.kv.Bucket() + "." + id }

// Encode returns st as stored.
func Encode(st *State) []byte {
	b, _ := json.Marshal(st)
	return b
}

// Get returns id's state and revision, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*State, uint64, error) {
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get job state %s: %w", id, err)
	}
	var st State
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, 0, fmt.Errorf("decode job state %s: %w", id, err)
	}
	return &st, e.Revision(), nil
}

// Create stores st if id has no state yet, or returns ErrExists.
func (s *Store) Create(ctx context.Context, st *State) (uint64, error) {
	st.UpdatedAt = s.now().UTC()
	rev, err := s.kv.Create(ctx, st.ID, Encode(st))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("create job state %s: %w", st.ID, err)
	}
	return rev, nil
}

// Update stores st if the key is still at rev, or returns ErrConflict.
func (s *Store) Update(ctx context.Context, st *State, rev uint64) (uint64, error) {
	st.UpdatedAt = s.now().UTC()
	nrev, err := s.kv.Update(ctx, st.ID, Encode(st), rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("update job state %s: %w", st.ID, err)
	}
	return nrev, nil
}

// GetOrCreate returns id's state, creating it from init if it has none.
func (s *Store) GetOrCreate(ctx context.Context, init *State) (*State, uint64, error) {
	for range 10 {
		st, rev, err := s.Get(ctx, init.ID)
		if !errors.Is(err, ErrNotFound) {
			return st, rev, err
		}
		cp := *init
		rev, err = s.Create(ctx, &cp)
		if errors.Is(err, ErrExists) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		return &cp, rev, nil
	}
	return nil, 0, fmt.Errorf("job state %s: %w", init.ID, ErrConflict)
}

// Mutate applies fn to id's current state and writes the result with
// compare-and-set, retrying on conflict. If id has no state, fn receives
// init (which must be non-nil to create one) and the result is created.
// fn may return ErrNoChange to leave the state as it is; Mutate then
// returns the current state and revision without error.
func (s *Store) Mutate(ctx context.Context, id string, init *State, fn func(st *State) error) (*State, uint64, error) {
	for attempt := 0; ; attempt++ {
		st, rev, err := s.Get(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound) && init != nil:
			cp := *init
			st = &cp
		case err != nil:
			return nil, 0, err
		}
		if err := fn(st); errors.Is(err, ErrNoChange) {
			return st, rev, nil
		} else if err != nil {
			return st, rev, err
		}
		if rev == 0 {
			rev, err = s.Create(ctx, st)
			if errors.Is(err, ErrExists) {
				continue
			}
		} else {
			rev, err = s.Update(ctx, st, rev)
			if errors.Is(err, ErrConflict) {
				if attempt > 50 {
					return nil, 0, fmt.Errorf("job state %s: %w (gave up after %d tries)", id, ErrConflict, attempt)
				}
				continue
			}
		}
		if err != nil {
			return nil, 0, err
		}
		return st, rev, nil
	}
}
