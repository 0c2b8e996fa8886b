// Package jobstate keeps each job's durable state (reelq.JobState) in the
// reelq_jobs KV bucket. Only workers write it, and every write is a
// compare-and-set on the key's revision, so two workers holding the same
// job after a redelivery cannot both submit it: the state is the record
// that makes a paid submission happen at most once per phase change.
//
// Transitions are checked (see Allowed): within a run phases move
// forward, except the documented steps back (a submit refused with 429 or
// for credits returns the job to "queued", as does Camb's unpaid task and
// an output that failed its media check under P_OUTPUT_POLICY=retry, and
// an operator resolves a held job to "submitted" or "queued"); a new run
// starts only from a finished run that did not succeed.
package jobstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
)

// State is a job's record.
type State = reelq.JobState

// Errors returned by Store.
var (
	ErrNotFound = errors.New("job state not found")
	ErrExists   = errors.New("job state already exists")
	ErrConflict = errors.New("job state changed concurrently")
	// ErrInvalidTransition is a write that would move a job in a way the
	// phase rules do not allow (a bug, or a forged message).
	ErrInvalidTransition = errors.New("job state transition not allowed")
	// ErrNoChange, returned by a Mutate function, skips the write.
	ErrNoChange = errors.New("no change")
	// ErrTooLarge is a state larger than the server accepts (its
	// max_payload, or the bucket's message size limit): writing it again
	// can never succeed.
	ErrTooLarge = errors.New("job state too large to store")
)

// tooLarge wraps err in ErrTooLarge when the client or the server refused
// the write for its size.
func tooLarge(err error, size int) error {
	var apiErr *jetstream.APIError
	if errors.Is(err, nats.ErrMaxPayload) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum) {
		return fmt.Errorf("%w (%d bytes): %w", ErrTooLarge, size, err)
	}
	return err
}

// next lists, for each phase, the phases a write may move it to within
// the same run.
var next = map[reelq.Phase][]reelq.Phase{
	reelq.PhaseQueued:     {reelq.PhaseQueued, reelq.PhaseSubmitting, reelq.PhaseHeld, reelq.PhaseFinished},
	reelq.PhaseSubmitting: {reelq.PhaseSubmitting, reelq.PhaseSubmitted, reelq.PhaseQueued, reelq.PhaseHeld, reelq.PhaseFinished},
	reelq.PhaseSubmitted:  {reelq.PhaseSubmitted, reelq.PhaseQueued, reelq.PhaseArchiving, reelq.PhaseFinished},
	reelq.PhaseHeld:       {reelq.PhaseHeld, reelq.PhaseSubmitted, reelq.PhaseQueued, reelq.PhaseFinished},
	reelq.PhaseArchiving:  {reelq.PhaseArchiving, reelq.PhaseQueued, reelq.PhaseFinished},
	reelq.PhaseFinished:   {reelq.PhaseFinished},
}

// Allowed reports whether a job may move from one state to the next: the
// same run along the phase rules, or a new run (run+1) from a finished run
// that did not succeed, starting queued or submitting.
func Allowed(from, to *State) error {
	switch {
	case from == nil:
		if to.Run > 1 {
			return fmt.Errorf("%w: a new job starts at run 1, not %d", ErrInvalidTransition, to.Run)
		}
		return nil
	case to.Run == from.Run:
		for _, p := range next[from.Phase] {
			if p == to.Phase {
				return nil
			}
		}
		return fmt.Errorf("%w: %s -> %s in run %d", ErrInvalidTransition, from.Phase, to.Phase, from.Run)
	case to.Run == from.Run+1:
		if from.Phase != reelq.PhaseFinished {
			return fmt.Errorf("%w: run %d starts before run %d finished (%s)", ErrInvalidTransition, to.Run, from.Run, from.Phase)
		}
		if from.Succeeded() {
			return fmt.Errorf("%w: run %d succeeded; it is never run (and paid) again", ErrInvalidTransition, from.Run)
		}
		if to.Phase != reelq.PhaseQueued && to.Phase != reelq.PhaseSubmitting {
			return fmt.Errorf("%w: run %d starts %s", ErrInvalidTransition, to.Run, to.Phase)
		}
		return nil
	}
	return fmt.Errorf("%w: run %d -> %d", ErrInvalidTransition, from.Run, to.Run)
}

