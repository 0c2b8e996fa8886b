package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/heartbeat"
)

// The workers view: each replica's last record on the WORKERS stream (one
// batched direct get of the last message of every workers.* subject),
// beside the slots the lease bucket says it holds (Stats' holders).

type workersData struct {
	Rows []workerRow
	// Up counts the replicas whose last record is recent.
	Up int
}

type workerRow struct {
	ID      string
	Version string
	Started time.Time
	Last    time.Time
	// State is "up", "late" (no record for three intervals), "stopped"
	// (its last record said so) or "lease only" (it holds slots but
	// publishes no record: a worker of an older release).
	State     string
	Providers []workerProvider
}

type workerProvider struct {
	Name string
	heartbeat.Provider
	// Leased is the slots the lease bucket says it holds.
	Leased int
}

// lateAfter is how long without a record makes a worker late.
const lateAfter = 3 * heartbeat.Interval

func (s *Server) workers(ctx context.Context) (*workersData, error) {
	var (
		recs []heartbeat.Record
		st   *inspect.Stats
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		recs, err = s.lastRecords(gctx)
		return err
	})
	g.Go(func() (err error) {
		st, err = s.i.Stats(gctx, inspect.StatsOptions{})
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	leased := map[string]map[string]int{} // worker -> provider -> slots
	for _, p := range st.Providers {
		for w, n := range p.Holders {
			if leased[w] == nil {
				leased[w] = map[string]int{}
			}
			leased[w][p.Provider] += n
		}
	}
	now := time.Now()
	d := &workersData{}
	for _, r := range recs {
		row := workerRow{ID: r.Worker, Version: r.Version, Started: r.Started, Last: r.At, State: "up"}
		switch {
		case r.Stopping:
			row.State = "stopped"
		case now.Sub(r.At) > lateAfter:
			row.State = "late"
		default:
			d.Up++
		}
		for name, p := range r.Providers {
			row.Providers = append(row.Providers, workerProvider{Name: name, Provider: p, Leased: leased[r.Worker][name]})
		}
		delete(leased, r.Worker)
		d.Rows = append(d.Rows, row)
	}
	for w, ps := range leased {
		row := workerRow{ID: w, State: "lease only"}
		for name, n := range ps {
			row.Providers = append(row.Providers, workerProvider{Name: name, Leased: n})
		}
		d.Rows = append(d.Rows, row)
	}
	rank := map[string]int{"up": 0, "late": 1, "lease only": 2, "stopped": 3}
	for i := range d.Rows {
		slices.SortFunc(d.Rows[i].Providers, func(a, b workerProvider) int { return cmp.Compare(a.Name, b.Name) })
	}
	slices.SortFunc(d.Rows, func(a, b workerRow) int {
		return cmp.Or(cmp.Compare(rank[a.State], rank[b.State]), b.Last.Compare(a.Last), cmp.Compare(a.ID, b.ID))
	})
	return d, nil
}

// lastRecords reads every worker's last record.
func (s *Server) lastRecords(ctx context.Context) ([]heartbeat.Record, error) {
	var out []heartbeat.Record
	err := directGet(ctx, s.nc, heartbeat.Stream, directReq{MultiLast: []string{"workers.*"}, Batch: 1024}, func(m stored) bool {
		var r heartbeat.Record
		if json.Unmarshal(m.Data, &r) == nil && r.Worker != "" {
			out = append(out, r)
		}
		return true
	})
	return out, err
}
