package providers

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/media"
	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/providersim"
)

// Spec is everything reelq knows about one provider, declared in the
// provider's own folder (internal/providers/<name>/spec.go) and listed
// once, in internal/providers/all. Everything else is derived from the
// list: the public provider list and JOBS subjects, configuration by
// prefix, the worker's defaults, the simulator, `enqueue providers`, the
// schemas' enums, the docs' provider sections and the deploy files
// (go generate).
type Spec struct {
	// Kind is the HTTP-free half: name, title, cost unit, typed input,
	// its rules and JSON Schema, the options they depend on.
	Kind kind.Kind
	// Limits are the defaults of P_RATE, P_BURST, P_MAX_INFLIGHT and
	// P_REQUEST_TIMEOUT.
	Limits Limits
	// Timings are the defaults of P_POLL_INTERVAL, P_MAX_POLL_INTERVAL
	// and P_JOB_TIMEOUT.
	Timings Timings
	// Recovery is what the provider offers to recover a submission whose
	// answer was lost. Claim only what its documents prove.
	Recovery Recovery
	// HoldAbove is the default of P_HOLD_ABOVE: with Recovery None and no
	// P_AMBIGUOUS, a job whose estimate is above it is held for an
	// operator after a submission with an unknown outcome; one at or below
	// it is submitted again. Its Unit must be Kind.Unit.
	HoldAbove kind.Cost
	// CreditsOnPoll is set for a provider that accepts work it cannot pay
	// for and reports the missing credits when the task is polled (a task
	// that failed unpaid, with an error of class ErrCreditsExhausted): a
	// successful submit then proves nothing about the account, so a credit
	// pause ends only when a probe job's poll answers something else.
	CreditsOnPoll bool
	// Expect says what an output of a job with this input must be as
	// media (checked while it is archived): its types, the duration the
	// input asks for, audio where the input implies it. nil: ExpectByType
	// (the class of the type the provider declared).
	// A job's own expect replaces fields of it.
	Expect func(input json.RawMessage, out Output) media.Expect
	// LinkExpiry is how the provider's output links end.
	LinkExpiry LinkExpiry
	// BaseURL is the provider's public API root (P_BASE_URL's default).
	BaseURL string
	// Options is the adapter's own options struct (env tags, read under
	// the provider's prefix); nil means none. The input rules' options
	// are Kind.Options.
	Options reflect.Type
	// New builds the adapter from the shared configuration and the
	// environment, which holds its options under the provider's prefix
	// (nil: none set).
	New func(cfg Config, environ map[string]string) (Provider, error)
	// Callbacks is set for a provider whose API takes a callback URL at
	// submit (Request.CallbackURL); nil: it takes none, and P_CALLBACKS
	// cannot be turned on.
	Callbacks *Callbacks
	// Sim is the provider's simulated API, served by internal/providersim.
	Sim providersim.API
	// Doc is the provider's section of docs/providers.md (its doc.md),
	// from its level-2 heading on.
	Doc string
}

// ExpectFor is what out, an output of a job with this input, must be:
// s.Expect's answer, or else ExpectByType's; ok is false when the output
// is not media to check.
func (s Spec) ExpectFor(input json.RawMessage, out Output) (e media.Expect, ok bool) {
	if s.Expect != nil {
		return s.Expect(input, out), true
	}
	return ExpectByType(out)
}

// ExpectByType expects an output to be media of the class the provider
// declared for it ("video/*" for "video/mp4"), JSON where it declared
// JSON, and any complete audio, video or image where it declared no type
// or a generic one (application/octet-stream). An output declared as
// something else (text/plain, a ZIP) is not media: ok is false, nothing
// is checked.
func ExpectByType(out Output) (e media.Expect, ok bool) {
	mt, _, _ := mime.ParseMediaType(out.ContentType)
	class, _, _ := strings.Cut(mt, "/")
	switch {
	case mt == "application/json":
		return media.Expect{Types: []string{mt}}, true
	case class == "video" || class == "audio" || class == "image":
		return media.Expect{Types: []string{class + "/*"}}, true
	case mt == "" || mt == "application/octet-stream" || mt == "binary/octet-stream":
		return media.Expect{}, true
	}
	return media.Expect{}, false
}

// Name is the provider's name (Kind.Name).
func (s Spec) Name() string { return s.Kind.Name }

// Limits are a provider's default limits; configuration overrides each.
type Limits struct {
	// Rate is the requests per second all replicas together may send.
	Rate float64
	// Burst is how many calls may go back to back before Rate applies.
	Burst int
	// MaxInflight caps the provider's jobs in flight cluster-wide.
	MaxInflight int
	// RequestTimeout bounds one HTTP call.
	RequestTimeout time.Duration
}

