// Package config reads reelq's configuration from the environment with
// caarlos0/env. Variable names are a public contract (the README's
// configuration table); secrets may come from files (P_API_KEY_FILE,
// NATS_PASSWORD_FILE, NATS_TOKEN_FILE), and no secret is ever rendered by
// LogValue or String.
//
// Everything about a variable comes from its struct tags: env (and
// envPrefix for nesting), envDefault, help (one line, required: a test
// checks it) and, for a default that is not a literal value, helpDefault.
// From them LoadWorker checks values by variable name and warns about
// unknown REELQ_ and provider-prefixed names, and Describe and FormatHelp
// list the variables for worker --help; a new field needs nothing else.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/reelq/reelq/internal/providers/all"
)

// NATS is how to reach the NATS server or cluster, with the variable names
// the nats CLI uses.
type NATS struct {
	// URL is a comma-separated server list. Empty in the worker means "run
	// an embedded server".
	URL          string        `env:"NATS_URL" help:"NATS server list, comma-separated; unset: the worker runs an embedded JetStream server" helpDefault:"(embedded server)"`
	Creds        string        `env:"NATS_CREDS" help:"path to a .creds file (user JWT and nkey seed)"`
	NKey         string        `env:"NATS_NKEY" help:"path to an nkey seed file"`
	User         string        `env:"NATS_USER" help:"user name, with NATS_PASSWORD"`
	Password     string        `env:"NATS_PASSWORD" help:"password of NATS_USER"`
	PasswordFile string        `env:"NATS_PASSWORD_FILE" help:"file holding the password (instead of NATS_PASSWORD)"`
	Token        string        `env:"NATS_TOKEN" help:"authentication token"`
	TokenFile    string        `env:"NATS_TOKEN_FILE" help:"file holding the token (instead of NATS_TOKEN)"`
	CA           string        `env:"NATS_CA" help:"CA bundle that signs the servers' TLS certificates"`
	Cert         string        `env:"NATS_CERT" help:"client certificate for mutual TLS, with NATS_KEY"`
	Key          string        `env:"NATS_KEY" help:"client private key for mutual TLS, with NATS_CERT"`
	Timeout      time.Duration `env:"NATS_TIMEOUT" envDefault:"5s" help:"connect timeout"`
	// InboxPrefix replaces _INBOX for replies, so permissions can give each
	// identity its own reply subjects.
	InboxPrefix string `env:"NATS_INBOX_PREFIX" help:"reply subject prefix, so permissions can give each identity its own replies" helpDefault:"_INBOX"`
}

// Secrets returns every secret value in the NATS settings, including a
// password embedded in NATS_URL, for log redaction.
func (n NATS) Secrets() []string {
	out := []string{n.Password, n.Token}
	for _, u := range strings.Split(n.URL, ",") {
		if pu, err := url.Parse(strings.TrimSpace(u)); err == nil && pu.User != nil {
			if p, ok := pu.User.Password(); ok {
				out = append(out, p)
			} else if name := pu.User.Username(); name != "" {
				out = append(out, name) // a token given as nats://TOKEN@host
			}
		}
	}
	return out
}

// LogValue implements slog.LogValuer without secrets.
func (n NATS) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", RedactURL(n.URL)),
		slog.String("auth", n.AuthMethod()),
		slog.Bool("tls", n.CA != "" || n.Cert != "" || strings.Contains(n.URL, "tls://")),
	)
}

// AuthMethod names the configured authentication without revealing it.
func (n NATS) AuthMethod() string {
	switch {
	case n.Creds != "":
		return "creds"
	case n.NKey != "":
		return "nkey"
	case n.Token != "":
		return "token"
	case n.User != "":
		return "user"
	}
	return "none"
}

func (n *NATS) resolve() error {
	var err error
	if n.Password, err = fromFile("NATS_PASSWORD", n.Password, n.PasswordFile); err != nil {
		return err
	}
	if n.Token, err = fromFile("NATS_TOKEN", n.Token, n.TokenFile); err != nil {
		return err
	}
	var methods []string
	for _, m := range []struct {
		name string
		set  bool
	}{{"NATS_CREDS", n.Creds != ""}, {"NATS_NKEY", n.NKey != ""}, {"NATS_TOKEN", n.Token != ""}, {"NATS_USER", n.User != ""}} {
		if m.set {
			methods = append(methods, m.name)
		}
	}
	if len(methods) > 1 {
		return fmt.Errorf("%s: set only one of NATS_CREDS, NATS_NKEY, NATS_TOKEN and NATS_USER", strings.Join(methods, ", "))
	}
	if n.Password != "" && n.User == "" {
		return errors.New("NATS_PASSWORD: set, but NATS_USER is not")
	}
	if n.Cert != "" && n.Key == "" {
		return errors.New("NATS_CERT: set, but NATS_KEY is not; mutual TLS needs both")
	}
	if n.Key != "" && n.Cert == "" {
		return errors.New("NATS_KEY: set, but NATS_CERT is not; mutual TLS needs both")
	}
	return nil
}

