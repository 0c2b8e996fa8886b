package worker

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/wire"
)

// HeldJobs counts, per provider this worker runs, the jobs held for an
// operator now, cluster-wide: the jobs marked in COUNTERS (markHeld) whose
// state is still held, as Client.Stats counts them. Held jobs are few
// (each waits for an operator), so reading each marked job's state is
// cheap. It backs reelq_jobs_held.
func (w *Worker) HeldJobs(ctx context.Context) (map[string]int, error) {
	out := make(map[string]int, len(w.rts))
	for name := range w.rts {
		out[name] = 0
	}
	s, err := w.js.Stream(ctx, wire.StreamCounters)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(wire.HeldMarkerSubject("*", "*")))
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(wire.HeldMarkerSubject("", ""), ".") // counters.held.
	for subj := range info.State.Subjects {
		provider, id, ok := strings.Cut(strings.TrimPrefix(subj, prefix), ".")
		if _, runs := out[provider]; !ok || !runs {
			continue
		}
		st, _, err := w.states.Get(ctx, id)
		if errors.Is(err, jobstate.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if st.Phase == reelq.PhaseHeld {
			out[provider]++
		}
	}
	return out, nil
}
