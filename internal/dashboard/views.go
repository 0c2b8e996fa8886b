package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
)

// What the pages show. Each is read from the public client when a page is
// rendered (or a live page is told it changed); none scans the job states.

type overviewData struct {
	At        time.Time
	Providers []providerRow
	Batches   []batchRow
	Budgets   []inspect.BudgetStatus
	DLQ       uint64
}

type providerRow struct {
	inspect.ProviderStats
	QueuedTotal   uint64
	State         string // running, idle, paused, no worker
	Warning       string
	SubmitsPerMin float64
}

type batchRow struct {
	inspect.BatchStats
	Spend   reelq.Spend
	Budgets []inspect.BudgetStatus
	Started time.Time
	// Finished is set when every enqueued job has a result.
	Finished bool
	// PerMin is the results per minute over the batch's life, RecentPerMin
	// over the last minute this dashboard saw.
	PerMin, RecentPerMin float64
	// Spent is the estimated cost of its finished runs by unit (the
	// workers' counters; the budget accounting for workers that keep no
	// such counter); Estimate extrapolates it to every enqueued job.
	Spent, Estimate map[string]float64
}

func (b batchRow) Pct() float64 {
	if b.Enqueued == 0 {
		return 0
	}
	return min(100, 100*float64(b.Done())/float64(b.Enqueued))
}

