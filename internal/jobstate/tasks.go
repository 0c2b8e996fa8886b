package jobstate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

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
// job already owns succeeds. An operator's resolve claims the task it
// adopts; a worker records its own submission's task in the job state
// only (TaskHolder finds it there), which keeps the index off every job's
// path. Entries written by workers before that stay valid.
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

// TaskHolder returns a job other than except that holds provider's task
// taskID, or "" when none does: the index entry (an operator's earlier
// resolve, or a worker before the index left the job path), else a job
// state whose task, earlier runs or stored result name it. The scan reads
// every job state once (one watch); it serves operators' resolves, which
// are rare, so that no job pays an index write for it.
func (s *Store) TaskHolder(ctx context.Context, provider, taskID, except string) (string, error) {
	owner, err := s.TaskOwner(ctx, provider, taskID)
	if err != nil || (owner != "" && owner != except) {
		return owner, err
	}
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return "", fmt.Errorf("scan job states for task %s: %w", taskID, err)
	}
	defer func() { _ = w.Stop() }()
	needle := []byte(taskID)
	for {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("scan job states for task %s: %w", taskID, context.Cause(ctx))
		case e, ok := <-w.Updates():
			if !ok {
				return "", fmt.Errorf("scan job states for task %s: the watch stopped", taskID)
			}
			if e == nil {
				return "", nil // every state read
			}
			id := e.Key()
			if id == except || strings.Contains(id, ".") || !bytes.Contains(e.Value(), needle) {
				continue
			}
			st, err := Decode(id, e.Value())
			if err == nil && st.Provider == provider && holdsTask(st, taskID) {
				return id, nil
			}
		}
	}
}

// holdsTask reports whether st's task, one of its earlier runs or its
// stored result names task id.
func holdsTask(st *State, id string) bool {
	if st.Task != nil && st.Task.ID == id {
		return true
	}
	for _, r := range st.Runs {
		if r.TaskID == id {
			return true
		}
	}
	r := st.StoredResult()
	return r != nil && r.ProviderTaskID == id
}
