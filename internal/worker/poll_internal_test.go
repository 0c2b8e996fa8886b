package worker

import (
	"testing"
	"time"
)

// A job's polls keep backoff/v4's schedule (nextPoll is its arithmetic,
// kept as one duration per job): the interval ±10%, growing 1.5 times a
// poll up to MaxPollInterval, and staying there.
func TestPollScheduleGrowsToItsMaximum(t *testing.T) {
	t.Parallel()
	e := &engine{rt: &Runtime{PollInterval: 10 * time.Second, MaxPollInterval: 30 * time.Second}}
	for range 100 {
		ps := e.pollSchedule(&job{})
		for i, want := range []time.Duration{10e9, 15e9, 22.5e9, 30e9, 30e9} {
			got := e.nextPoll(ps)
			if lo, hi := want-want/10, want+want/10+1; got < lo || got > hi {
				t.Fatalf("poll %d: wait %s, want %s ±10%%", i+1, got, want)
			}
		}
	}
}
