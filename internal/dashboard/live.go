package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/reelq/reelq"
)

// maxLive bounds the live pages open at once (each holds a connection and
// a goroutine), and maxLivePerClient those of one client (one remote
// address): the reviewer's 256 connections from one address took every
// live page from everyone else.
const (
	maxLive          = 256
	maxLivePerClient = 32
)

// live streams a page's fragments as server-sent events: once at once for
// those that changed since the page was drawn (the page sends the hashes
// it has), then whenever the hub says the view may have changed, at most
// every MinInterval, only those whose content changed. Each event is
// "frag" with {"id": ..., "html": ...}; the page replaces the element.
func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	key := viewKey{kind: q.Get("view"), arg: q.Get("arg")}
	names, ok := fragments[key.kind]
	if !ok || (key.kind == viewBatch || key.kind == viewJob) && !reelq.ValidID(key.arg) {
		http.Error(w, "unknown view", http.StatusBadRequest)
		return
	}
	if key.kind == viewActivity && !slices.ContainsFunc(chartRanges, func(c chartRange) bool { return c.Name == key.arg }) {
		http.Error(w, "unknown range", http.StatusBadRequest)
		return
	}
	if key.kind == viewJobs {
		if f, err := parseFilter(mustQuery(key.arg)); err != nil || !f.First() {
			http.Error(w, "not a job list's first page", http.StatusBadRequest)
			return
		}
	}
	if key.kind == viewJob {
		// A live page follows a job that exists: no watch for any id.
		if _, err := s.c.Get(r.Context(), key.arg); errors.Is(err, reelq.ErrNotFound) {
			http.Error(w, "unknown job", http.StatusNotFound)
			return
		} else if err != nil {
			s.liveFailed(key, err)
			http.Error(w, "the job cannot be read now", http.StatusServiceUnavailable)
			return
		}
	}
	release, ok := s.lives.take(r)
	if !ok {
		http.Error(w, "too many live pages open", http.StatusServiceUnavailable)
		return
	}
	defer release()
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported here", http.StatusInternalServerError)
		return
	}
	have := map[string]string{}
	for _, kv := range strings.Split(q.Get("have"), ",") {
		if id, h, ok := strings.Cut(kv, ":"); ok {
			have[id] = h
		}
	}
	sub, unsubscribe := s.hub.subscribe(key)
	defer func() {
		if unsubscribe() {
			s.cache.drop(key)
		}
	}()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, "retry: 2000\n\n")
	flusher.Flush()

	v := s.viewerOf(r)
	ctx := r.Context()
	send := func() error {
		gen := s.hub.gen(key)
		data, err := s.cache.get(key, gen, func() (any, error) { return s.load(ctx, key, q) })
		if err != nil {
			return err
		}
		p := s.newPage(r, v)
		p.ViewKind, p.ViewArg, p.Data, p.Back = key.kind, key.arg, data, pagePath(key, q)
		for _, name := range names {
			html, sum, err := s.renderFrag(name, p)
			if err != nil {
				return err
			}
			if have[name] == sum {
				continue
			}
			have[name] = sum
			b, _ := json.Marshal(map[string]string{"id": name, "html": html})
			if _, err := fmt.Fprintf(w, "event: frag\ndata: %s\n\n", b); err != nil {
				return err
			}
		}
		flusher.Flush()
		return nil
	}
	if err := send(); err != nil {
		s.liveFailed(key, err)
		return
	}
	last := time.Now()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
			flusher.Flush()
			continue
		case <-sub.ch:
		}
		if wait := s.cfg.MinInterval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait) // pace the redraws of a busy queue
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		if err := send(); err != nil {
			if ctx.Err() == nil {
				s.liveFailed(key, err)
			}
			return
		}
	}
}

// liveSlots counts the live pages open, in all and per client.
type liveSlots struct {
	mu     sync.Mutex
	total  int
	client map[string]int
}

// take reserves a live page for r's client, or reports false when it (or
// the dashboard) has as many open as allowed.
func (l *liveSlots) take(r *http.Request) (func(), bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= maxLive || l.client[host] >= maxLivePerClient {
		return nil, false
	}
	if l.client == nil {
		l.client = map[string]int{}
	}
	l.total++
	l.client[host]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.total--
		if l.client[host]--; l.client[host] == 0 {
			delete(l.client, host)
		}
	}, true
}

// pagePath is the page a live view belongs to (where an action's form
// returns).
func pagePath(key viewKey, q url.Values) string {
	switch key.kind {
	case viewBatch:
		if f := q.Get("from"); f != "" {
			return "/batches/" + key.arg + "?from=" + url.QueryEscape(f)
		}
		return "/batches/" + key.arg
	case viewJob:
		return "/jobs/" + key.arg
	case viewJobs:
		if key.arg != "" {
			return "/jobs?" + key.arg
		}
		return "/jobs"
	case viewWorkers:
		return "/workers"
	case viewActivity:
		return "/activity?range=" + url.QueryEscape(key.arg)
	case viewDLQ:
		if a := q.Get("after"); a != "" {
			return "/dlq?after=" + url.QueryEscape(a)
		}
		return "/dlq"
	}
	return "/"
}

func (s *Server) liveFailed(key viewKey, err error) {
	s.log.Warn("dashboard: live page update failed", "view", key.kind, "arg", key.arg, "err", err)
}

// liveURL is the live stream of page p, for the template.
func liveURL(p *page) string {
	v := url.Values{"view": {p.ViewKind}}
	if p.ViewArg != "" {
		v.Set("arg", p.ViewArg)
	}
	u := "/live?" + v.Encode()
	if p.LiveQuery != "" {
		u += "&" + p.LiveQuery
	}
	return u
}
