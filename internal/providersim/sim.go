// Package providersim simulates the provider APIs reelq drives closely
// enough that the real adapters run against it unchanged, over real HTTP.
// This package is the simulator's core and knows no provider by name:
// each provider's routes (its API) live in the provider's folder
// (internal/providers/<name>/sim.go), written on the core's tasks, knobs,
// credits, faults, media and admin API, and are handed to New. Each
// provider has knobs for completion time, failures, 5xx and
// hanging calls, a 429 rate limit, and a credit balance that runs out; the
// admin endpoints report what the simulator saw (requests, submissions per
// prompt or title, the most requests in any window, the most tasks active
// at once) so tests can check reelq from the provider's side.
//
// Beyond the faults, knobs make creates slow (the answer is held after the
// task is charged), answer a create 2xx without the task id, refuse one
// job with the provider's per-job 403, break the balance endpoint, and
// shape the output downloads (see media.go): every output URL points at
// the simulator itself and serves a small valid MP4, WAV or PNG, of the
// duration asked for, or broken on demand (truncated, an HTML page, no
// bytes, no audio track; see broken.go).
//
// # Admin API
//
//	GET  /admin/stats[?window=1s]       per-provider counters (see Stats)
//	POST /admin/knobs?provider=P        merge JSON Knobs into P's knobs
//	POST /admin/credits?provider=P&set=N or &add=N   set or top up credits
//	POST /admin/reset                   forget tasks and counters
//	GET  /outputs/{provider}/{task}/{file}   an output file (no key needed)
package providersim

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// API is one provider's simulated API.
type API struct {
	// Base is the path under the simulator's root that is the adapter's
	// base URL ("" for the root itself, "/apis" for an API served under
	// /apis).
	Base string
	// Routes registers the API's handlers on mux (with their full paths,
	// Base included). They start with s.Enter and build on Call.
	Routes func(s *Server, mux *http.ServeMux)
	// Expired is the HTTP status the provider's output links answer once
	// they have expired (the OutputTTL knob): 404 for a CDN, 403 for a
	// signed object-store URL. Zero means 404.
	Expired int
}

// Duration is a time.Duration that reads and writes JSON as "1.5s".
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts "1.5s" or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration must be a string like \"1.5s\": %s", b)
	}
	*d = Duration(n)
	return nil
}

