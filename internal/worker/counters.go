package worker

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/money"
	"github.com/reelq/reelq/internal/wire"
)

// spendCounters adds up the estimated spend of finished runs per batch and
// per provider (in millionths of a unit) and publishes the sums to the
// COUNTERS stream every counterFlushEvery, one increment per counter per
// flush rather than one per job. A worker that dies loses at most its last
// interval's sums: the figures are estimates and may under-count, never
// over-count.
type spendCounters struct {
	nc *nats.Conn

	mu  sync.Mutex
	sum map[string]int64 // counter subject -> millionths
}

const counterFlushEvery = 250 * time.Millisecond

func newSpendCounters(nc *nats.Conn) *spendCounters {
	return &spendCounters{nc: nc, sum: map[string]int64{}}
}

// add counts res's cost (nil or zero: nothing was paid).
func (s *spendCounters) add(res *reelq.Result) {
	if res.Cost == nil || res.Cost.Amount <= 0 || res.Cost.Unit == "" {
		return
	}
	micro := int64(money.FromFloat(res.Cost.Amount))
	field := wire.SpendCounterField(res.Cost.Unit)
	s.mu.Lock()
	if res.Batch != "" {
		s.sum[wire.BatchCounterSubject(res.Batch, field)] += micro
	}
	s.sum[wire.ProviderCounterSubject(res.Provider, field)] += micro
	s.mu.Unlock()
}

// run flushes until ctx ends, then once more.
func (s *spendCounters) run(ctx context.Context) {
	t := time.NewTicker(counterFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flush()
			return
		case <-t.C:
			s.flush()
		}
	}
}

func (s *spendCounters) flush() {
	s.mu.Lock()
	sum := s.sum
	s.sum = map[string]int64{}
	s.mu.Unlock()
	for subj, v := range sum {
		m := nats.NewMsg(subj)
		m.Header.Set("Nats-Incr", "+"+strconv.FormatInt(v, 10))
		_ = s.nc.PublishMsg(m)
	}
}
