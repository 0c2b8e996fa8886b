package dashboard

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/wire"
)

// The job list reads the job state bucket's stream (KV_reelq_jobs) from
// its end: it keeps one message per job (History 1), in the order the
// jobs were last written, so the stream read backwards is every job a
// worker has picked up, the most recently changed first. A page is a few
// batched direct gets of consecutive sequences; its cursor is the
// sequence of its last row, so the next page starts there whatever was
// written since, and no page ever counts or skips rows (no offsets).
//
// What is fast at any size: no filter, a time range (updated between two
// times: the server maps each to a sequence), a provider (about one job in
// four on a page's scan), a batch (read through the batch's own index, not
// the other jobs), held jobs (the workers mark them in COUNTERS: the list
// reads the marks) and states that are common in the range. What is not:
// any other state that is rare in the range (a few jobs stuck in
// "submitting" among a million), which the list finds by reading the
// states one by one. A page stops reading after scanBudget states and
// says how far it got; its "continue" link reads on from there.

const (
	jobsPage   = 50
	scanBudget = 10_000
	// scanWindow bounds the sequences one direct get reads.
	scanWindow = 4096
)

// jobStates are the states the list filters by: "active" (not finished),
// a phase, or the status of a finished run.
var jobStates = []string{"active", string(reelq.PhaseQueued), string(reelq.PhaseSubmitting), string(reelq.PhaseSubmitted),
	string(reelq.PhaseHeld), string(reelq.PhaseArchiving), reelq.StatusSucceeded, reelq.StatusFailed, reelq.StatusCancelled}

// jobFilter is what a job list page shows: jobs in State of Provider in
// Batch, last updated in [Since, Until), older than the cursor.
type jobFilter struct {
	State, Provider, Batch string
	Since, Until           time.Time
	// Before is the state stream's cursor (rows below this sequence; for
	// held jobs, updated before this Unix time in nanoseconds), From the
	// batch index's (with Batch).
	Before uint64
	From   indexCursor
}

// filterForm is the time format of the filter form's inputs
// (datetime-local, UTC).
const filterForm = "2006-01-02T15:04"

// parseFilter reads a job list's query; a bad value is an error naming
// the field (the page answers 400).
func parseFilter(q url.Values) (jobFilter, error) {
	f := jobFilter{State: q.Get("state"), Provider: q.Get("provider"), Batch: strings.TrimSpace(q.Get("batch"))}
	if f.State != "" && !slices.Contains(jobStates, f.State) {
		return f, fmt.Errorf("state %q: want one of %s", f.State, strings.Join(jobStates, ", "))
	}
	if f.Provider != "" && !reelq.KnownProvider(f.Provider) {
		return f, fmt.Errorf("provider %q: want one of %s", f.Provider, strings.Join(reelq.Providers, ", "))
	}
	if f.Batch != "" && !reelq.ValidID(f.Batch) {
		return f, fmt.Errorf("batch %q is not a batch name", f.Batch)
	}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := strings.TrimSpace(q.Get(t.name))
		if v == "" {
			continue
		}
		var err error
		if *t.to, err = parseWhen(v, time.Now()); err != nil {
			return f, fmt.Errorf("%s %q: %w", t.name, v, err)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, fmt.Errorf("since %s is not before until %s", f.Since.Format(filterForm), f.Until.Format(filterForm))
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return f, fmt.Errorf("before %q: want the sequence a page link gives", v)
		}
		f.Before = n
	}
	if v := q.Get("from"); v != "" {
		c, ok := parseCursorStrict(v)
		if !ok || f.Batch == "" {
			return f, fmt.Errorf("from %q: want the cursor a page link of a batch's list gives", v)
		}
		f.From = c
	}
	return f, nil
}

// parseWhen reads a time: RFC 3339, the form's 2006-01-02T15:04 (UTC), or
// a duration before now ("90m", "24h", "7d").
func parseWhen(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(filterForm, v); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n > 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("want a time (2006-01-02T15:04, UTC, or RFC 3339) or a duration before now (90m, 24h, 7d)")
}

// query is the filter as a page's query, without its cursor.
func (f jobFilter) query() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("state", f.State)
	set("provider", f.Provider)
	set("batch", f.Batch)
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// First reports whether f is a list's first page (the live one).
func (f jobFilter) First() bool { return f.Before == 0 && f.From == (indexCursor{}) }

func (f jobFilter) matches(st *reelq.JobState) bool {
	if f.Provider != "" && st.Provider != f.Provider || f.Batch != "" && st.Batch != f.Batch {
		return false
	}
	if !f.Since.IsZero() && st.UpdatedAt.Before(f.Since) || !f.Until.IsZero() && !st.UpdatedAt.Before(f.Until) {
		return false
	}
	switch f.State {
	case "":
		return true
	case "active":
		return st.Phase != reelq.PhaseFinished
	case reelq.StatusSucceeded, reelq.StatusFailed, reelq.StatusCancelled:
		r := st.StoredResult()
		return st.Phase == reelq.PhaseFinished && r != nil && r.Status == f.State
	}
	return string(st.Phase) == f.State
}