// Knobs shape one provider's behaviour. The zero value is a fast, reliable
// provider that accepts any non-empty key and has unlimited credits.
type Knobs struct {
	// APIKey is the key the provider expects; empty accepts any non-empty key.
	APIKey string `json:"api_key,omitempty"`
	// CompleteAfter is how long a task runs; Jitter adds up to that much more.
	CompleteAfter Duration `json:"complete_after"`
	Jitter        Duration `json:"jitter"`
	// FailRate is the fraction of tasks that end in the provider's failure status.
	FailRate float64 `json:"fail_rate"`
	// ErrorRate is the fraction of calls answered with a 5xx.
	ErrorRate float64 `json:"error_rate"`
	// PollErrorRate is the fraction of polls (status reads) answered with
	// a 503, on top of ErrorRate: a task that runs while its status
	// cannot be read.
	PollErrorRate float64 `json:"poll_error_rate,omitempty"`
	// TimeoutRate is the fraction of calls that hang for HangFor, then 504.
	TimeoutRate float64  `json:"timeout_rate"`
	HangFor     Duration `json:"hang_for"`
	// SlowRate is the fraction of calls delayed by SlowFor before being served.
	SlowRate float64  `json:"slow_rate"`
	SlowFor  Duration `json:"slow_for"`
	// RateLimit is the requests per second allowed (0 = unlimited), with
	// RateBurst; calls beyond it get the provider's 429.
	RateLimit float64 `json:"rate_limit"`
	RateBurst int     `json:"rate_burst"`
	// RetryAfter is the Retry-After (or reset header) sent with a 429.
	RetryAfter Duration `json:"retry_after"`
	// Credits is the balance; nil means unlimited. Each accepted submission
	// costs the provider's price and is refused with its credit error when
	// the balance is short.
	Credits *float64 `json:"credits,omitempty"`
	// MaxActive makes the provider answer 429 when more tasks than this are
	// active at once (a provider may document such a concurrency limit); 0 = none.
	MaxActive int `json:"max_active"`
	// Idempotency makes create calls with a repeated Idempotency-Key return
	// the first task instead of starting (and charging) a new one.
	Idempotency bool `json:"idempotency"`

	// CreateDelayMin and CreateDelayMax make creates slow: an accepted
	// create is charged and its task started when the request arrives,
	// and the answer is held for a delay drawn uniformly from [min, max]
	// (max below min means min). A client that dies meanwhile has paid
	// for a task it never heard of.
	CreateDelayMin Duration `json:"create_delay_min"`
	CreateDelayMax Duration `json:"create_delay_max"`
	// MissingTaskID answers an accepted (and charged) create 2xx without
	// the task id field, as after a rename in the provider's API.
	MissingTaskID bool `json:"missing_task_id"`
	// ForbiddenMarker makes a create whose prompt, title, text or inputs
	// contain it a job the account may not run: the provider's per-job
	// 403 (or, for a provider that checks later, a task that fails as
	// forbidden). Nothing is charged. Empty: off. See ForbiddenMarker.
	ForbiddenMarker string `json:"forbidden_marker,omitempty"`
	// UnavailableMarker answers every create whose prompt, title, text or
	// inputs contain it with a 503 (nothing charged, no task), so chosen
	// jobs keep failing with a retryable error. Empty: off.
	UnavailableMarker string `json:"unavailable_marker,omitempty"`
	// BalanceStatus makes the balance endpoint (where there is one) answer
	// this HTTP status, e.g. 503 or 404; BalanceMalformed makes it answer
	// 200 with a body that has no balance in it.
	BalanceStatus    int  `json:"balance_status,omitempty"`
	BalanceMalformed bool `json:"balance_malformed,omitempty"`

	// OutputTTL makes output links expire this long after the task
	// finished; then they answer the provider's API.Expired status (404
	// or 403). Zero: never.
	OutputTTL Duration `json:"output_ttl,omitempty"`
	// OutputRate serves output files at this many bytes per second; 0 is
	// as fast as possible.
	OutputRate int64 `json:"output_rate,omitempty"`
	// OutputCutAfter closes the connection after this many bytes of an
	// output file (short of its Content-Length); 0: never.
	OutputCutAfter int64 `json:"output_cut_after,omitempty"`
	// OutputNotFound makes every output download answer 404.
	OutputNotFound bool `json:"output_not_found,omitempty"`
	// OutputSize serves every MP4 and WAV output as a valid file of this
	// many bytes, generated while streaming; 0 or less than the small
	// file: the small file.
	OutputSize int64 `json:"output_size,omitempty"`
	// OutputDuration makes every MP4 and WAV output last this long (the
	// MP4's frames spread over it; its audio stays 1 s); 0: an output
	// lasts the duration its task asked for (Call.SetDuration), else 1 s
	// (MP4) or 0.5 s (WAV). Set it to a duration the jobs did not ask for to
	// serve outputs of the wrong duration.
	OutputDuration Duration `json:"output_duration,omitempty"`
	// OutputBroken serves every output broken in one way, with a 200:
	// "truncated", "html", "empty", "no_audio" or "wrong_duration" (see
	// BrokenTruncated and the others); "": not broken.
	OutputBroken string `json:"output_broken,omitempty"`
	// OutputURL replaces every output URL the provider returns (e.g.
	// "javascript:alert(1)"), to test how clients treat a bogus one.
	OutputURL string `json:"output_url,omitempty"`
	// FailMessageBytes pads a failed task's message (where the API uses FailMessage) to
	// this many bytes with a log of escape sequences and lines, as a
	// provider that sends its whole log; 0: the usual short message.
	FailMessageBytes int `json:"fail_message_bytes,omitempty"`
}