// Provider is one provider's settings, read with the provider's prefix
// (its Spec's Kind.Prefix: SAMSAR_ for samsar), for each provider of
// internal/providers/all.
type Provider struct {
	APIKey     string `env:"API_KEY" help:"the provider's API key; a provider runs when it has one"`
	APIKeyFile string `env:"API_KEY_FILE" help:"file holding the API key (instead of P_API_KEY)"`
	// BaseURL overrides the provider's public endpoint (the simulator's
	// address in the demo and tests).
	BaseURL string `env:"BASE_URL" help:"the provider's API endpoint, e.g. the simulator's address" helpDefault:"(public API)"`
	// Rate is the requests per second all replicas together may send,
	// counting every call (submits and polls).
	Rate float64 `env:"RATE" help:"requests per second from all replicas together, every call (submits and polls) counted"`
	// Burst is how many calls may go back to back before Rate applies.
	Burst int `env:"BURST" help:"calls allowed back to back before P_RATE applies"`
	// MaxInflight caps the provider's jobs in flight cluster-wide.
	MaxInflight int `env:"MAX_INFLIGHT" help:"jobs in flight cluster-wide, all priorities together (slot leases in the reelq_slots bucket)"`
	// Slots caps the provider's jobs in flight on this replica; zero means
	// MaxInflight (one replica may take every cluster-wide slot).
	Slots int `env:"SLOTS" help:"jobs in flight on this replica (below P_MAX_INFLIGHT spreads the work over replicas)" helpDefault:"P_MAX_INFLIGHT"`
	// PollInterval and MaxPollInterval shape the status poll schedule;
	// JobTimeout bounds a submitted task. Zero means the adapter's default.
	PollInterval    time.Duration `env:"POLL_INTERVAL" help:"first wait between status polls; it grows x1.5 per poll" helpDefault:"(per provider)"`
	MaxPollInterval time.Duration `env:"MAX_POLL_INTERVAL" help:"longest wait between status polls" helpDefault:"(per provider)"`
	JobTimeout      time.Duration `env:"JOB_TIMEOUT" help:"give up on a submitted task after this" helpDefault:"(per provider)"`
	// RequestTimeout bounds one HTTP call.
	RequestTimeout time.Duration `env:"REQUEST_TIMEOUT" help:"bound on one HTTP call; REELQ_SHUTDOWN_TIMEOUT must cover it plus 10s"`
	// Enabled forces the provider on or off; by default a provider runs
	// when it has an API key.
	Enabled *bool `env:"ENABLED" help:"force the provider on (true) or off (false)" helpDefault:"(on with an API key)"`
	// Ambiguous is the policy for a paid submission whose outcome is
	// unknown (no answer) when the provider cannot be asked; empty means
	// the provider's default (see HoldAbove).
	Ambiguous string `env:"AMBIGUOUS" help:"a submission got no answer and the provider cannot be asked: resubmit (may pay twice) or hold (wait for 'enqueue resolve'); unset: resubmit with an idempotency key, else hold a job estimated above P_HOLD_ABOVE" helpDefault:"(per provider)"`
	// HoldAbove is, without Ambiguous, the estimate above which a job of a
	// provider that cannot recover a lost submission is held rather than
	// submitted again, e.g. "5usd" or "600credits".
	HoldAbove string `env:"HOLD_ABOVE" helpDefault:"(per provider)" help:"without P_AMBIGUOUS, a job whose estimate is above this (e.g. 5usd, 600credits) is held after a submission with an unknown outcome, one at or below it submitted again (providers with an idempotency key: always again)"`
	// AmbiguousPauseAfter pauses the provider after this many unanswered
	// submissions within AmbiguousWindow, cluster-wide.
	AmbiguousPauseAfter int           `env:"AMBIGUOUS_PAUSE_AFTER" help:"pause the provider for an operator after this many unanswered submissions within P_AMBIGUOUS_WINDOW (-1: never)" helpDefault:"3"`
	AmbiguousWindow     time.Duration `env:"AMBIGUOUS_WINDOW" help:"the window of P_AMBIGUOUS_PAUSE_AFTER" helpDefault:"10m"`
	// OutputPolicy is what a run whose output fails its media check ends
	// as: fail (the default), retry (a new paid submission, within the
	// job's budgets, at most OutputRetries times) or accept.
	OutputPolicy string `env:"OUTPUT_POLICY" help:"an output failed its media check: fail (status failed, code invalid_output, archived bytes kept), retry (pay for a new submission, within the job's budgets, at most P_OUTPUT_RETRIES times) or accept (record validation_error and succeed)" helpDefault:"fail"`
	// OutputRetries bounds the retries of OutputPolicy retry, per run.
	OutputRetries int `env:"OUTPUT_RETRIES" help:"with P_OUTPUT_POLICY=retry, new paid submissions per run at most" helpDefault:"1"`
	// AllowInsecureHTTP allows an http:// base URL on a non-loopback host.
	AllowInsecureHTTP bool `env:"ALLOW_INSECURE_HTTP" help:"allow an http:// P_BASE_URL that is not on loopback (a simulator on another host); keys then cross the network in clear"`
	// Budget caps the provider's estimated spend per BudgetPeriod,
	// cluster-wide, e.g. "500usd" or "20000credits".
	Budget       string        `env:"BUDGET" help:"spending cap per P_BUDGET_PERIOD, cluster-wide, e.g. 500usd or 20000credits (an operator's 'enqueue budget set --provider' overrides it)"`
	BudgetPeriod time.Duration `env:"BUDGET_PERIOD" help:"the period of P_BUDGET (fixed windows from the Unix epoch, UTC)" helpDefault:"24h"`
	// Callbacks registers each job's callback URL with the provider at
	// submit; a callback wakes the job's poll.
	Callbacks bool `env:"CALLBACKS" helpDefault:"false" help:"register a callback URL with each job (fal, replicate, samsar, vimmerse); a callback makes the job poll at once, so P_POLL_INTERVAL may be minutes (needs REELQ_CALLBACK_URL and REELQ_CALLBACK_SECRET)"`
	// Calls bounds this replica's concurrent calls to the provider.
	Calls int `env:"CALLS" help:"provider calls this replica makes at once (polls of many waiting jobs share them)" helpDefault:"min(max(P_SLOTS,16),256)"`
}

