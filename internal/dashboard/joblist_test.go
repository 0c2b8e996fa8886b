package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/dashboard"
	"github.com/reelq/reelq/internal/wire"
)

var (
	rowJob   = regexp.MustCompile(`<tr data-job="([^"]+)"`)
	nextLink = regexp.MustCompile(`<a href="/jobs\?([^"]+)" (?:rel="next"|class="continue")>`)
)

// listPage reads one page of the job list: its rows' ids and the next
// page's query ("" on the last page).
func listPage(t *testing.T, b *browser, query string) ([]string, string) {
	t.Helper()
	code, body := b.get("/jobs?" + query)
	if code != http.StatusOK {
		t.Fatalf("GET /jobs?%s: %d\n%.500s", query, code, body)
	}
	var ids []string
	for _, m := range rowJob.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	next := ""
	if m := nextLink.FindStringSubmatch(body); m != nil {
		next = html.UnescapeString(m[1])
	}
	return ids, next
}

// listAll follows the list's pages from query to the end.
func listAll(t *testing.T, b *browser, query string) []string {
	t.Helper()
	var all []string
	for page := 0; ; page++ {
		ids, next := listPage(t, b, query)
		all = append(all, ids...)
		if next == "" {
			return all
		}
		if page > 100 {
			t.Fatalf("more than 100 pages for %s", query)
		}
		query = next
	}
}

// The job list filters by state, provider, batch and update time across
// every job kept, newest change first, and pages by sequence: following
// its pages lists each matching job exactly once, however many there are,
// and a job written again moves to the top. Bad filters answer 400.
func TestJobListFiltersAndPages(t *testing.T) {
	t.Parallel()
	d := startDash(t, dashOptions{auth: dashboard.Auth{Token: testToken}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := d.JS.KeyValue(ctx, wire.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	// 300 jobs in two batches over four providers: every 7th failed,
	// every 50th held, the others succeeded or still running.
	type want struct{ provider, batch, state string }
	jobs := map[string]want{}
	var order []string
	var mid time.Time
	put := func(i int, phase reelq.Phase, status string) {
		id := fmt.Sprintf("list-%03d", i)
		w := want{provider: reelq.Providers[i%4], batch: []string{"alpha", "beta"}[i%2], state: string(phase)}
		st := reelq.JobState{ID: id, Provider: w.provider, Batch: w.batch, Phase: phase, Run: 1, Attempts: 0, UpdatedAt: time.Now().UTC()}
		if phase == reelq.PhaseHeld {
			st.HeldReason = "no answer to the submission"
			mark := &nats.Msg{Subject: wire.HeldMarkerSubject(w.provider, id), Header: nats.Header{"Nats-Incr": {"+1"}}}
			if _, err := d.JS.PublishMsg(ctx, mark); err != nil { // as the worker marks it
				t.Fatal(err)
			}
		}
		if status != "" {
			res, _ := json.Marshal(reelq.Result{ID: id, Provider: w.provider, Batch: w.batch, Run: 1, Status: status, Attempts: 1, CompletedAt: st.UpdatedAt})
			st.Result, w.state = res, status
		}
		data, _ := json.Marshal(st)
		if _, err := kv.Put(ctx, id, data); err != nil {
			t.Fatal(err)
		}
		jobs[id] = w
		order = slices.DeleteFunc(order, func(s string) bool { return s == id })
		order = append(order, id)
	}
	for i := range 300 {
		if i == 150 {
			time.Sleep(20 * time.Millisecond)
			mid = time.Now()
			time.Sleep(20 * time.Millisecond)
		}
		switch {
		case i%50 == 3:
			put(i, reelq.PhaseHeld, "")
		case i%7 == 0:
			put(i, reelq.PhaseFinished, reelq.StatusFailed)
		case i%3 == 0:
			put(i, reelq.PhaseSubmitted, "")
		default:
			put(i, reelq.PhaseFinished, reelq.StatusSucceeded)
		}
	}
	for _, batch := range []string{"alpha", "beta"} {
		var idx []string
		for _, id := range order {
			if jobs[id].batch == batch {
				idx = append(idx, id)
			}
		}
		for i := 0; i < len(idx); i += 40 { // chunks as the workers write them
			data, _ := json.Marshal(idx[i:min(i+40, len(idx))])
			if _, err := d.JS.Publish(ctx, wire.BatchIndexSubject(batch), data); err != nil {
				t.Fatal(err)
			}
		}
	}
	// list-010 changes last: it leads the list.
	put(10, reelq.PhaseFinished, reelq.StatusSucceeded)

	b := d.browser(t)
	expect := func(keep func(id string, w want) bool) []string {
		var out []string
		for i := len(order) - 1; i >= 0; i-- {
			if id := order[i]; keep(id, jobs[id]) {
				out = append(out, id)
			}
		}
		return out
	}
	for _, c := range []struct {
		query string
		keep  func(id string, w want) bool
	}{
		{"", func(string, want) bool { return true }},
		{"provider=segmind", func(_ string, w want) bool { return w.provider == "segmind" }},
		{"state=held", func(_ string, w want) bool { return w.state == "held" }},
		{"state=held&provider=samsar", func(_ string, w want) bool { return w.state == "held" && w.provider == "samsar" }},
		{"state=failed&provider=camb", func(_ string, w want) bool { return w.state == "failed" && w.provider == "camb" }},
		{"state=active", func(_ string, w want) bool { return w.state == "held" || w.state == "submitted" }},
		{"since=" + url.QueryEscape(mid.UTC().Format(time.RFC3339Nano)), func(id string, _ want) bool { return id >= "list-150" || id == "list-010" }},
		{"until=" + url.QueryEscape(mid.UTC().Format(time.RFC3339Nano)), func(id string, _ want) bool { return id < "list-150" && id != "list-010" }},
	} {
		got := listAll(t, b, c.query)
		if w := expect(c.keep); !slices.Equal(got, w) {
			t.Errorf("/jobs?%s: %d jobs %v\nwant %d %v", c.query, len(got), got, len(w), w)
		}
	}
	if ids, _ := listPage(t, b, ""); len(ids) != 50 || ids[0] != "list-010" {
		t.Errorf("first page: %d rows from %v, want 50 from list-010", len(ids), ids[:min(len(ids), 1)])
	}
	// A batch is listed through its index, in the workers' order.
	got := listAll(t, b, "batch=beta&state=succeeded")
	var w []string
	for _, id := range order {
		if jobs[id].batch == "beta" && jobs[id].state == "succeeded" && !slices.Contains(w, id) {
			w = append(w, id)
		}
	}
	slices.Sort(got)
	slices.Sort(w)
	if !slices.Equal(got, w) {
		t.Errorf("batch beta, succeeded: %v\nwant %v", got, w)
	}

	for _, q := range []string{"state=bogus", "provider=runway", "batch=a.b", "since=yesterday", "before=abc", "before=0",
		"from=1.0", "since=2026-01-02T00:00Z&until=2025-01-01T00:00Z", "id=a.b"} {
		if code, body := b.get("/jobs?" + q); code != http.StatusBadRequest {
			t.Errorf("GET /jobs?%s: %d, want 400\n%.300s", q, code, body)
		}
	}
	if code, _, _ := b.do("GET", "/live?view=jobs&arg="+url.QueryEscape("before=5"), nil, nil); code != http.StatusBadRequest {
		t.Errorf("a live job list past its first page: %d, want 400", code)
	}
}