// ForbiddenMarker is the conventional value of Knobs.ForbiddenMarker.
const ForbiddenMarker = "[forbidden]"

// Server serves all four simulated APIs and the admin API on one handler.
type Server struct {
	mu    sync.Mutex
	rng   *rand.Rand
	now   func() time.Time
	provs map[string]*provider
	mux   *http.ServeMux
	seq   int
	cb    callbacks
}

type provider struct {
	name     string
	api      API
	knobs    Knobs
	limiter  *rate.Limiter
	tasks    map[string]*Task
	idem     map[string]string // Idempotency-Key -> task id
	arrivals []time.Time       // every request, for window counts
	requests map[string]int    // "op status" -> count
	subs     map[string]int    // submission key (prompt/title) -> accepted submissions
	active   int
	maxAct   int
	spent    float64
	// output downloads
	downloads map[string]int // output path -> complete downloads
	dlReqs    map[string]int // "200", "404", "403", "cut", "aborted" -> count
	dlBytes   int64
	dlActive  int // output bodies being served
}

func newProvider(name string, api API, k Knobs) *provider {
	p := &provider{name: name, api: api, tasks: map[string]*Task{}, idem: map[string]string{}, requests: map[string]int{}, subs: map[string]int{},
		downloads: map[string]int{}, dlReqs: map[string]int{}}
	p.setKnobs(k)
	return p
}

type Task struct {
	ID        string
	Key       string
	Created   time.Time
	DoneAt    time.Time
	Fail      bool
	reported  bool // a poll saw the terminal state
	cancelled bool
	deleted   bool
	Cost      float64
	duration  time.Duration // how long the output should last (see SetDuration), 0: the clip's own
	Data      any           // provider-specific record
	// Seq numbers the simulator's tasks from 1, all providers together.
	Seq int
}

// New returns a simulator serving apis, by provider name, with the given
// knobs per provider (missing providers get zero knobs) and a
// deterministic random source.
func New(apis map[string]API, knobs map[string]Knobs, seed uint64) *Server {
	s := &Server{
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now:   time.Now,
		provs: map[string]*provider{},
		mux:   http.NewServeMux(),
	}
	s.cb.init()
	for name, api := range apis {
		s.provs[name] = newProvider(name, api, knobs[name])
	}
	s.routes()
	return s
}

// Providers returns the names of the simulated providers, sorted.
func (s *Server) Providers() []string {
	return slices.Sorted(maps.Keys(s.provs))
}

// Base is the path under the simulator's root that is provider's base URL.
func (s *Server) Base(provider string) string {
	if p := s.provs[provider]; p != nil {
		return p.api.Base
	}
	return ""
}

// SetNow replaces the simulator's clock (tests move tasks through their
// states without waiting). Call it before serving.
func (s *Server) SetNow(now func() time.Time) { s.now = now }

// Now is the simulator's time.
func (s *Server) Now() time.Time { return s.now() }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (p *provider) setKnobs(k Knobs) {
	p.knobs = k
	p.limiter = nil
	if k.RateLimit > 0 {
		b := k.RateBurst
		if b < 1 {
			b = 1
		}
		p.limiter = rate.NewLimiter(rate.Limit(k.RateLimit), b)
	}
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /admin/stats", s.adminStats)
	s.mux.HandleFunc("POST /admin/knobs", s.adminKnobs)
	s.mux.HandleFunc("POST /admin/credits", s.adminCredits)
	s.mux.HandleFunc("POST /admin/reset", s.adminReset)
	s.mux.HandleFunc("GET /outputs/{provider}/{task}/{file}", s.serveOutput)
	for _, name := range s.Providers() {
		if r := s.provs[name].api.Routes; r != nil {
			r(s, s.mux)
		}
	}
}

// Call is one request to a simulated API after the common checks passed.
type Call struct {
	s *Server
	p *provider
}