// Timings are a provider's recommended polling cadence.
type Timings struct {
	// PollInterval is the first wait between polls.
	PollInterval time.Duration
	// MaxPollInterval caps the growing wait between polls.
	MaxPollInterval time.Duration
	// JobTimeout is how long a submitted task may run before reelq gives up.
	JobTimeout time.Duration
}

// Recovery is a provider's way to recover a submission whose answer was
// lost (a crash or a timeout during the paid call).
type Recovery string

const (
	// RecoveryIdempotencyKey: the provider honours a key sent with the
	// submission (reelq sends the job id) and answers a repeated one with
	// the original task, so the job is submitted again with the same key.
	RecoveryIdempotencyKey Recovery = "idempotency-key"
	// RecoveryLookup: reelq can find the task by a reference it sent (the
	// adapter implements Finder).
	RecoveryLookup Recovery = "lookup"
	// RecoveryNone: the provider documents neither; a lost submission
	// cannot be found, so resubmitting it may pay twice.
	RecoveryNone Recovery = "none"
)

// PayOnce is what a provider with this recovery can promise: "guaranteed"
// for a key or a lookup, else "best_effort".
func (r Recovery) PayOnce() string {
	if r == RecoveryIdempotencyKey || r == RecoveryLookup {
		return "guaranteed"
	}
	return "best_effort"
}

// LinkExpiry is how a provider's output links end.
type LinkExpiry struct {
	// After is how long a link lives, as documented; zero: not documented.
	After time.Duration
	// Status is the HTTP status an expired link answers (404, 403).
	Status int
}

// Build builds the adapter for s from cfg and the provider's options in
// environ. A base URL must be https, or http to a loopback host
// (127.0.0.0/8, ::1, localhost), unless cfg.AllowInsecure is set
// (P_ALLOW_INSECURE_HTTP=true): the API key travels with every call.
func (s Spec) Build(cfg Config, environ map[string]string) (Provider, error) {
	if err := checkBaseURL(s.Kind.Prefix(), cfg); err != nil {
		return nil, err
	}
	return s.New(cfg, environ)
}

// checkBaseURL enforces the https rule for cfg.BaseURL; prefix names the
// provider's variables (SAMSAR_) in the error.
func checkBaseURL(prefix string, cfg Config) error {
	if cfg.BaseURL == "" {
		return nil // the provider's public https endpoint
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Hostname() == "" || u.User != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%sBASE_URL %s is not an http(s) URL with a host (and no user info)", prefix, ShowURL(cfg.BaseURL))
	}
	if u.Scheme == "http" && !cfg.AllowInsecure && !IsLoopback(u.Hostname()) {
		return fmt.Errorf("%sBASE_URL %s uses plain http to %s, which is not a loopback host, and would send the API key unencrypted: "+
			"use https, or set %sALLOW_INSECURE_HTTP=true for a simulator on a trusted network", prefix, ShowURL(cfg.BaseURL), u.Hostname(), prefix)
	}
	return nil
}

// ParseOptions reads an adapter's options struct dst points to from
// environ under s's prefix (see kind.ParseOptions).
func (s Spec) ParseOptions(dst any, environ map[string]string) error {
	return kind.ParseOptions(dst, s.Kind.Prefix(), environ)
}

// Build2 returns a Spec.New for an adapter built from the shared
// configuration, its own options O and its input rules' options I, both
// read from the environment under k's prefix. Input options with a
// Check() error method (a directory of schemas to load) are checked here,
// so a worker refuses to start on a bad one.
func Build2[O, I any](k kind.Kind, build func(cfg Config, o O, in I) Provider) func(Config, map[string]string) (Provider, error) {
	return func(cfg Config, environ map[string]string) (Provider, error) {
		var o O
		var in I
		if err := kind.ParseOptions(&o, k.Prefix(), environ); err != nil {
			return nil, err
		}
		if err := kind.ParseOptions(&in, k.Prefix(), environ); err != nil {
			return nil, err
		}
		if c, ok := any(in).(interface{ Check() error }); ok {
			if err := c.Check(); err != nil {
				return nil, err
			}
		}
		return build(cfg, o, in), nil
	}
}

// Callbacks is what reelq's callback endpoint needs of a provider.
type Callbacks struct {
	// Check builds the check of the provider's signature from its
	// options in environ (under its prefix); nil: the provider does not
	// sign its callbacks (the URL's MAC is all the proof there is).
	Check func(environ map[string]string) (CallbackCheck, error)
}

// CallbackCheck verifies a provider's signed callbacks.
type CallbackCheck struct {
	// Verify checks the signature of a callback received at now; it
	// returns one of internal/webhook's errors.
	Verify func(ctx context.Context, h http.Header, body []byte, now time.Time) error
	// Secrets are the secret values in the check's options, for log
	// redaction.
	Secrets []string
}
