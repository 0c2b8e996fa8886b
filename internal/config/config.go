// Package config reads reelq's configuration from the environment with
// caarlos0/env. Variable names are the public contract in DESIGN.md;
// secrets may come from files (P_API_KEY_FILE, NATS_PASSWORD_FILE,
// NATS_TOKEN_FILE), and no secret is ever rendered by LogValue or String.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// NATS is how to reach the NATS server or cluster, with the variable names
// the nats CLI uses.
type NATS struct {
	// URL is a comma-separated server list. Empty in the worker means "run
	// an embedded server".
	URL          string        `env:"NATS_URL"`
	Creds        string        `env:"NATS_CREDS"` // path to a .creds file
	NKey         string        `env:"NATS_NKEY"`  // path to an nkey seed file
	User         string        `env:"NATS_USER"`
	Password     string        `env:"NATS_PASSWORD"`
	PasswordFile string        `env:"NATS_PASSWORD_FILE"`
	Token        string        `env:"NATS_TOKEN"`
	TokenFile    string        `env:"NATS_TOKEN_FILE"`
	CA           string        `env:"NATS_CA"`   // CA bundle path
	Cert         string        `env:"NATS_CERT"` // client certificate path (mTLS)
	Key          string        `env:"NATS_KEY"`  // client key path (mTLS)
	Timeout      time.Duration `env:"NATS_TIMEOUT" envDefault:"5s"`
	// InboxPrefix replaces _INBOX for replies, so permissions can give each
	// identity its own reply subjects.
	InboxPrefix string `env:"NATS_INBOX_PREFIX"`
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
	methods := 0
	for _, set := range []bool{n.Creds != "", n.NKey != "", n.Token != "", n.User != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		return errors.New("set only one of NATS_CREDS, NATS_NKEY, NATS_TOKEN and NATS_USER")
	}
	if n.Password != "" && n.User == "" {
		return errors.New("NATS_PASSWORD is set but NATS_USER is not")
	}
	if (n.Cert == "") != (n.Key == "") {
		return errors.New("NATS_CERT and NATS_KEY must be set together")
	}
	return nil
}