// Store reads and writes job state in a KV bucket.
type Store struct {
	kv  jetstream.KeyValue
	js  jetstream.JetStream
	now func() time.Time
}

// New returns a Store on kv (the reelq_jobs bucket). js is used for
// asynchronous writes (UpdateAsync); it may be nil if they are not used.
func New(js jetstream.JetStream, kv jetstream.KeyValue) *Store {
	return &Store{kv: kv, js: js, now: time.Now}
}

// Subject is the KV subject of id's key.
func (s *Store) Subject(id string) string { return "$KV." + s.kv.Bucket() + "." + id }

// Encode returns st as stored.
func Encode(st *State) []byte {
	b, _ := json.Marshal(st)
	return b
}

// Decode parses a stored state.
func Decode(id string, data []byte) (*State, error) {
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("decode job state %s: %w", id, err)
	}
	if st.Run == 0 {
		st.Run = 1 // written before runs existed
	}
	return &st, nil
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
	st, err := Decode(id, e.Value())
	if err != nil {
		return nil, 0, err
	}
	return st, e.Revision(), nil
}

// Create stores st if id has no state yet, or returns ErrExists.
func (s *Store) Create(ctx context.Context, st *State) (uint64, error) {
	if err := Allowed(nil, st); err != nil {
		return 0, err
	}
	st.UpdatedAt = s.now().UTC()
	data := Encode(st)
	rev, err := s.kv.Create(ctx, st.ID, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("create job state %s: %w", st.ID, tooLarge(err, len(data)))
	}
	return rev, nil
}

// Update stores next, the successor of cur (read at revision rev), if the
// key is still at rev; it returns ErrConflict otherwise, and
// ErrInvalidTransition if the phase rules forbid the move.
func (s *Store) Update(ctx context.Context, cur, next *State, rev uint64) (uint64, error) {
	if err := Allowed(cur, next); err != nil {
		return 0, err
	}
	next.UpdatedAt = s.now().UTC()
	data := Encode(next)
	nrev, err := s.kv.Update(ctx, next.ID, data, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("update job state %s: %w", next.ID, tooLarge(err, len(data)))
	}
	return nrev, nil
}

// UpdateAsync is Update without waiting: it returns the publish's future,
// whose error is ErrConflict-like (a wrong last sequence) when the key
// moved on. Use Result to read it.
func (s *Store) UpdateAsync(cur, next *State, rev uint64) (jetstream.PubAckFuture, error) {
	if err := Allowed(cur, next); err != nil {
		return nil, err
	}
	next.UpdatedAt = s.now().UTC()
	msg := &nats.Msg{Subject: s.Subject(next.ID), Data: Encode(next), Header: nats.Header{}}
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	f, err := s.js.PublishMsgAsync(msg)
	return f, tooLarge(err, len(msg.Data))
}

// Result waits for an UpdateAsync future and returns the new revision,
// ErrConflict, or the publish error.
func Result(ctx context.Context, f jetstream.PubAckFuture) (uint64, error) {
	select {
	case ack := <-f.Ok():
		return ack.Sequence, nil
	case err := <-f.Err():
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, ErrConflict
		}
		return 0, fmt.Errorf("update job state: %w", tooLarge(err, len(f.Msg().Data)))
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
}

// Mutate applies fn to id's current state and writes the result with
// compare-and-set, retrying on conflict. If id has no state, fn receives
// init (which must be non-nil to create one) and the result is created.
// fn may return ErrNoChange to leave the state as it is; Mutate then
// returns the current state and revision without error.
func (s *Store) Mutate(ctx context.Context, id string, init *State, fn func(st *State) error) (*State, uint64, error) {
	for attempt := 0; ; attempt++ {
		cur, rev, err := s.Get(ctx, id)
		var st *State
		switch {
		case errors.Is(err, ErrNotFound) && init != nil:
			cp := *init
			st = &cp
		case err != nil:
			return nil, 0, err
		default:
			cp := *cur
			st = &cp
		}
		if err := fn(st); errors.Is(err, ErrNoChange) {
			return cur, rev, nil
		} else if err != nil {
			return cur, rev, err
		}
		if rev == 0 {
			rev, err = s.Create(ctx, st)
			if errors.Is(err, ErrExists) {
				continue
			}
		} else {
			rev, err = s.Update(ctx, cur, st, rev)
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
