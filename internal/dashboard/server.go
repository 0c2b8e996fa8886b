// Package dashboard is reelq's web dashboard: server-rendered pages of the
// providers (queues per priority, in flight against the cap, pauses and
// probes, the rate limit's next call), the batches (progress, outcomes,
// spend against budget, throughput), the jobs (state, runs, the events
// timeline, outputs played from the archived copy) and the dead letters,
// kept live over server-sent events fed by the EVENTS, RESULTS and
// COUNTERS streams and a watch of the job state being looked at.
//
// Everything is read and done through the public client (package reelq):
// the dashboard is one more client of the queue, with a NATS identity of
// its own (see SECURITY.md). It is read-only unless given credentials
// (Auth); actions are POSTs that need a signed-in session and its CSRF
// token (or a bearer token, which browsers never send on their own).
// Assets are embedded: it works on a closed network.
package dashboard

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
)

//go:embed assets
var assets embed.FS

// Config configures a Server.
type Config struct {
	// Client is the public client the dashboard reads and acts through.
	Client *reelq.Client
	// Inspector is the operator API the dashboard reads the queue with.
	Inspector *inspect.Inspector
	// NC is the connection Client and Inspector use; the job list, the
	// charts and the workers view read the streams directly over it.
	NC     *nats.Conn
	Logger *slog.Logger
	// Auth lets people act; the zero value makes the dashboard read-only.
	Auth Auth
	// AuthRead requires signing in to see anything too (with Auth set).
	AuthRead bool
	// ListenHost is the host the server listens on: on loopback, requests
	// must name a loopback host (DNS rebinding).
	ListenHost string
	// AllowedHosts, if set, are the only Host names answered.
	AllowedHosts []string
	// Secure marks cookies Secure (the dashboard is served over TLS, or
	// behind a TLS proxy).
	Secure bool
	// S3 reaches outputs archived in S3.
	S3 *inspect.S3Options
	// NATSServer is shown in the footer; give it without credentials.
	NATSServer string
	Version    string
	// MinInterval is the shortest time between two updates of one live
	// page (default 500ms): a busy queue redraws at that pace.
	MinInterval time.Duration
}

// Server serves the dashboard. Run follows the live feeds; ServeHTTP
// answers requests.
type Server struct {
	cfg      Config
	c        *reelq.Client
	i        *inspect.Inspector
	r        *reads // the dashboard's own reads
	nc       *nats.Conn
	js       jetstream.JetStream
	log      *slog.Logger
	hub      *hub
	cache    viewCache
	series   series // the charts' minutes
	sessions *sessions
	tmpl     *template.Template
	static   http.Handler
	mux      *http.ServeMux
	lives    liveSlots // the live pages open now
}

// New builds a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil || cfg.Inspector == nil || cfg.NC == nil {
		return nil, errors.New("dashboard: a client, an inspector and their connection are needed")
	}
	js, err := jetstream.New(cfg.NC)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 500 * time.Millisecond
	}
	if cfg.AuthRead && !cfg.Auth.Enabled() {
		return nil, errors.New("dashboard: signing in to read needs credentials (a token or a basic-auth file)")
	}
	tmpl, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: templates: %w", err)
	}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		return nil, err
	}
	r := newReads(cfg.NC, js)
	s := &Server{cfg: cfg, c: cfg.Client, i: cfg.Inspector, r: r, nc: cfg.NC, js: js, log: cfg.Logger, hub: newHub(cfg.Client, cfg.Inspector, r, cfg.NC, cfg.Logger), sessions: newSessions(),
		static: http.StripPrefix("/static/", http.FileServerFS(static))}
	s.tmpl = tmpl.Funcs(template.FuncMap{"frag": s.fragHTML})
	s.routes()
	return s, nil
}

// Run follows the live feeds until ctx ends; live pages are told about
// changes only while it runs.
func (s *Server) Run(ctx context.Context) error { return s.hub.run(ctx) }

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.page(s.overviewPage))
	m.HandleFunc("GET /batches/{batch}", s.page(s.batchPage))
	m.HandleFunc("GET /jobs", s.page(s.jobsPage))
	m.HandleFunc("GET /jobs/{id}", s.page(s.jobPage))
	m.HandleFunc("GET /jobs/{id}/outputs/{n}", s.output)
	m.HandleFunc("GET /dlq", s.page(s.dlqPage))
	m.HandleFunc("GET /workers", s.page(s.workersPage))
	m.HandleFunc("GET /activity", s.page(s.activityPage))
	m.HandleFunc("GET /live", s.live)
	m.HandleFunc("GET /login", s.loginForm)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.logout)
	m.HandleFunc("POST /providers/{provider}/pause", s.action("pause", s.pause))
	m.HandleFunc("POST /providers/{provider}/resume", s.action("resume", s.resume))
	m.HandleFunc("POST /batches/{batch}/cancel", s.action("cancel_batch", s.cancelBatch))
	m.HandleFunc("POST /batches/{batch}/retry", s.action("retry_batch", s.retryBatch))
	m.HandleFunc("POST /jobs/{id}/cancel", s.action("cancel_job", s.cancelJob))
	m.HandleFunc("POST /jobs/{id}/retry", s.action("retry_job", s.retryJob))
	m.HandleFunc("POST /dlq/{seq}/redrive", s.action("redrive", s.redrive))
	m.Handle("GET /static/", s.static)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux = m
}