// LogValue implements slog.LogValuer without the key.
func (p Provider) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("api_key_set", p.APIKey != ""),
		slog.String("base_url", RedactURL(p.BaseURL)),
		slog.Float64("rate", p.Rate),
		slog.Int("burst", p.Burst),
		slog.Int("max_inflight", p.MaxInflight),
	)
}

// Active reports whether the worker should run this provider.
func (p Provider) Active() bool {
	if p.Enabled != nil {
		return *p.Enabled
	}
	return p.APIKey != ""
}

// ProviderDefaults returns each provider's built-in settings, from its
// Spec's Limits (internal/providers/all).
func ProviderDefaults() map[string]Provider {
	out := make(map[string]Provider, len(all.Specs))
	for _, s := range all.Specs {
		l := s.Limits
		out[s.Name()] = Provider{Rate: l.Rate, Burst: l.Burst, MaxInflight: l.MaxInflight, RequestTimeout: l.RequestTimeout,
			PollInterval: s.Timings.PollInterval, MaxPollInterval: s.Timings.MaxPollInterval, JobTimeout: s.Timings.JobTimeout,
			HoldAbove: strconv.FormatFloat(s.HoldAbove.Amount, 'f', -1, 64) + s.HoldAbove.Unit}
	}
	return out
}

func (p *Provider) resolve(prefix string, def Provider) error {
	var err error
	if p.APIKey, err = fromFile(prefix+"API_KEY", p.APIKey, p.APIKeyFile); err != nil {
		return err
	}
	if p.Rate < 0 || math.IsNaN(p.Rate) || math.IsInf(p.Rate, 0) {
		return fmt.Errorf("%sRATE: must be a positive number, got %g", prefix, p.Rate)
	}
	if p.Rate == 0 {
		p.Rate = def.Rate
	}
	if p.Burst < 0 {
		return fmt.Errorf("%sBURST: must not be negative, got %d", prefix, p.Burst)
	}
	if p.Burst == 0 {
		p.Burst = def.Burst
	}
	if p.MaxInflight < 0 {
		return fmt.Errorf("%sMAX_INFLIGHT: must not be negative, got %d", prefix, p.MaxInflight)
	}
	if p.MaxInflight == 0 {
		p.MaxInflight = def.MaxInflight
	}
	if p.RequestTimeout <= 0 {
		p.RequestTimeout = def.RequestTimeout
	}
	if p.Slots < 0 {
		return fmt.Errorf("%sSLOTS: must not be negative, got %d", prefix, p.Slots)
	}
	switch p.Ambiguous {
	case "", "resubmit", "hold":
	default:
		return fmt.Errorf("%sAMBIGUOUS: must be resubmit or hold, got %q", prefix, p.Ambiguous)
	}
	if p.HoldAbove == "" {
		p.HoldAbove = def.HoldAbove
	}
	switch p.OutputPolicy {
	case "":
		p.OutputPolicy = "fail"
	case "fail", "retry", "accept":
	default:
		return fmt.Errorf("%sOUTPUT_POLICY: must be fail, retry or accept, got %q", prefix, p.OutputPolicy)
	}
	switch {
	case p.OutputRetries < 0:
		return fmt.Errorf("%sOUTPUT_RETRIES: must not be negative, got %d", prefix, p.OutputRetries)
	case p.OutputRetries == 0:
		p.OutputRetries = 1
	}
	if p.Calls < 0 {
		return fmt.Errorf("%sCALLS: must not be negative, got %d", prefix, p.Calls)
	}
	return nil
}

