package archive

import (
	"context"
	"sync"

	"golang.org/x/time/rate"
)

// NewSlots returns an in-process Slots with n slots (at least 1).
func NewSlots(n int) Slots {
	if n < 1 {
		n = 1
	}
	return localSlots(make(chan struct{}, n))
}

type localSlots chan struct{}

func (s localSlots) Acquire(ctx context.Context) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case s <- struct{}{}:
		return sync.OnceFunc(func() { <-s }), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// NewBandwidth returns an in-process Bandwidth of bytesPerSecond (> 0),
// with a burst of a tenth of a second's bytes (between 64 KiB and
// 16 MiB). WaitN accepts any n, waiting in burst-sized steps.
func NewBandwidth(bytesPerSecond int64) Bandwidth {
	burst := min(max(bytesPerSecond/10, BandwidthChunk), 16<<20)
	return &localBandwidth{l: rate.NewLimiter(rate.Limit(bytesPerSecond), int(burst)), burst: int(burst)}
}

type localBandwidth struct {
	l     *rate.Limiter
	burst int
}

func (b *localBandwidth) WaitN(ctx context.Context, n int) error {
	for n > 0 {
		step := min(n, b.burst)
		if err := b.l.WaitN(ctx, step); err != nil {
			return err
		}
		n -= step
	}
	return nil
}