// mayMatch is a quick look at a stored state's JSON before decoding it:
// false only when it cannot match.
func (f jobFilter) mayMatch(data []byte) bool {
	if f.Provider != "" && !bytes.Contains(data, []byte(`"provider":"`+f.Provider+`"`)) {
		return false
	}
	switch f.State {
	case "", "active":
	case reelq.StatusSucceeded, reelq.StatusFailed, reelq.StatusCancelled:
		if !bytes.Contains(data, []byte(`"phase":"finished"`)) || !bytes.Contains(data, []byte(`"status":"`+f.State+`"`)) {
			return false
		}
	default:
		if !bytes.Contains(data, []byte(`"phase":"`+f.State+`"`)) {
			return false
		}
	}
	return true
}

type jobList struct {
	Filter jobFilter
	// Query is the filter as a query string; Newest and Next are the
	// pager's links (Next "" at the end).
	Query        string
	Newest, Next template.URL
	Rows         []jobRow
	// Scanned counts the states read for this page; Partial says the page
	// stopped at scanBudget before it was full, having read back to
	// ScannedTo.
	Scanned   int
	Partial   bool
	ScannedTo time.Time
	// Kept is how many job states the bucket keeps.
	Kept uint64
	// States and Providers fill the form's choices.
	States, Providers []string
}

// jobList reads one page of the job list.
func (s *Server) jobList(ctx context.Context, f jobFilter) (*jobList, error) {
	d := &jobList{Filter: f, Query: f.query().Encode(), States: jobStates, Providers: reelq.Providers}
	d.Newest = listURL(d.Query)
	var err error
	switch {
	case f.Batch != "":
		err = s.batchJobList(ctx, f, d)
	case f.State == string(reelq.PhaseHeld):
		err = s.heldJobList(ctx, f, d)
	default:
		err = s.stateJobList(ctx, f, d)
	}
	if err != nil {
		return nil, fmt.Errorf("job list: %w", err)
	}
	return d, nil
}

// stateJobList reads the page from the job state stream, backwards from
// the cursor (or the end, or the sequence of Until) down to the sequence
// of Since.
func (s *Server) stateJobList(ctx context.Context, f jobFilter, d *jobList) error {
	stream := "KV_" + wire.BucketJobs
	js, err := s.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info := js.CachedInfo()
	d.Kept = info.State.Msgs
	lo, hi := max(info.State.FirstSeq, 1), info.State.LastSeq+1
	if f.Before > 0 {
		hi = min(hi, f.Before)
	}
	if !f.Until.IsZero() {
		if seq, err := seqAt(ctx, s.nc, stream, "", f.Until); err != nil {
			return err
		} else if seq > 0 {
			hi = min(hi, seq)
		}
	}
	if !f.Since.IsZero() {
		seq, err := seqAt(ctx, s.nc, stream, "", f.Since)
		if err != nil {
			return err
		}
		if seq == 0 {
			return nil // nothing written since
		}
		lo = max(lo, seq)
	}
	window := uint64(4 * jobsPage)
	if f.Provider == "" && f.State == "" {
		window = jobsPage + 8 // nearly every state matches
	}
	var match []*reelq.JobState
	var seqs []uint64
	for hi > lo && len(d.Rows) < jobsPage {
		if d.Scanned >= scanBudget {
			d.Partial = true
			break
		}
		start := max(lo, hi-min(hi-lo, window))
		match, seqs = match[:0], seqs[:0]
		err := directGet(ctx, s.nc, stream, directReq{Seq: start, Batch: int(min(window, hi-start))}, func(m stored) bool {
			if m.Seq >= hi {
				return false
			}
			d.Scanned++
			if len(m.Data) == 0 || !f.mayMatch(m.Data) {
				return true
			}
			st, ok := decodeJobState(m)
			if ok && f.matches(st) {
				match, seqs = append(match, st), append(seqs, m.Seq)
			}
			return true
		})
		if err != nil {
			return err
		}
		for i := len(match) - 1; i >= 0 && len(d.Rows) < jobsPage; i-- {
			d.Rows = append(d.Rows, rowOf(match[i]))
			hi = seqs[i] // the next page starts below the last row
		}
		if len(d.Rows) < jobsPage {
			hi = start
		}
		window = min(2*window, scanWindow)
	}
	if len(d.Rows) > 0 || d.Partial {
		if hi > lo {
			q := f.query()
			q.Set("before", strconv.FormatUint(hi, 10))
			d.Next = listURL(q.Encode())
		}
	}
	if d.Partial {
		if t, err := seqTime(ctx, s, stream, hi); err == nil {
			d.ScannedTo = t
		}
	}
	return nil
}