// Provider is one provider's settings, read with the provider's prefix
// (SEGMIND_, SAMSAR_, VIMMERSE_, CAMB_).
type Provider struct {
	APIKey     string `env:"API_KEY"`
	APIKeyFile string `env:"API_KEY_FILE"`
	// BaseURL overrides the provider's public endpoint (the simulator's
	// address in the demo and tests).
	BaseURL string `env:"BASE_URL"`
	// Rate is the requests per second all replicas together may send,
	// counting every call (submits and polls).
	Rate float64 `env:"RATE"`
	// Burst is how many calls may go back to back before Rate applies.
	Burst int `env:"BURST"`
	// MaxInflight caps the provider's jobs in flight cluster-wide.
	MaxInflight int `env:"MAX_INFLIGHT"`
	// Slots caps the provider's jobs in flight on this replica; zero means
	// MaxInflight (one replica may take every cluster-wide slot).
	Slots int `env:"SLOTS"`
	// PollInterval and MaxPollInterval shape the status poll schedule;
	// JobTimeout bounds a submitted task. Zero means the adapter's default.
	PollInterval    time.Duration `env:"POLL_INTERVAL"`
	MaxPollInterval time.Duration `env:"MAX_POLL_INTERVAL"`
	JobTimeout      time.Duration `env:"JOB_TIMEOUT"`
	// RequestTimeout bounds one HTTP call.
	RequestTimeout time.Duration `env:"REQUEST_TIMEOUT"`
	// Enabled forces the provider on or off; by default a provider runs
	// when it has an API key.
	Enabled *bool `env:"ENABLED"`
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

// ProviderDefaults are the built-in limits per provider: Segmind's Pro
// plan allows 50 requests/minute; the others publish no number, so reelq
// starts conservatively.
var ProviderDefaults = map[string]Provider{
	"segmind":  {Rate: 50.0 / 60, Burst: 2, MaxInflight: 5, RequestTimeout: 60 * time.Second},
	"samsar":   {Rate: 1, Burst: 2, MaxInflight: 5, RequestTimeout: 60 * time.Second},
	"vimmerse": {Rate: 1, Burst: 2, MaxInflight: 3, RequestTimeout: 60 * time.Second},
	"camb":     {Rate: 1, Burst: 2, MaxInflight: 5, RequestTimeout: 60 * time.Second},
}

func (p *Provider) resolve(prefix string, def Provider) error {
	var err error
	if p.APIKey, err = fromFile(prefix+"API_KEY", p.APIKey, p.APIKeyFile); err != nil {
		return err
	}
	if p.Rate < 0 {
		return fmt.Errorf("%sRATE must be positive, got %g", prefix, p.Rate)
	}
	if p.Rate == 0 {
		p.Rate = def.Rate
	}
	if p.Burst < 0 {
		return fmt.Errorf("%sBURST must be positive, got %d", prefix, p.Burst)
	}
	if p.Burst == 0 {
		p.Burst = def.Burst
	}
	if p.MaxInflight < 0 {
		return fmt.Errorf("%sMAX_INFLIGHT must be positive, got %d", prefix, p.MaxInflight)
	}
	if p.MaxInflight == 0 {
		p.MaxInflight = def.MaxInflight
	}
	if p.RequestTimeout <= 0 {
		p.RequestTimeout = def.RequestTimeout
	}
	if p.Slots < 0 {
		return fmt.Errorf("%sSLOTS must be positive, got %d", prefix, p.Slots)
	}
	return nil
}

// Worker is the worker's whole configuration.
type Worker struct {
	NATS
	Segmind  Provider `envPrefix:"SEGMIND_"`
	Samsar   Provider `envPrefix:"SAMSAR_"`
	Vimmerse Provider `envPrefix:"VIMMERSE_"`
	Camb     Provider `envPrefix:"CAMB_"`

	// DataDir holds the embedded server's JetStream store.
	DataDir string `env:"REELQ_DATA_DIR" envDefault:"./data"`
	// Listen is the embedded server's client address.
	Listen string `env:"REELQ_LISTEN" envDefault:"127.0.0.1:4222"`
	// SyncAlways makes the embedded server fsync before every ack.
	SyncAlways bool `env:"REELQ_SYNC_ALWAYS" envDefault:"true"`
	// HTTPAddr serves /healthz, /readyz and /metrics when set.
	HTTPAddr  string `env:"WORKER_HTTP_ADDR"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"text"`
	LogLevel  string `env:"LOG_LEVEL" envDefault:"info"`
	// WorkerID names this replica in job state and events; default host-pid.
	WorkerID string `env:"REELQ_WORKER_ID"`

	AckWait       time.Duration `env:"REELQ_ACK_WAIT" envDefault:"60s"`
	MaxAttempts   int           `env:"REELQ_MAX_ATTEMPTS" envDefault:"5"`
	MaxDeliver    int           `env:"REELQ_MAX_DELIVER" envDefault:"100"`
	RetryBase     time.Duration `env:"REELQ_RETRY_BASE" envDefault:"10s"`
	RetryMax      time.Duration `env:"REELQ_RETRY_MAX" envDefault:"10m"`
	ProbeInterval time.Duration `env:"REELQ_PROBE_INTERVAL" envDefault:"1m"`
	// MaxProbeInterval caps the probe back-off while credits stay empty.
	MaxProbeInterval time.Duration `env:"REELQ_MAX_PROBE_INTERVAL" envDefault:"10m"`
	ShutdownTimeout  time.Duration `env:"REELQ_SHUTDOWN_TIMEOUT" envDefault:"30s"`

	StreamReplicas int           `env:"REELQ_STREAM_REPLICAS" envDefault:"1"`
	DedupeWindow   time.Duration `env:"REELQ_DEDUPE_WINDOW" envDefault:"1h"`
	ResultsMaxAge  time.Duration `env:"REELQ_RESULTS_MAX_AGE" envDefault:"720h"`
	JobStateTTL    time.Duration `env:"REELQ_JOB_STATE_TTL" envDefault:"720h"`
}

// Providers returns the per-provider settings by name.
func (w *Worker) Providers() map[string]*Provider {
	return map[string]*Provider{"segmind": &w.Segmind, "samsar": &w.Samsar, "vimmerse": &w.Vimmerse, "camb": &w.Camb}
}

// LoadWorker reads the worker configuration from environ (os.Environ()
// form: "K=V"), or from the process environment if environ is nil.
func LoadWorker(environ []string) (*Worker, error) {
	var w Worker
	if err := env.ParseWithOptions(&w, env.Options{Environment: toMap(environ)}); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if err := w.NATS.resolve(); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	for name, p := range w.Providers() {
		if err := p.resolve(strings.ToUpper(name)+"_", ProviderDefaults[name]); err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
	}
	switch w.LogFormat {
	case "text", "json":
	default:
		return nil, fmt.Errorf("configuration: LOG_FORMAT must be text or json, got %q", w.LogFormat)
	}
	if _, err := ParseLevel(w.LogLevel); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if w.AckWait < 2*time.Second {
		return nil, fmt.Errorf("configuration: REELQ_ACK_WAIT must be at least 2s, got %s", w.AckWait)
	}
	if w.MaxAttempts < 1 {
		return nil, fmt.Errorf("configuration: REELQ_MAX_ATTEMPTS must be at least 1, got %d", w.MaxAttempts)
	}
	if w.DedupeWindow < time.Hour {
		return nil, fmt.Errorf("configuration: REELQ_DEDUPE_WINDOW must be at least 1h, got %s", w.DedupeWindow)
	}
	if w.WorkerID == "" {
		host, _ := os.Hostname()
		w.WorkerID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return &w, nil
}

// LoadNATS reads only the NATS settings (for enqueue).
func LoadNATS(environ []string) (*NATS, error) {
	var n NATS
	if err := env.ParseWithOptions(&n, env.Options{Environment: toMap(environ)}); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if err := n.resolve(); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	return &n, nil
}

// ParseLevel reads LOG_LEVEL: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, got %q", s)
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
		return "", fmt.Errorf("set only one of %s and %s_FILE", name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s_FILE %s is empty", name, file)
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