// Gate is what every simulated endpoint runs first: it records the
// request, applies the rate limit, injected faults and the auth check, and
// returns false if it has already answered.
type Gate struct {
	Provider string
	Op       string
	// Auth returns the key the request carries and whether it carried one.
	Auth func(r *http.Request) (string, bool)
	// Deny writes the provider's auth failure for a missing (present=false)
	// or wrong key.
	Deny func(w http.ResponseWriter, present bool)
	// Limited writes the provider's 429.
	Limited func(w http.ResponseWriter, retryAfter time.Duration)
	// Fault writes the provider's 5xx.
	Fault func(w http.ResponseWriter, status int)
}

func (s *Server) Enter(g Gate, w http.ResponseWriter, r *http.Request) (*Call, bool) {
	s.mu.Lock()
	p := s.provs[g.Provider]
	now := s.now()
	p.arrivals = append(p.arrivals, now)
	k := p.knobs
	if p.limiter != nil && !p.limiter.AllowN(now, 1) {
		p.requests[g.Op+" 429"]++
		s.mu.Unlock()
		ra := time.Duration(k.RetryAfter)
		if ra <= 0 {
			ra = time.Second
		}
		g.Limited(w, ra)
		return nil, false
	}
	roll := s.rng.Float64()
	pollFails := g.Op == "poll" && k.PollErrorRate > 0 && s.rng.Float64() < k.PollErrorRate
	s.mu.Unlock()
	if pollFails {
		s.count(p, g.Op, 503)
		g.Fault(w, http.StatusServiceUnavailable)
		return nil, false
	}

	switch {
	case roll < k.ErrorRate:
		s.count(p, g.Op, 503)
		g.Fault(w, []int{500, 502, 503}[int(roll*1000)%3])
		return nil, false
	case roll < k.ErrorRate+k.TimeoutRate:
		s.count(p, g.Op, 504)
		hang := time.Duration(k.HangFor)
		if hang <= 0 {
			hang = 30 * time.Second
		}
		select {
		case <-time.After(hang):
		case <-r.Context().Done():
			return nil, false
		}
		g.Fault(w, http.StatusGatewayTimeout)
		return nil, false
	case roll < k.ErrorRate+k.TimeoutRate+k.SlowRate:
		select {
		case <-time.After(time.Duration(k.SlowFor)):
		case <-r.Context().Done():
			return nil, false
		}
	}
	key, present := g.Auth(r)
	if !present || key == "" || (k.APIKey != "" && key != k.APIKey) {
		s.count(p, g.Op, 401)
		g.Deny(w, present && key != "")
		return nil, false
	}
	return &Call{s: s, p: p}, true
}

func (s *Server) count(p *provider, op string, status int) {
	s.mu.Lock()
	p.requests[op+" "+strconv.Itoa(status)]++
	s.mu.Unlock()
}

// NewTask starts a task, charging cost against the balance. It returns
// (nil, false) if the balance is short, and the existing task if key
// repeats an Idempotency-Key the provider honours.
func (c *Call) NewTask(op, key, idemKey string, cost float64, data any) (*Task, bool) {
	s, p := c.s, c.p
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.knobs.Idempotency && idemKey != "" {
		if id, ok := p.idem[idemKey]; ok {
			p.requests[op+" 200"]++
			return p.tasks[id], true
		}
	}
	if p.knobs.Credits != nil && *p.knobs.Credits < cost {
		p.requests[op+" credits"]++
		return nil, false
	}
	if p.knobs.Credits != nil {
		v := *p.knobs.Credits - cost
		p.knobs.Credits = &v
	}
	s.seq++
	now := s.now()
	d := time.Duration(p.knobs.CompleteAfter)
	if j := time.Duration(p.knobs.Jitter); j > 0 {
		d += time.Duration(s.rng.Int64N(int64(j)))
	}
	t := &Task{
		ID:      fmt.Sprintf("%s-%06d-%04x", p.name, s.seq, s.rng.Uint32()&0xffff),
		Seq:     s.seq,
		Key:     key,
		Created: now,
		DoneAt:  now.Add(d),
		Fail:    s.rng.Float64() < p.knobs.FailRate,
		Cost:    cost,
		Data:    data,
	}
	p.tasks[t.ID] = t
	if idemKey != "" {
		p.idem[idemKey] = t.ID
	}
	p.subs[key]++
	p.spent += cost
	p.active++
	p.maxAct = max(p.maxAct, p.active)
	p.requests[op+" 200"]++
	return t, true
}

