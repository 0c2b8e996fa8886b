package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/reelq/reelq/internal/heartbeat"
)

// The charts add up the workers' records (package heartbeat): each says
// what one replica did since its previous record, so the sum over the
// records of a minute is what the cluster did in it. The dashboard keeps
// a minute-by-minute sum per provider for the stream's whole span (24
// hours: at most 1,440 minutes a provider), read once from the stream's
// start and then from the last sequence it read: a chart costs the
// records published since the last one was drawn.

// minute is what the records of one minute add up to for one provider.
type minute struct {
	Submits, Succeeded, Failed, Cancelled uint64
	Spent                                 map[string]float64
	// Queued is the largest queue a record of the minute read (-1: none
	// could), Slots the slots the workers held (the sum of each worker's
	// last record in the minute).
	Queued int64
	Slots  map[string]int
}

// series is the minutes of every provider, read from the WORKERS stream.
type series struct {
	mu      sync.Mutex
	last    uint64 // last stream sequence read
	minutes map[string]map[int64]*minute
}

// update reads the records published since the last read (on the first,
// the whole stream) and forgets minutes older than the stream keeps.
func (s *series) update(ctx context.Context, srv *Server) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.minutes == nil {
		s.minutes = map[string]map[int64]*minute{}
	}
	for {
		req := directReq{Seq: s.last + 1, Batch: 4096}
		if s.last == 0 {
			start := time.Now().Add(-heartbeat.MaxAge).UTC()
			req = directReq{StartTime: &start, Batch: 4096}
		}
		n := 0
		err := directGet(ctx, srv.nc, heartbeat.Stream, req, func(m stored) bool {
			n++
			s.last = m.Seq
			var r heartbeat.Record
			if json.Unmarshal(m.Data, &r) == nil {
				s.add(r)
			}
			return true
		})
		if err != nil {
			return err
		}
		if n < 4096 {
			break
		}
	}
	cut := time.Now().Add(-heartbeat.MaxAge).Unix() / 60
	for _, ms := range s.minutes {
		for k := range ms {
			if k < cut {
				delete(ms, k)
			}
		}
	}
	return nil
}

func (s *series) add(r heartbeat.Record) {
	k := r.At.Unix() / 60
	for name, p := range r.Providers {
		ms := s.minutes[name]
		if ms == nil {
			ms = map[int64]*minute{}
			s.minutes[name] = ms
		}
		m := ms[k]
		if m == nil {
			m = &minute{Queued: -1, Slots: map[string]int{}}
			ms[k] = m
		}
		m.Submits += p.Submits
		m.Succeeded += p.Succeeded
		m.Failed += p.Failed
		m.Cancelled += p.Cancelled
		for u, v := range p.Spent {
			if m.Spent == nil {
				m.Spent = map[string]float64{}
			}
			m.Spent[u] += v
		}
		m.Queued = max(m.Queued, p.Queued)
		m.Slots[r.Worker] = p.Slots
	}
}

// chartRange is a chart's span and the width of one of its points.
type chartRange struct {
	Name string
	Span time.Duration
	Step time.Duration
	// Per names a point's width ("minute", "5 minutes").
	Per string
}

var chartRanges = []chartRange{{"1h", time.Hour, time.Minute, "minute"}, {"6h", 6 * time.Hour, 5 * time.Minute, "5 minutes"},
	{"24h", 24 * time.Hour, 20 * time.Minute, "20 minutes"}}

type activityData struct {
	Range     chartRange
	Ranges    []chartRange
	From, To  time.Time
	Providers []providerCharts
}

// providerCharts are one provider's points over the range, oldest first.
type providerCharts struct {
	Provider                              string
	Submits, Succeeded, Failed, Cancelled []float64
	Queued, Slots                         []float64
	Spent                                 map[string][]float64
	// Totals over the range.
	TotalSubmits, TotalSucceeded, TotalFailed, TotalCancelled uint64
	TotalSpent                                                map[string]float64
}

func (s *Server) activity(ctx context.Context, name string) (*activityData, error) {
	i := slices.IndexFunc(chartRanges, func(r chartRange) bool { return r.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("range %q: want 1h, 6h or 24h", name)
	}
	if err := s.series.update(ctx, s); err != nil {
		return nil, fmt.Errorf("workers' records: %w", err)
	}
	r := chartRanges[i]
	to := time.Now().Truncate(r.Step).Add(r.Step)
	from := to.Add(-r.Span)
	n := int(r.Span / r.Step)
	per := int64(r.Step / time.Minute)
	d := &activityData{Range: r, Ranges: chartRanges, From: from, To: to}
	s.series.mu.Lock()
	defer s.series.mu.Unlock()
	names := make([]string, 0, len(s.series.minutes))
	for p := range s.series.minutes {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, p := range names {
		ms := s.series.minutes[p]
		c := providerCharts{Provider: p, Spent: map[string][]float64{}, TotalSpent: map[string]float64{},
			Submits: make([]float64, n), Succeeded: make([]float64, n), Failed: make([]float64, n), Cancelled: make([]float64, n),
			Queued: make([]float64, n), Slots: make([]float64, n)}
		for i := range n {
			start := from.Unix()/60 + int64(i)*per
			queued, slots, seen := int64(-1), 0, false
			for k := start; k < start+per; k++ {
				m := ms[k]
				if m == nil {
					continue
				}
				seen = true
				c.Submits[i] += float64(m.Submits)
				c.Succeeded[i] += float64(m.Succeeded)
				c.Failed[i] += float64(m.Failed)
				c.Cancelled[i] += float64(m.Cancelled)
				c.TotalSubmits += m.Submits
				c.TotalSucceeded += m.Succeeded
				c.TotalFailed += m.Failed
				c.TotalCancelled += m.Cancelled
				for u, v := range m.Spent {
					if c.Spent[u] == nil {
						c.Spent[u] = make([]float64, n)
					}
					c.Spent[u][i] += v
					c.TotalSpent[u] += v
				}
				queued = max(queued, m.Queued)
				sum := 0
				for _, v := range m.Slots {
					sum += v
				}
				slots = max(slots, sum)
			}
			c.Queued[i], c.Slots[i] = float64(queued), float64(slots)
			if !seen {
				c.Queued[i], c.Slots[i] = -1, -1 // no record: a gap in the lines
			}
		}
		d.Providers = append(d.Providers, c)
	}
	return d, nil
}
