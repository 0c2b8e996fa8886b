package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/queue"
)

// follower reads result events from RESULTS, from a start time on.
type follower struct {
	it jetstream.MessagesContext
}

func newFollower(ctx context.Context, js jetstream.JetStream, since time.Time, subjects ...string) (*follower, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := js.OrderedConsumer(ctx, queue.StreamResults, cfg)
	if err != nil {
		return nil, fmt.Errorf("follow results: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("follow results: %w", err)
	}
	return &follower{it: it}, nil
}

// next returns the next result event, or ctx's error. It returns when ctx
// ends even if nats.go does not: while an ordered consumer re-creates itself
// (after a NATS node loss, say) its Next retries without end, holding the
// consumer's lock, and neither NextContext nor Stop interrupts it. That left
// `publish --wait --timeout` (and Ctrl-C) hanging. After such an abandoned
// call the follower must not be used again; every caller stops on an error.
func (f *follower) next(ctx context.Context) (*queue.Result, error) {
	type next struct {
		msg jetstream.Msg
		err error
	}
	for {
		ch := make(chan next, 1)
		go func() {
			msg, err := f.it.Next(jetstream.NextContext(ctx))
			ch <- next{msg, err}
		}()
		var n next
		select {
		case n = <-ch:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		if n.err != nil {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			return nil, n.err
		}
		var r queue.Result
		if err := json.Unmarshal(n.msg.Data(), &r); err != nil {
			continue // not a reelq result; skip it
		}
		return &r, nil
	}
}

// stop stops the follower, waiting at most 2s: Stop blocks for as long as
// a re-creation (see next) holds the consumer's lock.
func (f *follower) stop() {
	done := make(chan struct{})
	go func() {
		f.it.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// tally sums up results.
type tally struct {
	byStatus map[string]int
	cost     map[string]float64
}

func (t *tally) add(r *queue.Result) {
	t.byStatus[r.Status]++
	if r.Cost != nil {
		t.cost[r.Cost.Unit] += r.Cost.Amount
	}
}

func (t *tally) String() string {
	var parts []string
	for _, s := range []string{queue.StatusSucceeded, queue.StatusFailed, queue.StatusCancelled} {
		if n := t.byStatus[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	var costs []string
	units := make([]string, 0, len(t.cost))
	for u := range t.cost {
		units = append(units, u)
	}
	sort.Strings(units)
	for _, u := range units {
		if u == "usd" {
			costs = append(costs, fmt.Sprintf("$%.2f", t.cost[u]))
		} else {
			costs = append(costs, fmt.Sprintf("%g %s", t.cost[u], u))
		}
	}
	s := strings.Join(parts, ", ")
	if len(costs) > 0 {
		s += "; estimated cost " + strings.Join(costs, " + ")
	}
	return s
}

// waitResults follows results until every job has one, writing each as a
// JSON line to out.
func (a *app) waitResults(ctx context.Context, f *follower, jobs []queue.Job, outcomes []queue.Outcome, out io.Writer, showBar bool) error {
	want := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		want[j.ID] = true
	}
	t := &tally{byStatus: map[string]int{}, cost: map[string]float64{}}
	enc := json.NewEncoder(out)
	bar := newBar(len(jobs), "waiting for results", showBar, a.stderr)
	record := func(r *queue.Result) error {
		if !want[r.ID] {
			return nil
		}
		delete(want, r.ID)
		t.add(r)
		_ = bar.Add(1)
		return enc.Encode(r)
	}
	// Jobs that finished before this run already have their result.
	for i, o := range outcomes {
		if o.Status == "duplicate" && o.Phase == jobstate.Finished {
			r, err := queue.LastResult(ctx, a.js, jobs[i].Provider, jobs[i].ID)
			if err == nil {
				if err := record(r); err != nil {
					return err
				}
			}
		}
	}
	for len(want) > 0 {
		r, err := f.next(ctx)
		if err != nil {
			_ = bar.Exit()
			missing := len(want)
			fmt.Fprintf(a.stderr, "stopped waiting with %d of %d results (%s); the jobs keep running — see 'enqueue status --batch %s'\n",
				len(jobs)-missing, len(jobs), t, jobs[0].Batch)
			if errors.Is(context.Cause(ctx), context.Canceled) {
				return &exitError{exitInterrupt, errors.New("")}
			}
			return &exitError{exitFailedJobs, fmt.Errorf("timed out waiting for %d results", missing)}
		}
		if err := record(r); err != nil {
			return err
		}
	}
	_ = bar.Finish()
	fmt.Fprintf(a.stderr, "%d jobs: %s\n", len(jobs), t)
	if bad := t.byStatus[queue.StatusFailed] + t.byStatus[queue.StatusCancelled]; bad > 0 {
		return &exitError{exitFailedJobs, fmt.Errorf("%d of %d jobs did not succeed", bad, len(jobs))}
	}
	return nil
}