// HoldCreate holds an accepted create's answer for the CreateDelay knobs
// (the task is already charged). It returns false if the client hung up
// meanwhile; the handler then writes nothing.
func (c *Call) HoldCreate(r *http.Request) bool {
	c.s.mu.Lock()
	k := c.p.knobs
	d := time.Duration(k.CreateDelayMin)
	if span := time.Duration(k.CreateDelayMax) - d; span > 0 {
		d += time.Duration(c.s.rng.Int64N(int64(span) + 1))
	}
	c.s.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		c.s.count(c.p, "submit", 499)
		return false
	}
}

// Forbidden reports whether a create mentioning any of texts is one the
// ForbiddenMarker knob refuses, counting it as a 403 if so.
func (c *Call) Forbidden(texts ...string) bool {
	m := c.s.Knobs(c.p.name).ForbiddenMarker
	if m == "" {
		return false
	}
	for _, t := range texts {
		if strings.Contains(t, m) {
			c.s.count(c.p, "submit", 403)
			return true
		}
	}
	return false
}

// Unavailable answers a create mentioning any of texts with a 503 when the
// UnavailableMarker knob says so, and reports whether it did.
func (c *Call) Unavailable(w http.ResponseWriter, texts ...string) bool {
	m := c.s.Knobs(c.p.name).UnavailableMarker
	if m == "" {
		return false
	}
	for _, t := range texts {
		if strings.Contains(t, m) {
			c.s.count(c.p, "submit", 503)
			WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"message": "Service temporarily unavailable, try again later"})
			return true
		}
	}
	return false
}

// MissingID reports whether the create answer must leave out the task id.
func (c *Call) MissingID() bool { return c.s.Knobs(c.p.name).MissingTaskID }

// FailMessage is msg, padded per FailMessageBytes.
func (c *Call) FailMessage(msg string) string {
	n := c.s.Knobs(c.p.name).FailMessageBytes
	if n <= len(msg) {
		return msg
	}
	line := "\x1b[31mERROR\x1b[0m worker-7: CUDA out of memory at step 412\r\n"
	return msg + strings.Repeat(line, (n-len(msg))/len(line)+1)[:n-len(msg)]
}

// BalanceFault answers a balance call as the BalanceStatus and
// BalanceMalformed knobs say, with the provider's error body; it returns
// false if the balance should be answered normally.
func (c *Call) BalanceFault(w http.ResponseWriter, errBody func(status int) any) bool {
	k := c.s.Knobs(c.p.name)
	switch {
	case k.BalanceStatus != 0:
		c.s.count(c.p, "credits", k.BalanceStatus)
		WriteJSON(w, k.BalanceStatus, errBody(k.BalanceStatus))
		return true
	case k.BalanceMalformed:
		c.s.count(c.p, "credits", 200)
		WriteJSON(w, http.StatusOK, map[string]any{"balance": map[string]string{"status": "unavailable"}})
		return true
	}
	return false
}

// ActiveTasks reports how many tasks are running (not yet terminal).
func (c *Call) ActiveTasks() int {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	now := c.s.now()
	n := 0
	for _, t := range c.p.tasks {
		if !t.deleted && !t.cancelled && now.Before(t.DoneAt) {
			n++
		}
	}
	return n
}

// TaskView is a task's state at one poll.
type TaskView struct {
	Task     *Task
	Done     bool
	Fail     bool
	Progress float64
	Elapsed  time.Duration
}

