package config

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Forwarder is the result forwarder's configuration (cmd/forwarder,
// docs/webhooks.md): its own FORWARDER_ variables, the NATS settings and
// the log settings the worker reads too.
type Forwarder struct {
	NATS

	// Routes: space-separated URL lists. A batch's route wins over its
	// provider's, which wins over the default.
	URL          string            `env:"FORWARDER_URL" help:"receivers of every result without a batch or provider route: URLs separated by spaces"`
	ProviderURLs map[string]string `env:"FORWARDER_PROVIDER_URLS" envKeyValSeparator:"=" help:"per-provider receivers, e.g. segmind=https://a.example/hook,camb=https://b.example/hook (one URL list per provider, URLs separated by spaces)"`
	BatchURLs    map[string]string `env:"FORWARDER_BATCH_URLS" envKeyValSeparator:"=" help:"per-batch receivers, e.g. nightly=https://a.example/hook (wins over the provider's and the default)"`

	Secret     string `env:"FORWARDER_SECRET" help:"signing secret, whsec_ and base64 of 24 to 64 random bytes; several, separated by spaces, sign with each (rotation)"`
	SecretFile string `env:"FORWARDER_SECRET_FILE" help:"file holding the signing secret(s), one per line (instead of FORWARDER_SECRET)"`

	Timeout     time.Duration `env:"FORWARDER_TIMEOUT" envDefault:"15s" help:"bound on one POST, connection to response"`
	RetryBase   time.Duration `env:"FORWARDER_RETRY_BASE" envDefault:"5s" help:"first wait after a failed delivery (exponential, jittered)"`
	RetryMax    time.Duration `env:"FORWARDER_RETRY_MAX" envDefault:"1h" help:"longest wait between attempts"`
	RetryBudget time.Duration `env:"FORWARDER_RETRY_BUDGET" envDefault:"24h" help:"how long a delivery is retried after its first attempt before it is dead-lettered (HOOKS_DLQ)"`
	Concurrency int           `env:"FORWARDER_CONCURRENCY" envDefault:"16" help:"results delivered at once"`
	MaxPending  int           `env:"FORWARDER_MAX_PENDING" envDefault:"10000" help:"results taken and not yet settled, retrying ones included; when reached, nothing new is taken until some settle"`
	Durable     string        `env:"FORWARDER_DURABLE" envDefault:"forwarder" help:"the durable consumers' name on RESULTS and HOOKS_REDRIVE (declared in the NATS permissions)"`
	Deliver     string        `env:"FORWARDER_DELIVER" envDefault:"new" help:"where a new consumer starts: new (results published from now on) or all (every result RESULTS still holds)"`

	AllowPrivate bool     `env:"FORWARDER_ALLOW_PRIVATE" help:"let deliveries reach loopback, link-local and private addresses (development only)"`
	AllowHosts   []string `env:"FORWARDER_ALLOW_HOSTS" help:"hosts, IPs or CIDR ranges receivers may be on although internal, e.g. hooks.internal or 10.0.3.0/24"`

	Replicas  int           `env:"FORWARDER_STREAM_REPLICAS" envDefault:"1" help:"replicas of HOOKS_DLQ, HOOKS_REDRIVE and reelq_hooks, 1 to 5"`
	Retention time.Duration `env:"FORWARDER_RETENTION" envDefault:"720h" help:"how long dead letters and the delivery ledger are kept (at least REELQ_RESULTS_MAX_AGE)"`

	HTTPAddr        string        `env:"FORWARDER_HTTP_ADDR" help:"serve /healthz, /readyz and /metrics on this address"`
	ShutdownTimeout time.Duration `env:"FORWARDER_SHUTDOWN_TIMEOUT" envDefault:"1m" help:"how long deliveries in flight may finish after SIGTERM"`
	LogFormat       string        `env:"LOG_FORMAT" envDefault:"text" help:"text or json"`
	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`

	// Secrets are the signing secrets, from FORWARDER_SECRET or the file.
	Secrets []string `env:"-"`
	// Warnings are unknown FORWARDER_ variables, for the caller to log.
	Warnings []string `env:"-"`
}

// LoadForwarder reads the forwarder's configuration from environ
// ("K=V" form; the process environment if nil). Errors name the variable.
func LoadForwarder(environ []string) (*Forwarder, error) {
	m := toMap(environ)
	fields := fieldsOf(reflect.TypeFor[Forwarder](), "")
	var known []string
	for _, f := range fields {
		known = append(known, f.Key)
	}
	var warnings []string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if up := strings.ToUpper(name); strings.HasPrefix(up, "FORWARDER_") && !slices.Contains(known, name) {
			w := name + ": unknown variable, ignored"
			if s := suggest(up, known); s != "" {
				w += " (did you mean " + s + "?)"
			}
			warnings = append(warnings, w)
		}
	}
	fail := func(errs ...error) (*Forwarder, error) { return nil, configError(errs, warnings) }
	if errs := checkValues(fields, m); len(errs) > 0 {
		return fail(errs...)
	}
	var f Forwarder
	if err := env.ParseWithOptions(&f, env.Options{Environment: m}); err != nil {
		return fail(err)
	}
	if err := f.NATS.resolve(); err != nil {
		return fail(err)
	}
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case f.Secret != "" && f.SecretFile != "":
		add("FORWARDER_SECRET, FORWARDER_SECRET_FILE: set only one of them")
	case f.SecretFile != "":
		secrets, err := readLines(f.SecretFile)
		if err != nil {
			add("FORWARDER_SECRET_FILE: %v", err)
		}
		f.Secrets = secrets
	case f.Secret != "":
		f.Secrets = strings.Fields(f.Secret)
	default:
		add("FORWARDER_SECRET_FILE: required (or FORWARDER_SECRET): receivers verify every webhook with it")
	}
	for name, d := range map[string]time.Duration{"FORWARDER_TIMEOUT": f.Timeout, "FORWARDER_RETRY_BASE": f.RetryBase, "FORWARDER_RETRY_MAX": f.RetryMax,
		"FORWARDER_RETRY_BUDGET": f.RetryBudget, "FORWARDER_RETENTION": f.Retention, "FORWARDER_SHUTDOWN_TIMEOUT": f.ShutdownTimeout} {
		if d <= 0 {
			add("%s: must be positive, got %s", name, fmtDuration(d))
		}
	}
	if f.RetryBase > f.RetryMax {
		add("FORWARDER_RETRY_BASE: %s is longer than FORWARDER_RETRY_MAX (%s)", fmtDuration(f.RetryBase), fmtDuration(f.RetryMax))
	}
	if f.Retention < f.RetryBudget {
		add("FORWARDER_RETENTION: %s is shorter than FORWARDER_RETRY_BUDGET (%s): the ledger would forget deliveries still being retried", fmtDuration(f.Retention), fmtDuration(f.RetryBudget))
	}
	if f.Concurrency < 1 {
		add("FORWARDER_CONCURRENCY: must be at least 1, got %d", f.Concurrency)
	}
	if f.MaxPending < f.Concurrency {
		add("FORWARDER_MAX_PENDING: %d is less than FORWARDER_CONCURRENCY (%d)", f.MaxPending, f.Concurrency)
	}
	if f.Replicas < 1 || f.Replicas > 5 {
		add("FORWARDER_STREAM_REPLICAS: must be 1 to 5, got %d", f.Replicas)
	}
	switch f.Deliver {
	case "new", "all":
	default:
		add("FORWARDER_DELIVER: must be new or all, got %q", f.Deliver)
	}
	if f.Durable == "" || strings.ContainsAny(f.Durable, ".*> \t") {
		add("FORWARDER_DURABLE: %q is not a consumer name (no dots, wildcards or spaces)", f.Durable)
	}
	switch f.LogFormat {
	case "text", "json":
	default:
		add("LOG_FORMAT: must be text or json, got %q", f.LogFormat)
	}
	if _, err := ParseLevel(f.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fail(errs...)
	}
	f.Warnings = warnings
	return &f, nil
}

// readLines returns the non-empty lines of a file (secrets, one a line).
func readLines(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return out, nil
}

// DescribeForwarder lists the forwarder's variables in struct order.
func DescribeForwarder() []Var {
	var out []Var
	for _, f := range fieldsOf(reflect.TypeFor[Forwarder](), "") {
		v := Var{Name: f.Key, Default: tagDefault(f.SF), Help: f.SF.Tag.Get("help")}
		if v.Name == "NATS_URL" { // no embedded server here
			v.Default, v.Help = "nats://127.0.0.1:4222", "NATS server list, comma-separated"
		}
		out = append(out, v)
	}
	return out
}

// FormatForwarderHelp writes DescribeForwarder as an aligned table.
func FormatForwarderHelp(w io.Writer) { writeVars(w, DescribeForwarder()) }