// ServeHTTP checks the Host (except for /healthz), sets the security headers, asks for a
// sign-in where reading needs one, and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The kubelet's probes send the pod's address as the Host; /healthz
	// tells nothing, so it answers any.
	if !s.hostAllowed(r.Host) && r.URL.Path != "/healthz" {
		http.Error(w, "this dashboard does not answer to that host name", http.StatusMisdirectedRequest)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if s.cfg.Secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if s.cfg.AuthRead && !s.viewerOf(r).signedIn() && !public(r) {
		if r.Method == http.MethodGet && r.URL.Path != "/live" {
			http.Redirect(w, r, "/login?back="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		http.Error(w, "sign in first", http.StatusUnauthorized)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// public are the paths anyone may read with AuthRead.
func public(r *http.Request) bool {
	p := r.URL.Path
	return p == "/login" || p == "/healthz" || strings.HasPrefix(p, "/static/")
}

// page is what every template gets.
type page struct {
	Title    string
	Nav      string
	ViewKind string
	ViewArg  string
	// LiveQuery is the rest of the live page's query (a page cursor).
	LiveQuery string
	AuthOn    bool
	CanAct    bool
	User      string
	CSRF      string
	Flash     string
	Back      string
	Server    string
	Version   string
	Now       time.Time
	Data      any
	// Content names the page's content template.
	Content string
}

func (s *Server) newPage(r *http.Request, v viewer) *page {
	p := &page{AuthOn: s.cfg.Auth.Enabled(), CanAct: v.signedIn(), User: v.user, Server: s.cfg.NATSServer,
		Version: s.cfg.Version, Now: time.Now(), Back: r.URL.RequestURI()}
	if v.sess != nil {
		p.CSRF = v.sess.csrf
	}
	return p
}

type pageFunc func(r *http.Request, p *page) (status int, err error)

// page renders a full page (layout and content); a page function that
// fails renders the error page.
func (s *Server) page(f pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := s.viewerOf(r)
		p := s.newPage(r, v)
		if v.sess != nil {
			p.Flash = s.sessions.takeFlash(v.sess)
		}
		status, err := f(r, p)
		var re redirectErr
		if errors.As(err, &re) {
			http.Redirect(w, r, string(re), status)
			return
		}
		if err != nil {
			if status == 0 {
				status = http.StatusInternalServerError
				s.log.Warn("dashboard: page failed", "path", r.URL.Path, "err", err)
			}
			p.Title, p.ViewKind, p.Data = http.StatusText(status), "", err.Error()
			s.render(w, status, "error", p)
			return
		}
		if status == 0 {
			status = http.StatusOK
		}
		s.render(w, status, p.Nav, p)
	}
}

func (s *Server) render(w http.ResponseWriter, status int, content string, p *page) {
	var buf bytes.Buffer
	p.Content = content
	if err := s.tmpl.ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.Error("dashboard: template", "template", content, "err", err)
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fragHTML renders fragment name (a template whose first element carries
// the attribute data-frag) with the hash of its content, so a live page
// asks only for the fragments that changed.
func (s *Server) fragHTML(name string, p *page) (template.HTML, error) {
	html, _, err := s.renderFrag(name, p)
	return template.HTML(html), err
}

func (s *Server) renderFrag(name string, p *page) (string, string, error) {
	var buf bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&buf, name, p); err != nil {
		return "", "", err
	}
	h := fnv.New64a()
	h.Write(buf.Bytes())
	sum := strconv.FormatUint(h.Sum64(), 36)
	return strings.Replace(buf.String(), " data-frag", ` data-frag="`+sum+`"`, 1), sum, nil
}

// fragments lists the live fragments of each view.
var fragments = map[string][]string{
	viewOverview: {"providers", "batches", "budgets"},
	viewBatch:    {"batch-summary", "batch-jobs"},
	viewJob:      {"job-state", "job-outputs", "job-timeline"},
	viewJobs:     {"job-list"},
	viewDLQ:      {"dlq-list"},
	viewWorkers:  {"workers-list"},
	viewActivity: {"activity-charts"},
}

func (s *Server) overviewPage(r *http.Request, p *page) (int, error) {
	d, err := s.overview(r.Context())
	if err != nil {
		return 0, err
	}
	p.Title, p.Nav, p.ViewKind, p.Data = "Providers and batches", "overview", viewOverview, d
	return 0, nil
}

func (s *Server) batchPage(r *http.Request, p *page) (int, error) {
	name := r.PathValue("batch")
	if !reelq.ValidID(name) {
		return http.StatusBadRequest, fmt.Errorf("%q is not a batch name", name)
	}
	from := parseCursor(r.URL.Query().Get("from"))
	d, err := s.batch(r.Context(), name, from)
	if errors.Is(err, reelq.ErrNotFound) {
		return http.StatusNotFound, fmt.Errorf("no batch %q is known", name)
	}
	if err != nil {
		return 0, err
	}
	p.Title, p.Nav, p.ViewKind, p.ViewArg, p.Data = "Batch "+name, "batch", viewBatch, name, d
	if f := r.URL.Query().Get("from"); f != "" {
		p.LiveQuery = "from=" + url.QueryEscape(f)
	}
	return 0, nil
}

func (s *Server) jobsPage(r *http.Request, p *page) (int, error) {
	q := strings.TrimSpace(r.URL.Query().Get("id"))
	if q != "" {
		if !reelq.ValidID(q) {
			return http.StatusBadRequest, fmt.Errorf("%q is not a job id", q)
		}
		if _, err := s.c.Get(r.Context(), q); err == nil {
			return http.StatusSeeOther, redirectErr("/jobs/" + q)
		} else if !errors.Is(err, reelq.ErrNotFound) {
			return 0, err
		}
		return http.StatusNotFound, fmt.Errorf("no job %q is known (or its state has expired)", q)
	}
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		return http.StatusBadRequest, err
	}
	d, err := s.jobList(r.Context(), f)
	if err != nil {
		return 0, err
	}
	p.Title, p.Nav, p.Data = "Jobs", "jobs", d
	if f.First() {
		// Only the first page is live: an older page stays as it was read.
		p.ViewKind, p.ViewArg = viewJobs, d.Query
	}
	return 0, nil
}

func (s *Server) jobPage(r *http.Request, p *page) (int, error) {
	id := r.PathValue("id")
	if !reelq.ValidID(id) {
		return http.StatusBadRequest, fmt.Errorf("%q is not a job id", id)
	}
	d, err := s.job(r.Context(), id)
	if errors.Is(err, reelq.ErrNotFound) {
		return http.StatusNotFound, fmt.Errorf("no job %q is known (or its state has expired)", id)
	}
	if err != nil {
		return 0, err
	}
	p.Title, p.Nav, p.ViewKind, p.ViewArg, p.Data = "Job "+id, "job", viewJob, id, d
	return 0, nil
}

func (s *Server) dlqPage(r *http.Request, p *page) (int, error) {
	var after uint64
	if a := r.URL.Query().Get("after"); a != "" {
		var err error
		if after, err = strconv.ParseUint(a, 10, 64); err != nil {
			return http.StatusBadRequest, fmt.Errorf("after=%q is not a dead-letter sequence number", a)
		}
	}
	d, err := s.dlq(r.Context(), after)
	if err != nil {
		return 0, err
	}
	p.Title, p.Nav, p.ViewKind, p.Data = "Dead letters", "dlq", viewDLQ, d
	if after > 0 {
		p.LiveQuery = "after=" + strconv.FormatUint(after, 10)
	}
	return 0, nil
}

func (s *Server) workersPage(r *http.Request, p *page) (int, error) {
	d, err := s.workers(r.Context())
	if err != nil {
		return 0, err
	}
	p.Title, p.Nav, p.ViewKind, p.Data = "Workers", "workers", viewWorkers, d
	return 0, nil
}

func (s *Server) activityPage(r *http.Request, p *page) (int, error) {
	rng := r.URL.Query().Get("range")
	if rng == "" {
		rng = chartRanges[0].Name
	}
	if !slices.ContainsFunc(chartRanges, func(c chartRange) bool { return c.Name == rng }) {
		return http.StatusBadRequest, fmt.Errorf("range %q: want 1h, 6h or 24h", rng)
	}
	d, err := s.activity(r.Context(), rng)
	if err != nil {
		return 0, err
	}
	p.Title, p.Nav, p.ViewKind, p.ViewArg, p.Data = "Activity", "activity", viewActivity, rng, d
	return 0, nil
}

// redirectErr is a page function's way to redirect.
type redirectErr string

func (e redirectErr) Error() string { return string(e) }

// load reads what view key shows, for a live page.
func (s *Server) load(ctx context.Context, key viewKey, q url.Values) (any, error) {
	switch key.kind {
	case viewOverview:
		return s.overview(ctx)
	case viewBatch:
		return s.batch(ctx, key.arg, parseCursor(q.Get("from")))
	case viewJob:
		return s.job(ctx, key.arg)
	case viewJobs:
		f, err := parseFilter(mustQuery(key.arg))
		if err != nil {
			return nil, err
		}
		return s.jobList(ctx, f)
	case viewDLQ:
		after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
		return s.dlq(ctx, after)
	case viewWorkers:
		return s.workers(ctx)
	case viewActivity:
		return s.activity(ctx, key.arg)
	}
	return nil, errNotFound
}

// constantEq compares secrets in constant time.
func constantEq(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// mustQuery parses a query string a page made itself (a view's argument);
// one that does not parse is an empty query.
func mustQuery(s string) url.Values {
	q, _ := url.ParseQuery(s)
	return q
}
