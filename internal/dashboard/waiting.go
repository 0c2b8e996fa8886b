package dashboard

import (
	"context"
	"encoding/json"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/wire"
)

// waitNote says why a batch's jobs wait in the queue: their provider is
// paused, or no worker runs it.
type waitNote struct {
	Provider string
	Queued   uint64
	Pause    *inspect.Pause
	NoWorker bool
	// Seen is set when one of the batch's jobs was found in the
	// provider's queue (else they may be there, behind others).
	Seen bool
}

// waitingOn lists the providers that hold a batch's queued jobs back:
// each paused (or workerless) provider with jobs queued, and whether the
// batch's jobs are among the oldest of its queue (the first ones a
// worker would take, read by direct get, at most 1 MiB of them).
func (s *Server) waitingOn(ctx context.Context, batch string, ps []inspect.ProviderStats) ([]waitNote, error) {
	var out []waitNote
	for _, p := range ps {
		// Pulled ahead (waiting) or not, their messages are in JOBS.
		queued := p.Queued[reelq.High] + p.Queued[reelq.Normal] + p.Queued[reelq.Low] + p.Waiting
		if queued == 0 || (p.Pause == nil && !p.NoWorker) {
			continue
		}
		n := waitNote{Provider: p.Provider, Queued: queued, Pause: p.Pause, NoWorker: p.NoWorker}
		err := directGet(ctx, s.nc, wire.StreamJobs, directReq{Seq: 1, NextFor: "jobs." + p.Provider + ".>", Batch: 256, MaxBytes: 1 << 20}, func(m stored) bool {
			var j struct {
				Batch string `json:"batch"`
			}
			if json.Unmarshal(m.Data, &j) == nil && j.Batch == batch {
				n.Seen = true
				return false
			}
			return true
		})
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