// heldJobList lists the held jobs from the marks the workers keep of
// them in COUNTERS (counters.held.<provider>.<id>, what stats counts):
// held jobs are few (each waits for an operator), so one page has them
// all, found without reading any other job.
func (s *Server) heldJobList(ctx context.Context, f jobFilter, d *jobList) error {
	filter := "counters.held.>"
	if f.Provider != "" {
		filter = "counters.held." + f.Provider + ".*"
	}
	var ids []string
	err := directGet(ctx, s.nc, wire.StreamCounters, directReq{MultiLast: []string{filter}, Batch: 1024}, func(m stored) bool {
		if i := strings.LastIndexByte(m.Subject, '.'); i >= 0 {
			ids = append(ids, m.Subject[i+1:])
		}
		return true
	})
	if err != nil {
		return err
	}
	states, err := s.r.jobStates(ctx, ids)
	if err != nil {
		return err
	}
	d.Scanned = len(ids)
	var held []*reelq.JobState
	for _, st := range states {
		if f.matches(st) && (f.Before == 0 || st.UpdatedAt.UnixNano() < int64(f.Before)) {
			held = append(held, st)
		}
	}
	slices.SortFunc(held, func(a, b *reelq.JobState) int {
		return cmp.Or(b.UpdatedAt.Compare(a.UpdatedAt), cmp.Compare(a.ID, b.ID))
	})
	for _, st := range held[:min(len(held), jobsPage)] {
		d.Rows = append(d.Rows, rowOf(st))
	}
	if len(held) > jobsPage {
		q := f.query()
		q.Set("before", strconv.FormatInt(held[jobsPage-1].UpdatedAt.UnixNano(), 10))
		d.Next = listURL(q.Encode())
	}
	return nil
}

// seqTime is when the message at seq (or the next one) was stored.
func seqTime(ctx context.Context, s *Server, stream string, seq uint64) (time.Time, error) {
	var t time.Time
	err := directGet(ctx, s.nc, stream, directReq{Seq: seq, Batch: 1}, func(m stored) bool {
		t = m.Time
		return false
	})
	return t, err
}

// batchJobList reads the page through the batch's index, in the order
// the workers picked the jobs up, filtering their states. It asks the
// index for as many ids as the filter's hit rate so far says a page
// needs; when they hold more matches than the page has room for, it reads
// the index again up to the last one it shows, for the next page's cursor.
func (s *Server) batchJobList(ctx context.Context, f jobFilter, d *jobList) error {
	from, want, hits := f.From, jobsPage, 0
	for len(d.Rows) < jobsPage {
		if d.Scanned >= scanBudget {
			d.Partial = true
			break
		}
		ids, next, more, err := s.r.batchIndex(ctx, f.Batch, from, want)
		if err != nil {
			return err
		}
		states, err := s.r.jobStates(ctx, ids)
		if err != nil {
			return err
		}
		var match []int
		for i, id := range ids {
			if st := states[id]; st != nil && f.matches(st) {
				match = append(match, i)
			}
		}
		if room := jobsPage - len(d.Rows); len(match) > room {
			ids, match, more = ids[:match[room-1]+1], match[:room], true
			if _, next, _, err = s.r.batchIndex(ctx, f.Batch, from, len(ids)); err != nil {
				return err
			}
		}
		for _, i := range match {
			d.Rows = append(d.Rows, rowOf(states[ids[i]]))
		}
		d.Scanned += len(ids)
		hits += len(match)
		from = next
		if !more {
			return nil
		}
		want = min(1000, max(jobsPage, (jobsPage-len(d.Rows))*d.Scanned/max(hits, 1)))
	}
	q := f.query()
	q.Set("from", cursorString(from))
	d.Next = listURL(q.Encode())
	return nil
}

// listURL is the job list's link with query q (which the list made:
// every value escaped).
func listURL(q string) template.URL {
	if q == "" {
		return "/jobs"
	}
	return template.URL("/jobs?" + q)
}

func decodeJobState(m stored) (*reelq.JobState, bool) {
	var st reelq.JobState
	if json.Unmarshal(m.Data, &st) != nil || st.ID == "" {
		return nil, false
	}
	st.Run = max(st.Run, 1)
	return &st, true
}

func rowOf(st *reelq.JobState) jobRow {
	r := jobRow{ID: st.ID, State: st}
	if st.Phase == reelq.PhaseFinished {
		if res := st.StoredResult(); res != nil {
			r.Status, r.Result = res.Status, res
		}
	}
	return r
}

// parseCursorStrict reads a batch index cursor ("seq.skip").
func parseCursorStrict(s string) (indexCursor, bool) {
	a, b, ok := strings.Cut(s, ".")
	seq, err1 := strconv.ParseUint(a, 10, 64)
	skip, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || skip < 0 {
		return indexCursor{}, false
	}
	return indexCursor{Seq: seq, Skip: skip}, true
}
