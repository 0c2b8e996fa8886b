package jobstate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrTaskOwned is a provider task that another job has recorded: one
// task never belongs to two jobs (cancelling one would stop the other's
// paid work, and one video would be delivered twice).
var ErrTaskOwned = errors.New("the provider task belongs to another job")

// TaskKey is the key of the task index entry for provider's task id, in
// the job-state bucket: task.<provider>.<sha256 of the id, hex>. Job ids
// hold no dots, so an index key is never a job's; the hash keeps any task
// id a valid key.
func TaskKey(provider, taskID string) string {
	sum := sha256.Sum256([]byte(taskID))
	return "task." + provider + "." + hex.EncodeToString(sum[:])
}

// ClaimTask records that provider's task taskID belongs to job: an index
// entry created only if none exists (compare-and-set on "no key"), so of
// two jobs claiming one task only the first succeeds. Claiming a task the
// job already owns succeeds. Workers claim a task before any job state
// records it, so every task in a job state is in the index under its job.
func (s *Store) ClaimTask(ctx context.Context, provider, taskID, job string) error {
	key := TaskKey(provider, taskID)
	for range 3 {
		_, err := s.kv.Create(ctx, key, []byte(job))
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("claim task %s for job %s: %w", taskID, job, err)
		}
		owner, err := s.TaskOwner(ctx, provider, taskID)
		if err != nil {
			return err
		}
		switch owner {
		case job:
			return nil
		case "": // deleted between the two calls
			continue
		}
		return fmt.Errorf("%w: task %s is job %s's", ErrTaskOwned, taskID, owner)
	}
	return fmt.Errorf("claim task %s for job %s: the index entry keeps changing", taskID, job)
}

// TaskOwner returns the job that recorded provider's task taskID, or ""
// when none did.
func (s *Store) TaskOwner(ctx context.Context, provider, taskID string) (string, error) {
	e, err := s.kv.Get(ctx, TaskKey(provider, taskID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("task index %s: %w", taskID, err)
	}
	return string(e.Value()), nil
}
