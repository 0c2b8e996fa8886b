package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrNoState is returned by [Store.Get] when the key has no value.
	ErrNoState = errors.New("ratelimit: no state")
	// ErrConflict is returned by [Store.Create] and [Store.Update] when the
	// compare-and-set lost: the key exists, or its revision has moved on.
	ErrConflict = errors.New("ratelimit: revision conflict")
)

// Store is the state shared by every replica: compare-and-set on one key.
// Revisions are non-zero and change on every successful write.
type Store interface {
	// Get returns the current value and revision, or ErrNoState.
	Get(ctx context.Context, key string) (value []byte, revision uint64, err error)
	// Create writes value only if key has no value; ErrConflict otherwise.
	Create(ctx context.Context, key string, value []byte) (revision uint64, err error)
	// Update writes value only if key is still at revision; ErrConflict otherwise.
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

// KVStore is a [Store] on a JetStream KV bucket (create it with History: 1).
type KVStore struct{ kv jetstream.KeyValue }

// NewKVStore returns a Store backed by kv.
func NewKVStore(kv jetstream.KeyValue) *KVStore { return &KVStore{kv: kv} }

// Get implements [Store].
func (s *KVStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) { // also a deleted or purged key
		return nil, 0, ErrNoState
	}
	if err != nil {
		return nil, 0, fmt.Errorf("ratelimit: kv get %q: %w", key, err)
	}
	return e.Value(), e.Revision(), nil
}

// Create implements [Store].
func (s *KVStore) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := s.kv.Create(ctx, key, value)
	return rev, kvErr("create", key, err)
}

// Update implements [Store].
func (s *KVStore) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	rev, err := s.kv.Update(ctx, key, value, revision)
	return rev, kvErr("update", key, err)
}

// kvErr maps CAS failures (codes 10071 and 10164, which nats.go reports as
// ErrKeyExists for Create and ErrKeyRevisionMismatch for Update) to ErrConflict.
func kvErr(op, key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	default:
		return fmt.Errorf("ratelimit: kv %s %q: %w", op, key, err)
	}
}

// MemStore is an in-memory [Store] for a single process and for tests.
// The zero value is not usable; call [NewMemStore].
type MemStore struct {
	mu  sync.Mutex
	rev uint64
	m   map[string]memEntry
}

type memEntry struct {
	value []byte
	rev   uint64
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{m: make(map[string]memEntry)} }

// Get implements [Store].
func (s *MemStore) Get(_ context.Context, key string) ([]byte, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return nil, 0, ErrNoState
	}
	return append([]byte(nil), e.value...), e.rev, nil
}

// Create implements [Store].
func (s *MemStore) Create(_ context.Context, key string, value []byte) (uint64, error) {
	return s.cas(key, value, 0)
}

// Update implements [Store].
func (s *MemStore) Update(_ context.Context, key string, value []byte, revision uint64) (uint64, error) {
	return s.cas(key, value, revision)
}

func (s *MemStore) cas(key string, value []byte, rev uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[key].rev != rev { // a missing key has revision 0
		return 0, ErrConflict
	}
	s.rev++
	s.m[key] = memEntry{value: append([]byte(nil), value...), rev: s.rev}
	return s.rev, nil
}