// Lookup returns a snapshot of task id, marking it reported if terminal.
func (c *Call) Lookup(op, id string) (TaskView, bool) {
	s, p := c.s, c.p
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := p.tasks[id]
	if !ok || t.deleted {
		p.requests[op+" 404"]++
		return TaskView{}, false
	}
	p.requests[op+" 200"]++
	now := s.now()
	v := TaskView{Task: t, Elapsed: now.Sub(t.Created)}
	total := t.DoneAt.Sub(t.Created)
	switch {
	case t.cancelled:
		v.Done, v.Fail = true, true
	case !now.Before(t.DoneAt):
		v.Done, v.Fail, v.Progress = true, t.Fail, 100
	case total > 0:
		v.Progress = float64(int(100 * float64(now.Sub(t.Created)) / float64(total)))
	}
	if v.Done && !t.reported {
		t.reported = true
		p.active--
	}
	return v, true
}

// Cancel marks a task cancelled (or deleted), releasing its slot.
func (c *Call) Cancel(id string, del bool) (*Task, bool) {
	s, p := c.s, c.p
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := p.tasks[id]
	if !ok || t.deleted {
		return nil, false
	}
	if !t.reported {
		t.reported = true
		p.active--
	}
	t.cancelled = true
	t.deleted = del
	return t, true
}

// Stats is what /admin/stats reports for one provider.
type Stats struct {
	// Requests counts calls by "op status", e.g. "submit 200", "poll 429".
	Requests map[string]int `json:"requests"`
	// TotalRequests counts every call that reached the provider.
	TotalRequests int `json:"total_requests"`
	// Submissions counts accepted (paid) submissions per prompt or title.
	Submissions map[string]int `json:"submissions"`
	// Tasks is the number of tasks created.
	Tasks int `json:"tasks"`
	// Active is the number of tasks submitted and not yet seen finished by
	// a poll; MaxActive the most at any moment.
	Active    int `json:"active"`
	MaxActive int `json:"max_active"`
	// MaxInWindow is the most calls that arrived within any Window.
	MaxInWindow int      `json:"max_in_window"`
	Window      Duration `json:"window"`
	// Credits is the remaining balance (nil = unlimited); Spent the total charged.
	Credits *float64 `json:"credits,omitempty"`
	Spent   float64  `json:"spent"`
	// Downloads counts complete output downloads per output path
	// (/outputs/{provider}/{task}/{file}); DownloadRequests counts every
	// output request by outcome ("200", "404", "403", "cut" for one cut
	// short on purpose, "aborted" when the client went away);
	// DownloadBytes is the bytes of output served; DownloadsActive the
	// output bodies being served now.
	Downloads        map[string]int `json:"downloads"`
	DownloadRequests map[string]int `json:"download_requests"`
	DownloadBytes    int64          `json:"download_bytes"`
	DownloadsActive  int            `json:"downloads_active"`
}

// Stats returns a snapshot of every provider's counters, with window
// counts over w (default 1s).
func (s *Server) Stats(w time.Duration) map[string]Stats {
	if w <= 0 {
		w = time.Second
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Stats{}
	for name, p := range s.provs {
		st := Stats{
			Requests:      copyCounts(p.requests),
			TotalRequests: len(p.arrivals),
			Submissions:   copyCounts(p.subs),
			Tasks:         len(p.tasks),
			Active:        p.active,
			MaxActive:     p.maxAct,
			MaxInWindow:   maxInWindow(p.arrivals, w),
			Window:        Duration(w),
			Spent:         p.spent,

			Downloads:        copyCounts(p.downloads),
			DownloadRequests: copyCounts(p.dlReqs),
			DownloadBytes:    p.dlBytes,
			DownloadsActive:  p.dlActive,
		}
		if p.knobs.Credits != nil {
			v := *p.knobs.Credits
			st.Credits = &v
		}
		out[name] = st
	}
	return out
}

// SetKnobs replaces a provider's knobs.
func (s *Server) SetKnobs(provider string, k Knobs) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.provs[provider]
	if !ok {
		return fmt.Errorf("unknown provider %q", provider)
	}
	if err := checkBroken(k.OutputBroken); err != nil {
		return err
	}
	p.setKnobs(k)
	return nil
}

