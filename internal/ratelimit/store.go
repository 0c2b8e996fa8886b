package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

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
// Its errors name the bucket.
type KVStore struct {
	bucket string
	kv     atomic.Pointer[jetstream.KeyValue]

	// Set by Repairable.
	js          jetstream.JetStream
	create      func(context.Context) (jetstream.KeyValue, error)
	brokenAfter time.Duration
	repairMu    sync.Mutex
}

// NewKVStore returns a Store backed by kv.
func NewKVStore(kv jetstream.KeyValue) *KVStore {
	s := &KVStore{bucket: kv.Bucket()}
	s.kv.Store(&kv)
	return s
}

// DefaultBrokenAfter is how long a KVStore's bucket may exist and refuse
// every call before Repair deletes and recreates it.
const DefaultBrokenAfter = 30 * time.Second

// Repairable lets the store repair its bucket (see [Repairer]): create it
// again with create when it is gone (deleted under the workers), or
// delete it (through js) and create it when it exists but its calls have
// failed for brokenAfter (zero: DefaultBrokenAfter), as a file store's
// critical write error ("stream store EOF") makes it. The state it holds
// is soft: a Limiter writes its schedule again (see Failures). It returns
// s.
func (s *KVStore) Repairable(js jetstream.JetStream, create func(context.Context) (jetstream.KeyValue, error), brokenAfter time.Duration) *KVStore {
	if brokenAfter <= 0 {
		brokenAfter = DefaultBrokenAfter
	}
	s.js, s.create, s.brokenAfter = js, create, brokenAfter
	return s
}

func (s *KVStore) bucketKV() jetstream.KeyValue { return *s.kv.Load() }

// Repair implements [Repairer] for a Repairable store: a bucket gone is
// created at once; one that exists is deleted and created once its calls
// have failed for brokenAfter, unless it was created less than that ago
// (by another replica's repair). Deleting needs the right to delete the
// bucket's stream; without it, the error says how an operator repairs the
// bucket.
func (s *KVStore) Repair(ctx context.Context, since time.Time) error {
	if s.js == nil {
		return errors.New("ratelimit: the store cannot repair itself")
	}
	s.repairMu.Lock()
	defer s.repairMu.Unlock()
	st, err := s.bucketKV().Status(ctx)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		// Gone: create it again.
	case err != nil:
		return fmt.Errorf("ratelimit: bucket %s: %w", s.bucket, err) // the server does not answer for it
	default:
		bs, ok := st.(*jetstream.KeyValueBucketStatus)
		if !ok || bs.StreamInfo() == nil {
			return fmt.Errorf("ratelimit: bucket %s: no stream info", s.bucket)
		}
		info := bs.StreamInfo()
		if age := info.TimeStamp.Sub(info.Created); age < s.brokenAfter {
			return fmt.Errorf("ratelimit: bucket %s was created %s ago; it is left to work", s.bucket, age.Round(time.Millisecond))
		}
		if time.Since(since) < s.brokenAfter {
			return fmt.Errorf("ratelimit: bucket %s exists but fails; it is recreated after %s of failures", s.bucket, s.brokenAfter)
		}
		if err := s.js.DeleteKeyValue(ctx, s.bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("ratelimit: bucket %s cannot be written and could not be deleted (%w): "+
				"delete it as an admin (nats kv del %s); the workers create it again", s.bucket, err, s.bucket)
		}
	}
	kv, err := s.create(ctx)
	if err != nil {
		return fmt.Errorf("ratelimit: create bucket %s: %w", s.bucket, err)
	}
	s.kv.Store(&kv)
	return nil
}

// Get implements [Store].
func (s *KVStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := s.bucketKV().Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) { // also a deleted or purged key
		return nil, 0, ErrNoState
	}
	if err != nil {
		return nil, 0, fmt.Errorf("ratelimit: bucket %s: get %q: %w", s.bucket, key, err)
	}
	return e.Value(), e.Revision(), nil
}

// Create implements [Store].
func (s *KVStore) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := s.bucketKV().Create(ctx, key, value)
	return rev, s.kvErr("create", key, err)
}

// Update implements [Store].
func (s *KVStore) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	rev, err := s.bucketKV().Update(ctx, key, value, revision)
	return rev, s.kvErr("update", key, err)
}

// kvErr maps CAS failures (codes 10071 and 10164, which nats.go reports as
// ErrKeyExists for Create and ErrKeyRevisionMismatch for Update) to ErrConflict.
func (s *KVStore) kvErr(op, key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	default:
		return fmt.Errorf("ratelimit: bucket %s: %s %q: %w", s.bucket, op, key, err)
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