func (s *Server) overview(ctx context.Context) (*overviewData, error) {
	var (
		st      *inspect.Stats
		budgets []inspect.BudgetStatus
		dlq     uint64
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		st, err = s.i.Stats(gctx, inspect.StatsOptions{Recent: 20})
		return err
	})
	g.Go(func() (err error) {
		budgets, err = s.i.Budgets(gctx)
		return err
	})
	g.Go(func() error {
		n, err := s.r.deadLetterCount(gctx)
		dlq = n
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	d := &overviewData{At: st.At, Budgets: budgets, DLQ: dlq}
	for _, p := range st.Providers {
		d.Providers = append(d.Providers, s.providerRow(p))
	}
	rows, err := s.batchRows(ctx, st.Batches, budgets)
	if err != nil {
		return nil, err
	}
	d.Batches = rows
	return d, nil
}

func (s *Server) providerRow(p inspect.ProviderStats) providerRow {
	r := providerRow{ProviderStats: p, SubmitsPerMin: s.hub.submitRate(p.Provider)}
	r.QueuedTotal = p.Queued[reelq.High] + p.Queued[reelq.Normal] + p.Queued[reelq.Low]
	busy := p.Running > 0 || p.Waiting > 0 || r.QueuedTotal > 0
	switch {
	case p.Pause != nil:
		r.State = "paused"
	case p.NoWorker:
		r.State = "no worker"
	case busy:
		r.State = "running"
	default:
		r.State = "idle"
	}
	if r.QueuedTotal > 0 && p.Pause == nil && (p.NoWorker || (p.Pulling == 0 && p.Running == 0 && p.Waiting == 0)) {
		r.Warning = fmt.Sprintf("%d jobs queued, but no worker runs %s (start one with %s_API_KEY set)", r.QueuedTotal, p.Provider, strings.ToUpper(p.Provider))
	}
	if a := p.Limiter; a != nil {
		r.Warning = fmt.Sprintf("the rate limiter cannot write its shared state (bucket %s) since %s (reported by %s): %s; no call to %s goes out until it can",
			a.Bucket, a.Since.UTC().Format(time.RFC3339), a.By, a.Error, p.Provider)
	}
	return r
}

// batchRows adds spend, budgets and times to the batches' counters, with
// a few requests per batch in parallel.
func (s *Server) batchRows(ctx context.Context, bs []inspect.BatchStats, budgets []inspect.BudgetStatus) ([]batchRow, error) {
	rows := make([]batchRow, len(bs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, b := range bs {
		rows[i] = batchRow{BatchStats: b, RecentPerMin: s.hub.batchRate(b.Batch)}
		for _, l := range budgets {
			if l.Scope == reelq.ScopeBatch && l.Name == b.Batch {
				rows[i].Budgets = append(rows[i].Budgets, l)
			}
		}
		g.Go(func() error {
			sp, err := s.i.BatchSpend(gctx, b.Batch)
			if err != nil {
				return err
			}
			started, err := s.r.batchStarted(gctx, b.Batch)
			if err != nil {
				return err
			}
			r := &rows[i]
			r.Spend, r.Started = sp, started
			r.Spent = b.Spent
			if len(r.Spent) == 0 {
				r.Spent = sp.Spent
			}
			if len(b.Spent) > 0 && b.Done() > 0 && b.Enqueued > b.Done() {
				r.Estimate = map[string]float64{}
				for u, v := range b.Spent {
					r.Estimate[u] = v / float64(b.Done()) * float64(b.Enqueued)
				}
			} else if len(b.Spent) > 0 {
				r.Estimate = b.Spent
			}
			r.Finished = b.Enqueued > 0 && b.Done() >= b.Enqueued
			if !started.IsZero() && b.Updated.After(started) && b.Done() > 0 {
				r.PerMin = float64(b.Done()) / b.Updated.Sub(started).Minutes()
			}
			return nil
		})
	}
	return rows, g.Wait()
}

type batchData struct {
	Row batchRow
	// Jobs is one page of the batch's index.
	Jobs []jobRow
	From indexCursor
	Next string // cursor of the next page, "" at the end
	// Sampled is how many finished jobs of this page have a cost; SoFar
	// and Whole extrapolate their mean cost to the batch's finished jobs
	// and to all its jobs, per unit (for a batch without a budget, whose
	// spend the workers do not account).
	Sampled      int
	SoFar, Whole map[string]float64
	// Waiting says which paused or workerless providers hold its
	// unfinished jobs back.
	Waiting []waitNote
}

type jobRow struct {
	ID    string
	State *reelq.JobState
	// Status is the current run's result status, once finished, and
	// Result that result.
	Status string
	Result *reelq.Result
}

const batchPage = 100

func (s *Server) batch(ctx context.Context, name string, from indexCursor) (*batchData, error) {
	st, err := s.i.Stats(ctx, inspect.StatsOptions{Batch: name})
	if err != nil {
		return nil, err
	}
	var bs inspect.BatchStats
	found := false
	for _, b := range st.Batches {
		if b.Batch == name {
			bs, found = b, true
		}
	}
	budgets, err := s.i.Budgets(ctx)
	if err != nil {
		return nil, err
	}
	ids, next, more, err := s.r.batchIndex(ctx, name, from, batchPage)
	if err != nil {
		return nil, err
	}
	if !found && len(ids) == 0 {
		return nil, reelq.ErrNotFound
	}
	bs.Batch = name
	rows, err := s.batchRows(ctx, []inspect.BatchStats{bs}, budgets)
	if err != nil {
		return nil, err
	}
	d := &batchData{Row: rows[0], From: from}
	if !d.Row.Finished {
		if d.Waiting, err = s.waitingOn(ctx, name, st.Providers); err != nil {
			return nil, err
		}
	}
	if more {
		d.Next = cursorString(next)
	}
	states, err := s.r.jobStates(ctx, ids)
	if err != nil {
		return nil, err
	}
	sum := map[string]float64{}
	for _, id := range ids {
		r := jobRow{ID: id}
		if st := states[id]; st != nil {
			r = rowOf(st)
		}
		if res := r.Result; res != nil && res.Cost != nil && res.Cost.Unit != "" {
			sum[res.Cost.Unit] += res.Cost.Amount
			d.Sampled++
		}
		d.Jobs = append(d.Jobs, r)
	}
	if d.Sampled > 0 {
		d.SoFar, d.Whole = map[string]float64{}, map[string]float64{}
		for u, v := range sum {
			mean := v / float64(d.Sampled)
			d.SoFar[u], d.Whole[u] = mean*float64(bs.Done()), mean*float64(bs.Enqueued)
		}
	}
	return d, nil
}

func cursorString(c indexCursor) string {
	return strconv.FormatUint(c.Seq, 10) + "." + strconv.Itoa(c.Skip)
}

func parseCursor(s string) indexCursor {
	a, b, _ := strings.Cut(s, ".")
	seq, _ := strconv.ParseUint(a, 10, 64)
	skip, _ := strconv.Atoi(b)
	return indexCursor{Seq: seq, Skip: max(skip, 0)}
}

type jobData struct {
	State  *reelq.JobState
	Result *reelq.Result
	Events []reelq.Event
	// Outputs are the current run's, with the dashboard's link to each
	// archived copy.
	Outputs []outputRow
	// Input and Metadata are indented for reading.
	Input, Metadata string
	CancelRequested bool
	Cancelable      bool
}

type outputRow struct {
	N            int
	Href         string // the archived copy through the dashboard, "" without one
	Kind         string // video, audio, image or file
	ContentType  string
	Size         int64
	ProviderURL  string
	ArchiveError string
	// Media is what the bytes are; Invalid why they failed their media
	// check (nil: passed, or not checked).
	Media   *reelq.MediaInfo
	Invalid *reelq.ValidationError
}

func (s *Server) job(ctx context.Context, id string) (*jobData, error) {
	var (
		st  *reelq.JobState
		evs []reelq.Event
		cr  map[string]bool
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		st, err = s.c.Get(gctx, id)
		return err
	})
	g.Go(func() (err error) {
		evs, err = s.i.JobEvents(gctx, id)
		return err
	})
	g.Go(func() (err error) {
		cr, err = s.i.CancelRequested(gctx, []string{id})
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	d := &jobData{State: st, Events: evs, Input: indent(st.Input), Metadata: indent(st.Metadata),
		CancelRequested: cr[id] && st.Phase != reelq.PhaseFinished, Cancelable: s.c.Cancelable(st.Provider)}
	if st.Phase == reelq.PhaseFinished {
		d.Result = st.StoredResult()
	}
	for i, o := range currentOutputs(st) {
		d.Outputs = append(d.Outputs, outputRowOf(id, i+1, o))
	}
	slices.Reverse(d.Events) // newest first
	return d, nil
}

// currentOutputs are the current run's outputs: the result's (with their
// archived copies) once finished, else those learnt from the last poll.
func currentOutputs(st *reelq.JobState) []reelq.Output {
	if st.Phase == reelq.PhaseFinished {
		if r := st.StoredResult(); r != nil {
			return r.Outputs
		}
	}
	return st.Outputs
}

func outputRowOf(id string, n int, o reelq.Output) outputRow {
	r := outputRow{N: n, ContentType: o.ContentType, ProviderURL: o.URL, ArchiveError: o.ArchiveError, Kind: "file",
		Media: o.Media, Invalid: o.ValidationError}
	if o.Archive != nil {
		r.Href = fmt.Sprintf("/jobs/%s/outputs/%d", id, n)
		r.Size = o.Archive.Size
		if o.Archive.ContentType != "" {
			r.ContentType = o.Archive.ContentType
		}
	}
	r.Kind = mediaKind(r.ContentType)
	return r
}

// mediaKind is how a page shows a content type: only these play inline.
func mediaKind(ct string) string {
	ct, _, _ = strings.Cut(strings.ToLower(ct), ";")
	switch {
	case strings.HasPrefix(ct, "video/"):
		return "video"
	case strings.HasPrefix(ct, "audio/"):
		return "audio"
	case ct == "image/png" || ct == "image/jpeg" || ct == "image/gif" || ct == "image/webp":
		return "image"
	}
	return "file"
}

func indent(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}

type dlqData struct {
	Count   uint64
	Letters []dlqRow
	After   uint64
	Next    uint64 // 0: no further page
}

type dlqRow struct {
	inspect.DeadLetter
	Payload string
}

const dlqPage = 50

func (s *Server) dlq(ctx context.Context, after uint64) (*dlqData, error) {
	n, err := s.r.deadLetterCount(ctx)
	if err != nil {
		return nil, err
	}
	ls, err := s.r.deadLettersPage(ctx, after, dlqPage)
	if err != nil {
		return nil, err
	}
	d := &dlqData{Count: n, After: after}
	for _, l := range ls {
		p := indent(l.Data)
		if len(p) > 4000 {
			p = p[:4000] + "\n…"
		}
		d.Letters = append(d.Letters, dlqRow{DeadLetter: l, Payload: p})
	}
	if len(ls) == dlqPage {
		d.Next = ls[len(ls)-1].Seq
	}
	return d, nil
}

// viewCache shares what live pages show between the pages watching the
// same view: it is read once per change, however many are open.
type viewCache struct {
	mu sync.Mutex
	m  map[viewKey]*cached
}

type cached struct {
	mu   sync.Mutex
	gen  uint64
	ok   bool
	data any
	err  error
}

func (c *viewCache) get(key viewKey, gen uint64, load func() (any, error)) (any, error) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[viewKey]*cached{}
	}
	e := c.m[key]
	if e == nil {
		e = &cached{}
		c.m[key] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ok && e.gen == gen && e.err == nil {
		return e.data, nil
	}
	e.data, e.err = load()
	e.gen, e.ok = gen, true
	return e.data, e.err
}

// drop forgets key (its last page went away).
func (c *viewCache) drop(key viewKey) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

var errNotFound = errors.New("not found")