// Knobs returns a provider's current knobs.
func (s *Server) Knobs(provider string) Knobs {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.provs[provider].knobs
}

// SetCredits sets a provider's balance; add tops it up instead.
func (s *Server) SetCredits(provider string, v float64, add bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.provs[provider]
	if !ok {
		return fmt.Errorf("unknown provider %q", provider)
	}
	if add && p.knobs.Credits != nil {
		v += *p.knobs.Credits
	}
	p.knobs.Credits = &v
	return nil
}

// Reset forgets all tasks and counters, keeping the knobs.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, p := range s.provs {
		s.provs[name] = newProvider(name, p.api, p.knobs)
	}
}

func maxInWindow(ts []time.Time, w time.Duration) int {
	// arrivals are appended under the lock but clocks may step; sort a copy.
	a := slices.Clone(ts)
	slices.SortFunc(a, func(x, y time.Time) int { return x.Compare(y) })
	best, j := 0, 0
	for i := range a {
		for a[i].Sub(a[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

func copyCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *Server) adminStats(w http.ResponseWriter, r *http.Request) {
	win := time.Second
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, "window: "+err.Error(), http.StatusBadRequest)
			return
		}
		win = d
	}
	WriteJSON(w, http.StatusOK, s.Stats(win))
}

func (s *Server) adminKnobs(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("provider")
	s.mu.Lock()
	p, ok := s.provs[name]
	var k Knobs
	if ok {
		k = p.knobs
	}
	s.mu.Unlock()
	if !ok {
		http.Error(w, fmt.Sprintf("unknown provider %q", name), http.StatusBadRequest)
		return
	}
	if err := json.NewDecoder(r.Body).Decode(&k); err != nil {
		http.Error(w, "knobs: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.SetKnobs(name, k); err != nil {
		http.Error(w, "knobs: "+err.Error(), http.StatusBadRequest)
		return
	}
	WriteJSON(w, http.StatusOK, k)
}

func (s *Server) adminCredits(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("provider")
	v, add := q.Get("set"), false
	if v == "" {
		v, add = q.Get("add"), true
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		http.Error(w, "credits: want set=N or add=N", http.StatusBadRequest)
		return
	}
	if err := s.SetCredits(name, n, add); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	WriteJSON(w, http.StatusOK, s.Stats(0)[name])
}

func (s *Server) adminReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// TaskFor returns the id of the latest task provider created for a
// submission key (the prompt or title Stats counts submissions under), or
// "": what an operator finds on the provider's dashboard.
func (s *Server) TaskFor(provider, key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.provs[provider]
	if p == nil {
		return ""
	}
	var best *Task
	for _, t := range p.tasks {
		if t.Key == key && (best == nil || t.Created.After(best.Created)) {
			best = t
		}
	}
	if best == nil {
		return ""
	}
	return best.ID
}

// TaskInfo is one task the simulator started, for tests.
type TaskInfo struct {
	ID      string
	Key     string // the prompt, title or inputs it was created for
	Created time.Time
	DoneAt  time.Time
}

// Tasks returns the provider's tasks in creation order.
func (s *Server) Tasks(provider string) []TaskInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.provs[provider]
	if p == nil {
		return nil
	}
	out := make([]TaskInfo, 0, len(p.tasks))
	for _, t := range p.tasks {
		out = append(out, TaskInfo{ID: t.ID, Key: t.Key, Created: t.Created, DoneAt: t.DoneAt})
	}
	slices.SortFunc(out, func(a, b TaskInfo) int { return a.Created.Compare(b.Created) })
	return out
}

// TaskTimes returns when each of provider's tasks was created (a paid
// call arrived), oldest first.
func (s *Server) TaskTimes(provider string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.provs[provider]
	if p == nil {
		return nil
	}
	out := make([]time.Time, 0, len(p.tasks))
	for _, t := range p.tasks {
		out = append(out, t.Created)
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}
