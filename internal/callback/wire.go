package callback

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/wire"
)

// StatePhase reads a job's provider and phase from the job states.
func StatePhase(states *jobstate.Store) Phase {
	return func(ctx context.Context, id string) (string, reelq.Phase, bool, error) {
		st, _, err := states.Get(ctx, id)
		switch {
		case errors.Is(err, jobstate.ErrNotFound):
			return "", "", false, nil
		case err != nil:
			return "", "", false, err
		}
		return st.Provider, st.Phase, true, nil
	}
}

// Publish publishes wakes on nc (core NATS: a wake nobody hears is lost,
// and polling finds the job done as it would have without it).
func Publish(nc *nats.Conn) func(provider, id string) error {
	return func(provider, id string) error { return nc.Publish(wire.WakeSubject(provider, id), nil) }
}