// Worker is the worker's whole configuration.
type Worker struct {
	NATS
	// providers holds each provider's settings by name, read under its
	// prefix (see Providers).
	providers map[string]*Provider

	// DataDir holds the embedded server's JetStream store.
	DataDir string `env:"REELQ_DATA_DIR" envDefault:"./data" help:"the embedded server's JetStream store"`
	// Listen is the embedded server's client address.
	Listen string `env:"REELQ_LISTEN" envDefault:"127.0.0.1:4222" help:"the embedded server's client address"`
	// SyncAlways makes the embedded server fsync before every ack.
	SyncAlways bool `env:"REELQ_SYNC_ALWAYS" envDefault:"true" help:"the embedded server fsyncs before acknowledging a write"`
	// HTTPAddr serves /healthz, /readyz and /metrics when set.
	HTTPAddr  string `env:"WORKER_HTTP_ADDR" help:"serve /healthz, /readyz and /metrics on this address"`
	Profiling bool   `env:"WORKER_PPROF" help:"also serve Go profiles under /debug/pprof/ on WORKER_HTTP_ADDR (keep that address private)"`

	// Callback settings: the inbound endpoint for provider callbacks
	// (docs/webhooks.md, "Inbound callbacks"), for the providers with
	// P_CALLBACKS=true.
	CallbackAddr       string  `env:"REELQ_CALLBACK_ADDR" help:"serve provider callbacks (POST /hooks/..., nothing else) on this address; unset: no endpoint on this replica"`
	CallbackURL        string  `env:"REELQ_CALLBACK_URL" help:"the endpoint's public base URL the providers call (https://...), under which each job's URL is minted; required with any P_CALLBACKS=true"`
	CallbackSecret     string  `env:"REELQ_CALLBACK_SECRET" help:"the key of the jobs' callback URLs (at least 32 bytes, the same on every replica); required with any P_CALLBACKS=true"`
	CallbackSecretFile string  `env:"REELQ_CALLBACK_SECRET_FILE" help:"file holding REELQ_CALLBACK_SECRET"`
	CallbackMaxBody    int64   `env:"REELQ_CALLBACK_MAX_BODY" envDefault:"1048576" help:"largest callback body accepted (bytes)"`
	CallbackRate       float64 `env:"REELQ_CALLBACK_RATE" envDefault:"50" help:"callbacks per second accepted from one source address"`
	CallbackBurst      int     `env:"REELQ_CALLBACK_BURST" envDefault:"100" help:"callbacks from one source accepted back to back before REELQ_CALLBACK_RATE applies"`
	LogFormat          string  `env:"LOG_FORMAT" envDefault:"text" help:"text (tint, for terminals) or json"`
	LogLevel           string  `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	// WorkerID names this replica in job state and events; default host-pid.
	WorkerID string `env:"REELQ_WORKER_ID" help:"this replica's name in job state and events" helpDefault:"host-pid"`

	AckWait       time.Duration `env:"REELQ_ACK_WAIT" envDefault:"60s" help:"redelivery timeout (at least 2s); running jobs heartbeat every quarter of it"`
	MaxAttempts   int           `env:"REELQ_MAX_ATTEMPTS" envDefault:"5" help:"attempts after retryable errors before a job fails"`
	MaxDeliver    int           `env:"REELQ_MAX_DELIVER" envDefault:"100" help:"deliveries of one message before it is dead-lettered (crash-loop guard; at least REELQ_MAX_ATTEMPTS)"`
	RetryBase     time.Duration `env:"REELQ_RETRY_BASE" envDefault:"10s" help:"first retry back-off (exponential, jittered)"`
	RetryMax      time.Duration `env:"REELQ_RETRY_MAX" envDefault:"10m" help:"longest retry back-off"`
	ProbeInterval time.Duration `env:"REELQ_PROBE_INTERVAL" envDefault:"1m" help:"first wait before probing a provider paused for credits"`
	// MaxProbeInterval caps the probe back-off while credits stay empty.
	MaxProbeInterval time.Duration `env:"REELQ_MAX_PROBE_INTERVAL" envDefault:"10m" help:"longest wait between probes; the wait doubles while probes fail"`
	// ShutdownTimeout is how long running jobs may finish after SIGTERM. It
	// must cover the longest RequestTimeout of an enabled provider plus
	// RecordingMargin, so that a paid call in flight at SIGTERM finishes and
	// its outcome is recorded.
	ShutdownTimeout time.Duration `env:"REELQ_SHUTDOWN_TIMEOUT" envDefault:"70s" help:"how long running jobs may finish after SIGTERM; at least the longest enabled P_REQUEST_TIMEOUT plus 10s"`

	// FoldInterval is how often the replica holding the fold's lease counts
	// new results into the done and spend tallies.
	FoldInterval time.Duration `env:"REELQ_FOLD_INTERVAL" envDefault:"1s" help:"how often results are counted into the done and spend counts (stats lag the results by about this much)"`

	// Lookahead is how many jobs per priority a replica pulls ahead of
	// need to order them by priority and fairness key.
	Lookahead int `env:"REELQ_LOOKAHEAD" envDefault:"10000" help:"jobs per provider and priority a replica pulls ahead to order them by priority and fairness key"`
	// Window is each consumer's MaxAckPending.
	Window           int   `env:"REELQ_WINDOW" envDefault:"100000" help:"messages delivered and not yet acknowledged per consumer (running, pulled ahead, retrying); not the concurrency cap"`
	MaxJobBytes      int   `env:"REELQ_MAX_JOB_BYTES" envDefault:"65536" help:"largest job message the JOBS stream accepts (refused at publish time)"`
	MaxInputBytes    int   `env:"REELQ_MAX_INPUT_BYTES" envDefault:"32768" help:"largest job input"`
	MaxMetadataBytes int   `env:"REELQ_MAX_METADATA_BYTES" envDefault:"16384" help:"largest job metadata"`
	JobsMaxBytes     int64 `env:"REELQ_JOBS_MAX_BYTES" envDefault:"1073741824" help:"storage of the JOBS stream; past it new jobs are refused at publish time (-1: no limit)"`

	// Archive settings: where succeeded jobs' outputs are copied before
	// their result is published.
	Archive             string        `env:"REELQ_ARCHIVE" envDefault:"jetstream" help:"where outputs are archived before the result is published: jetstream (object store reelq_outputs), s3, or off"`
	ArchiveBucket       string        `env:"REELQ_ARCHIVE_BUCKET" help:"the archive's bucket (object store or S3 bucket)" helpDefault:"reelq_outputs"`
	ArchiveS3Endpoint   string        `env:"REELQ_ARCHIVE_S3_ENDPOINT" help:"S3 endpoint, host[:port] or an http(s) URL; empty: AWS"`
	ArchiveS3Region     string        `env:"REELQ_ARCHIVE_S3_REGION" help:"S3 region"`
	ArchiveS3PathStyle  bool          `env:"REELQ_ARCHIVE_S3_PATH_STYLE" help:"address the bucket in the path (MinIO, Ceph and most self-hosted services)"`
	ArchiveS3DisableTLS bool          `env:"REELQ_ARCHIVE_S3_DISABLE_TLS" help:"plain HTTP to an S3 endpoint given without a scheme"`
	ArchiveMaxBytes     int64         `env:"REELQ_ARCHIVE_MAX_BYTES" envDefault:"4294967296" help:"largest output archived; a larger one is published with archive_error"`
	ArchiveTimeout      time.Duration `env:"REELQ_ARCHIVE_TIMEOUT" envDefault:"30m" help:"bound on one output's download"`
	ArchiveMinRate      int64         `env:"REELQ_ARCHIVE_MIN_RATE" envDefault:"16384" help:"slowest download accepted, bytes per second over each 30s of waiting for the source; a slower one is cut off and published with archive_error (0: no minimum)"`
	ArchiveRetryBudget  time.Duration `env:"REELQ_ARCHIVE_RETRY_BUDGET" envDefault:"10m" help:"how long transient download and upload errors are retried"`
	ArchiveConcurrency  int           `env:"REELQ_ARCHIVE_CONCURRENCY" envDefault:"4" help:"downloads at once, cluster-wide"`
	ArchiveBandwidth    int64         `env:"REELQ_ARCHIVE_BANDWIDTH" help:"bytes per second of all replicas' downloads together (0: no limit)"`
	ArchiveRetention    time.Duration `env:"REELQ_ARCHIVE_RETENTION" help:"how long archived outputs are kept (the object store's TTL; for S3, set a lifecycle rule)" helpDefault:"REELQ_JOB_STATE_TTL"`
	Validate            bool          `env:"REELQ_VALIDATE" envDefault:"true" help:"check each output as media while it is archived (with REELQ_ARCHIVE=off: downloaded under the same limits and discarded); see P_OUTPUT_POLICY"`
	ArchiveAllowPrivate bool          `env:"REELQ_ARCHIVE_ALLOW_PRIVATE" help:"let downloads reach loopback, link-local and private addresses (development only)"`
	ArchiveAllowHosts   []string      `env:"REELQ_ARCHIVE_ALLOW_HOSTS" help:"hosts, IPs or CIDR ranges downloads may reach although internal, e.g. 127.0.0.1 for a local simulator"`

	Setup          string        `env:"REELQ_SETUP" envDefault:"auto" help:"stream and bucket setup: auto (create or update them at start), only (do that and exit: run it once with admin credentials), skip (expect them; the worker then needs no right to create or change streams)"`
	StreamReplicas int           `env:"REELQ_STREAM_REPLICAS" envDefault:"1" help:"replicas of every stream and bucket, 1 to 5 (3 on a cluster)"`
	DedupeWindow   time.Duration `env:"REELQ_DEDUPE_WINDOW" envDefault:"1h" help:"duplicate window of the JOBS and RESULTS streams (at least 1h)"`
	ResultsMaxAge  time.Duration `env:"REELQ_RESULTS_MAX_AGE" envDefault:"720h" help:"how long result events are kept (at most REELQ_JOB_STATE_TTL)"`
	JobStateTTL    time.Duration `env:"REELQ_JOB_STATE_TTL" envDefault:"720h" help:"how long job state is kept, and job ids remembered"`

	// Warnings are problems LoadWorker found that do not stop the worker,
	// such as unknown (probably misspelt) variables; the caller logs them.
	Warnings []string `env:"-"`
}

// Providers returns the per-provider settings by name, one for each
// provider of internal/providers/all.
func (w *Worker) Providers() map[string]*Provider { return w.providers }

// RecordingMargin is the time a provider call's outcome needs to be
// recorded in the job state after the call returns. The worker's shutdown
// timeout must cover the longest request timeout plus this margin.
const RecordingMargin = 10 * time.Second

// LoadWorker reads the worker configuration from environ (os.Environ()
// form: "K=V"), or from the process environment if environ is nil.
//
// A bad value is reported with its variable's name
// (`REELQ_ACK_WAIT: invalid duration "abc"`); settings that contradict
// each other are errors naming the variables and values. Variables that
// start with REELQ_ or a provider prefix but are not known (see
// UnknownVars) do not stop the worker: they are returned in
// Worker.Warnings, for the caller to log.
func LoadWorker(environ []string) (*Worker, error) {
	m := toMap(environ)
	warnings := UnknownVars(m)
	fail := func(errs ...error) (*Worker, error) { return nil, configError(errs, warnings) }

	errs := checkValues(workerFields(), m)
	for _, p := range ProviderPrefixes() {
		errs = append(errs, checkValues(fieldsOf(reflect.TypeFor[Provider](), p), m)...)
	}
	for _, o := range optionTypes() {
		errs = append(errs, checkValues(fieldsOf(o.Type, o.Prefix), m)...)
	}
	if len(errs) > 0 {
		return fail(errs...)
	}
	var w Worker
	if err := env.ParseWithOptions(&w, env.Options{Environment: m}); err != nil {
		return fail(err)
	}
	w.providers = make(map[string]*Provider, len(all.Specs))
	for _, s := range all.Specs {
		var p Provider
		if err := env.ParseWithOptions(&p, env.Options{Prefix: s.Kind.Prefix(), Environment: m}); err != nil {
			return fail(err)
		}
		w.providers[s.Name()] = &p
	}
	if errs := negativeDurations(&w); len(errs) > 0 {
		return fail(errs...) // before defaults replace non-positive values
	}
	if err := w.NATS.resolve(); err != nil {
		return fail(err)
	}
	sec, err := fromFile("REELQ_CALLBACK_SECRET", w.CallbackSecret, w.CallbackSecretFile)
	if err != nil {
		return fail(err)
	}
	w.CallbackSecret = sec
	defaults := ProviderDefaults()
	for _, s := range all.Specs {
		if err := w.providers[s.Name()].resolve(s.Kind.Prefix(), defaults[s.Name()]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fail(errs...)
	}
	if errs := w.check(m); len(errs) > 0 {
		return fail(errs...)
	}
	if w.WorkerID == "" {
		host, _ := os.Hostname()
		w.WorkerID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	w.Warnings = warnings
	return &w, nil
}

// check cross-checks the parsed settings; m is the environment, to tell
// set values from defaults in messages.
func (w *Worker) check(m map[string]string) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch w.LogFormat {
	case "text", "json":
	default:
		add("LOG_FORMAT: must be text or json, got %q", w.LogFormat)
	}
	if _, err := ParseLevel(w.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if w.AckWait < 2*time.Second {
		add("REELQ_ACK_WAIT: must be at least 2s, got %s", fmtDuration(w.AckWait))
	}
	if w.MaxAttempts < 1 {
		add("REELQ_MAX_ATTEMPTS: must be at least 1, got %d", w.MaxAttempts)
	}
	if w.MaxDeliver > 0 && w.MaxDeliver < w.MaxAttempts {
		add("REELQ_MAX_DELIVER: %d is less than REELQ_MAX_ATTEMPTS (%d): every attempt is a delivery, so jobs would be dead-lettered before their last attempt",
			w.MaxDeliver, w.MaxAttempts)
	}
	if w.RetryBase > w.RetryMax {
		add("REELQ_RETRY_BASE: %s is longer than REELQ_RETRY_MAX (%s)", fmtDuration(w.RetryBase), fmtDuration(w.RetryMax))
	}
	if w.ProbeInterval > w.MaxProbeInterval {
		add("REELQ_PROBE_INTERVAL: %s is longer than REELQ_MAX_PROBE_INTERVAL (%s)", fmtDuration(w.ProbeInterval), fmtDuration(w.MaxProbeInterval))
	}
	switch w.Setup {
	case "auto", "only", "skip":
	default:
		add("REELQ_SETUP: must be auto, only or skip, got %q", w.Setup)
	}
	if w.StreamReplicas < 1 || w.StreamReplicas > 5 {
		add("REELQ_STREAM_REPLICAS: must be 1 to 5 (JetStream's limit), got %d", w.StreamReplicas)
	}
	if w.DedupeWindow < time.Hour {
		add("REELQ_DEDUPE_WINDOW: must be at least 1h, got %s", fmtDuration(w.DedupeWindow))
	}
	if w.DedupeWindow > w.ResultsMaxAge {
		add("REELQ_DEDUPE_WINDOW: %s is longer than REELQ_RESULTS_MAX_AGE (%s); JetStream refuses a duplicate window longer than the stream's max age",
			fmtDuration(w.DedupeWindow), fmtDuration(w.ResultsMaxAge))
	}
	if w.ResultsMaxAge > w.JobStateTTL {
		add("REELQ_RESULTS_MAX_AGE: %s is longer than REELQ_JOB_STATE_TTL (%s); a result kept longer than its job's state lets a re-enqueued job id collide with the old result",
			fmtDuration(w.ResultsMaxAge), fmtDuration(w.JobStateTTL))
	}
	switch strings.ToLower(w.Archive) {
	case "jetstream", "off":
	case "s3":
		if w.ArchiveBucket == "" {
			add("REELQ_ARCHIVE_BUCKET: required with REELQ_ARCHIVE=s3")
		}
	default:
		add("REELQ_ARCHIVE: must be jetstream, s3 or off, got %q", w.Archive)
	}
	if w.ArchiveConcurrency < 1 {
		add("REELQ_ARCHIVE_CONCURRENCY: must be at least 1, got %d", w.ArchiveConcurrency)
	}
	if w.ArchiveBandwidth < 0 {
		add("REELQ_ARCHIVE_BANDWIDTH: must not be negative, got %d", w.ArchiveBandwidth)
	}
	if w.ArchiveMinRate < 0 {
		add("REELQ_ARCHIVE_MIN_RATE: must not be negative, got %d", w.ArchiveMinRate)
	}
	if w.ArchiveRetention > w.JobStateTTL {
		add("REELQ_ARCHIVE_RETENTION: %s is longer than REELQ_JOB_STATE_TTL (%s); an archived output would outlive the result that points at it",
			fmtDuration(w.ArchiveRetention), fmtDuration(w.JobStateTTL))
	}
	errs = append(errs, w.checkCallbacks()...)
	if w.Lookahead < 1 {
		add("REELQ_LOOKAHEAD: must be at least 1, got %d", w.Lookahead)
	}
	if w.MaxInputBytes+w.MaxMetadataBytes > w.MaxJobBytes {
		add("REELQ_MAX_JOB_BYTES: %d does not hold REELQ_MAX_INPUT_BYTES (%d) plus REELQ_MAX_METADATA_BYTES (%d)", w.MaxJobBytes, w.MaxInputBytes, w.MaxMetadataBytes)
	}
	for _, s := range all.Specs {
		p, prefix := w.providers[s.Name()], s.Kind.Prefix()
		if p.PollInterval > 0 && p.MaxPollInterval > 0 && p.PollInterval > p.MaxPollInterval {
			add("%sPOLL_INTERVAL: %s is longer than %sMAX_POLL_INTERVAL (%s)", prefix, fmtDuration(p.PollInterval), prefix, fmtDuration(p.MaxPollInterval))
		}
	}
	if name, longest := w.longestRequestTimeout(); name != "" && w.ShutdownTimeout < longest+RecordingMargin {
		spec, _ := all.Lookup(name)
		key := spec.Kind.Prefix() + "REQUEST_TIMEOUT"
		how := "set"
		if m[key] == "" {
			how = "default"
		}
		add("REELQ_SHUTDOWN_TIMEOUT: %s does not cover %s (%s, %s) plus %s to record the outcome; set it to at least %s, so that a provider call in flight at SIGTERM finishes and is recorded",
			fmtDuration(w.ShutdownTimeout), key, fmtDuration(longest), how, fmtDuration(RecordingMargin), fmtDuration(longest+RecordingMargin))
	}
	return errs
}

// longestRequestTimeout returns the enabled provider with the longest
// request timeout (the first in all.Specs on a tie), or "" if none is
// enabled.
func (w *Worker) longestRequestTimeout() (string, time.Duration) {
	var name string
	var longest time.Duration
	for _, s := range all.Specs {
		if p := w.providers[s.Name()]; p.Active() && (name == "" || p.RequestTimeout > longest) {
			name, longest = s.Name(), p.RequestTimeout
		}
	}
	return name, longest
}

// negativeDurations reports every duration variable set below zero.
func negativeDurations(w *Worker) []error {
	errs := negatives(reflect.ValueOf(w).Elem(), workerFields())
	for _, s := range all.Specs {
		errs = append(errs, negatives(reflect.ValueOf(w.providers[s.Name()]).Elem(), fieldsOf(reflect.TypeFor[Provider](), s.Kind.Prefix()))...)
	}
	return errs
}

// negatives reports every duration field of fs in rv below zero.
func negatives(rv reflect.Value, fs []field) []error {
	var errs []error
	for _, f := range fs {
		if f.SF.Type != durationType || f.Index == nil {
			continue
		}
		if v, err := rv.FieldByIndexErr(f.Index); err == nil && v.Int() < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %s", f.Key, fmtDuration(time.Duration(v.Int()))))
		}
	}
	return errs
}

// LoadNATS reads only the NATS settings (for enqueue). Bad values are
// reported with their variable's name, as in LoadWorker.
func LoadNATS(environ []string) (*NATS, error) {
	m := toMap(environ)
	if errs := checkValues(fieldsOf(reflect.TypeFor[NATS](), ""), m); len(errs) > 0 {
		return nil, configError(errs, nil)
	}
	var n NATS
	if err := env.ParseWithOptions(&n, env.Options{Environment: m}); err != nil {
		return nil, configError([]error{err}, nil)
	}
	if err := n.resolve(); err != nil {
		return nil, configError([]error{err}, nil)
	}
	if n.Timeout < 0 {
		return nil, configError([]error{fmt.Errorf("NATS_TIMEOUT: must not be negative, got %s", fmtDuration(n.Timeout))}, nil)
	}
	return &n, nil
}

// configError joins errs under "configuration:", one per line, and adds
// the unknown-variable warnings as notes: a misspelt name is a likely
// cause of a wrong setting.
func configError(errs []error, warnings []string) error {
	for _, w := range warnings {
		errs = append(errs, fmt.Errorf("note: %s", w))
	}
	return fmt.Errorf("configuration: %w", errors.Join(errs...))
}

// workerFields returns every variable of the Worker struct, with the
// provider prefixes applied.
func workerFields() []field { return fieldsOf(reflect.TypeFor[Worker](), "") }

// fmtDuration renders d without zero units: 1m, 720h, 1m10s, 1.5s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseLevel reads LOG_LEVEL: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL: must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// RedactURL hides a password in a user:pass@host URL list.
func RedactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "[REDACTED]" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

func fromFile(name, value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", fmt.Errorf("%s, %s_FILE: set only one of them", name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s_FILE: %s is empty", name, file)
	}
	return v, nil
}

func toMap(environ []string) map[string]string {
	if environ == nil {
		environ = os.Environ()
	}
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// Environ turns environ into a map, for provider-specific options.
func Environ(environ []string) map[string]string { return toMap(environ) }

// ProviderSettings reads only the per-provider settings from environ
// (os.Environ() form; nil: the process environment), with each provider's
// defaults applied, by name: what `enqueue providers` shows. Bad values
// are reported with their variable's name, as in LoadWorker.
func ProviderSettings(environ []string) (map[string]*Provider, error) {
	m := toMap(environ)
	var errs []error
	for _, p := range ProviderPrefixes() {
		errs = append(errs, checkValues(fieldsOf(reflect.TypeFor[Provider](), p), m)...)
	}
	if len(errs) > 0 {
		return nil, configError(errs, nil)
	}
	defaults := ProviderDefaults()
	out := make(map[string]*Provider, len(all.Specs))
	for _, s := range all.Specs {
		var p Provider
		if err := env.ParseWithOptions(&p, env.Options{Prefix: s.Kind.Prefix(), Environment: m}); err != nil {
			return nil, configError([]error{err}, nil)
		}
		if err := p.resolve(s.Kind.Prefix(), defaults[s.Name()]); err != nil {
			errs = append(errs, err)
		}
		out[s.Name()] = &p
	}
	if len(errs) > 0 {
		return nil, configError(errs, nil)
	}
	return out, nil
}

// CallbacksOn lists the providers with P_CALLBACKS=true that run.
func (w *Worker) CallbacksOn() []string {
	var out []string
	for _, s := range all.Specs {
		if p := w.providers[s.Name()]; p.Active() && p.Callbacks {
			out = append(out, s.Name())
		}
	}
	return out
}

// checkCallbacks checks the callback settings against each other.
func (w *Worker) checkCallbacks() []error {
	var errs []error
	for _, s := range all.Specs {
		if p := w.providers[s.Name()]; p.Callbacks && s.Callbacks == nil {
			errs = append(errs, fmt.Errorf("%sCALLBACKS: %s takes no callback URL; poll it", s.Kind.Prefix(), s.Name()))
		}
	}
	if on := w.CallbacksOn(); len(on) > 0 {
		if w.CallbackURL == "" {
			errs = append(errs, fmt.Errorf("REELQ_CALLBACK_URL: required with callbacks on (%s)", strings.Join(on, ", ")))
		}
		if w.CallbackSecret == "" {
			errs = append(errs, fmt.Errorf("REELQ_CALLBACK_SECRET: required with callbacks on (%s)", strings.Join(on, ", ")))
		}
	}
	if w.CallbackSecret != "" && len(w.CallbackSecret) < 32 {
		errs = append(errs, fmt.Errorf("REELQ_CALLBACK_SECRET: %d bytes; at least 32", len(w.CallbackSecret)))
	}
	if w.CallbackMaxBody < 1 {
		errs = append(errs, fmt.Errorf("REELQ_CALLBACK_MAX_BODY: must be at least 1, got %d", w.CallbackMaxBody))
	}
	if w.CallbackRate <= 0 || math.IsNaN(w.CallbackRate) || math.IsInf(w.CallbackRate, 0) {
		errs = append(errs, fmt.Errorf("REELQ_CALLBACK_RATE: must be a positive number, got %g", w.CallbackRate))
	}
	if w.CallbackBurst < 1 {
		errs = append(errs, fmt.Errorf("REELQ_CALLBACK_BURST: must be at least 1, got %d", w.CallbackBurst))
	}
	return errs
}
