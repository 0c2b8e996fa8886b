package config

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/reelq/reelq/internal/providers/all"
)

// base is the smallest environment LoadWorker accepts with a provider on.
var base = []string{"SAMSAR_API_KEY=sk-samsar-test-key"}

func with(extra ...string) []string { return append(slices.Clone(base), extra...) }

func TestLoadWorkerDefaults(t *testing.T) {
	w, err := LoadWorker(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Warnings) != 0 {
		t.Errorf("warnings: %q", w.Warnings)
	}
	if w.AckWait != 60*time.Second || w.MaxAttempts != 5 || w.ShutdownTimeout != 70*time.Second || w.JobStateTTL != 720*time.Hour || !w.SyncAlways {
		t.Errorf("defaults: %+v", w)
	}
	ps := w.Providers()
	if ps["samsar"].APIKey != "sk-samsar-test-key" || !ps["samsar"].Active() || ps["segmind"].Active() {
		t.Errorf("providers: %+v %+v", ps["samsar"], ps["segmind"])
	}
	for _, s := range all.Specs {
		p := ps[s.Name()]
		if p.RequestTimeout != s.Limits.RequestTimeout || p.Rate != s.Limits.Rate || p.MaxInflight != s.Limits.MaxInflight || p.Burst != s.Limits.Burst {
			t.Errorf("%s: the Spec's limits not applied: %+v", s.Name(), p)
		}
	}
	if w.WorkerID == "" {
		t.Error("no worker id")
	}
	if p := ps["samsar"]; p.OutputPolicy != "fail" || p.OutputRetries != 1 || !w.Validate {
		t.Errorf("output checks: policy %q, retries %d, REELQ_VALIDATE %v; want fail, 1, true", p.OutputPolicy, p.OutputRetries, w.Validate)
	}
	if _, err := LoadWorker(nil); err != nil && strings.Contains(err.Error(), "parse error") {
		t.Errorf("process environment: %v", err)
	}
}

// Every variable that starts with REELQ_ or a provider prefix and is not
// known is reported, with the nearest known name when it is a likely typo.
func TestUnknownVars(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		want []string
	}{
		{"typo in a provider variable", []string{"SAMSAR_MAX_INFLIGT=3"},
			[]string{"SAMSAR_MAX_INFLIGT: unknown variable, ignored (did you mean SAMSAR_MAX_INFLIGHT?)"}},
		{"typo in a worker variable", []string{"REELQ_SHUTDOWN_TIMOUT=90s"},
			[]string{"REELQ_SHUTDOWN_TIMOUT: unknown variable, ignored (did you mean REELQ_SHUTDOWN_TIMEOUT?)"}},
		{"transposition", []string{"REELQ_ACK_WATI=10s"},
			[]string{"REELQ_ACK_WATI: unknown variable, ignored (did you mean REELQ_ACK_WAIT?)"}},
		{"letter case", []string{"reelq_ack_wait=10s"},
			[]string{"reelq_ack_wait: unknown variable, ignored (did you mean REELQ_ACK_WAIT? names are case-sensitive)"}},
		{"adapter option typo", []string{"SAMSAR_VIDEO_MODEL=x"},
			[]string{"SAMSAR_VIDEO_MODEL: unknown variable, ignored (did you mean SAMSAR_VIDEO_MODELS?)"}},
		{"another provider's option", []string{"SAMSAR_WORKFLOW_ID=x"},
			[]string{"SAMSAR_WORKFLOW_ID: unknown variable, ignored (did you mean SEGMIND_WORKFLOW_ID?)"}},
		{"nothing close", []string{"REELQ_COMPLETELY_DIFFERENT=1"},
			[]string{"REELQ_COMPLETELY_DIFFERENT: unknown variable, ignored"}},
		{"several, sorted", []string{"VIMMERSE_RAT=1", "CAMB_BURTS=2"}, []string{
			"CAMB_BURTS: unknown variable, ignored (did you mean CAMB_BURST?)",
			"VIMMERSE_RAT: unknown variable, ignored (did you mean VIMMERSE_RATE?)"}},
		{"known worker, provider and adapter variables", []string{"REELQ_ACK_WAIT=10s", "SEGMIND_API_KEY_FILE=", "CAMB_SLOTS=1",
			"SAMSAR_VIDEO_MODELS=a,b", "VIMMERSE_TEMPLATE_CREDITS=a:1", "SEGMIND_PRICE_PER_RUN=0.5", "CAMB_CREDITS_PER_TASK=1"}, nil},
		{"allow-listed script variables", []string{"REELQ_BENCH_SYNC=always", "REELQ_BENCH_E2E_JOBS=1", "REELQ_TEST_X=1",
			"REELQ_FAULTTEST_RACE=1", "REELQ_FAULT_SEED=3", "REELQ_STATIC_CHECK=1", "REELQ_NATS_WORKER_PASSWORD=x"}, nil},
		{"other prefixes are not checked", []string{"PATH=/bin", "NATS_CONTEXT=x", "PROVIDERSIM_ADDR=:1", "LOG_COLOR=1", "WORKER_X=1"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := LoadWorker(with(c.env...))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(w.Warnings, c.want) {
				t.Errorf("warnings\n got %q\nwant %q", w.Warnings, c.want)
			}
		})
	}
}

func TestUnknownVarsNeverShowValues(t *testing.T) {
	w, err := LoadWorker(with("SAMSAR_API_KY=sk-very-secret-value"))
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Warnings) != 1 || strings.Contains(w.Warnings[0], "sk-very-secret-value") || !strings.Contains(w.Warnings[0], "SAMSAR_API_KEY?") {
		t.Errorf("warnings %q", w.Warnings)
	}
}

// A misspelt name is a likely cause of a configuration error, so the
// error mentions it.
func TestErrorNotesUnknownVars(t *testing.T) {
	_, err := LoadWorker(with("REELQ_SHUTDOWN_TIMOUT=90s", "SAMSAR_REQUEST_TIMEOUT=2m"))
	if err == nil || !strings.Contains(err.Error(), "REELQ_SHUTDOWN_TIMEOUT: ") ||
		!strings.Contains(err.Error(), "note: REELQ_SHUTDOWN_TIMOUT: unknown variable, ignored (did you mean REELQ_SHUTDOWN_TIMEOUT?)") {
		t.Errorf("got %v", err)
	}
}

// The reflection walk finds exactly the names caarlos0/env reads.
func TestKnownVarsMatchCaarlosEnv(t *testing.T) {
	params, err := env.GetFieldParams(&Worker{})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range params {
		want = append(want, p.Key)
	}
	var got []string
	for _, f := range workerFields() {
		got = append(got, f.Key)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("walk\n got %q\nwant %q", got, want)
	}
	for _, s := range all.Specs {
		for _, v := range []any{&Provider{}, reflect.New(s.Kind.Options).Interface()} {
			params, err := env.GetFieldParamsWithOptions(v, env.Options{Prefix: s.Kind.Prefix()})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range params {
				want = append(want, p.Key)
			}
		}
	}
	known := KnownVars()
	for _, n := range want {
		if !isKnown(n, known) {
			t.Errorf("%s not known", n)
		}
	}
}

// Every provider of the list has its settings and options known to the
// configuration, under its prefix.
func TestProvidersMatchTheList(t *testing.T) {
	w, err := LoadWorker(base)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(w.Providers())), slices.Sorted(slices.Values(all.Names())); !slices.Equal(got, want) {
		t.Errorf("Worker.Providers = %q, want %q", got, want)
	}
	var prefixes []string
	for _, s := range all.Specs {
		prefixes = append(prefixes, strings.ToUpper(s.Name())+"_")
		if _, ok := ProviderDefaults()[s.Name()]; !ok {
			t.Errorf("no ProviderDefaults for %s", s.Name())
		}
	}
	if got := ProviderPrefixes(); !slices.Equal(got, prefixes) {
		t.Errorf("ProviderPrefixes = %q, want %q", got, prefixes)
	}
}

// Fields added later are found by the walk, with nesting as caarlos0/env
// applies it.
func TestFieldsOfNesting(t *testing.T) {
	type inner struct {
		A int           `env:"A"`
		B time.Duration `env:"B"`
	}
	type item struct {
		X string `env:"X"`
	}
	type outer struct {
		Plain   string `env:"PLAIN"`
		Skipped string `env:"-"`
		NoTag   string // not read
		Nested  inner  `envPrefix:"NESTED_"`
		Deeper  struct {
			In inner `envPrefix:"IN_"`
		} `envPrefix:"D_"`
		Items   []item   `envPrefix:"ITEMS"`
		List    []string `env:"LIST"`
		private string   `env:"PRIVATE"`
	}
	_ = outer{}.private
	var got []string
	for _, f := range fieldsOf(reflect.TypeFor[outer](), "P_") {
		got = append(got, f.Key)
	}
	want := []string{"P_PLAIN", "P_NESTED_A", "P_NESTED_B", "P_D_IN_A", "P_D_IN_B", "P_ITEMS_<N>_X", "P_LIST"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if !matchKey("P_ITEMS_<N>_X", "P_ITEMS_12_X") || matchKey("P_ITEMS_<N>_X", "P_ITEMS__X") || matchKey("P_ITEMS_<N>_X", "P_ITEMS_1_XY") {
		t.Error("matchKey")
	}
}

// A bad value names its variable, whatever its type, and every bad value
// is reported at once.
func TestBadValues(t *testing.T) {
	cases := []struct {
		env  []string
		want []string
	}{
		{[]string{"REELQ_ACK_WAIT=abc"}, []string{`REELQ_ACK_WAIT: invalid duration "abc"`}},
		{[]string{"REELQ_ACK_WAIT=10"}, []string{`REELQ_ACK_WAIT: invalid duration "10"`}},
		{[]string{"SAMSAR_POLL_INTERVAL=soon"}, []string{`SAMSAR_POLL_INTERVAL: invalid duration "soon"`}},
		{[]string{"REELQ_MAX_ATTEMPTS=five"}, []string{`REELQ_MAX_ATTEMPTS: invalid integer "five"`}},
		{[]string{"REELQ_MAX_ATTEMPTS=1.5"}, []string{`REELQ_MAX_ATTEMPTS: invalid integer "1.5"`}},
		{[]string{"CAMB_BURST=99999999999"}, []string{`CAMB_BURST: integer "99999999999" out of range`}},
		{[]string{"SEGMIND_RATE=fast"}, []string{`SEGMIND_RATE: invalid number "fast"`}},
		{[]string{"REELQ_SYNC_ALWAYS=yes"}, []string{`REELQ_SYNC_ALWAYS: invalid boolean "yes" (want true or false)`}},
		{[]string{"VIMMERSE_ENABLED=maybe"}, []string{`VIMMERSE_ENABLED: invalid boolean "maybe"`}},
		{[]string{"NATS_TIMEOUT=5"}, []string{`NATS_TIMEOUT: invalid duration "5"`}},
		// adapter options are checked too
		{[]string{"SEGMIND_PRICE_PER_RUN=cheap"}, []string{`SEGMIND_PRICE_PER_RUN: invalid value "cheap": not a decimal amount`}},
		{[]string{"SEGMIND_PRICE_PER_RUN=1e3"}, []string{`SEGMIND_PRICE_PER_RUN: invalid value "1e3": not a decimal amount`}},
		{[]string{"CAMB_CREDITS_PER_TASK=0.0000001"}, []string{`CAMB_CREDITS_PER_TASK: invalid value "0.0000001": more than 6 decimal places`}},
		{[]string{"VIMMERSE_TEMPLATE_CREDITS=vim_arctic:lots"}, []string{`VIMMERSE_TEMPLATE_CREDITS: invalid value "lots": not a decimal amount for key "vim_arctic"`}},
		{[]string{"VIMMERSE_TEMPLATE_CREDITS=vim_arctic:120,vim_ces_show"}, []string{`VIMMERSE_TEMPLATE_CREDITS: invalid entry "vim_ces_show": want key:value`}},
		{[]string{"REELQ_ACK_WAIT=abc", "REELQ_RETRY_MAX=x", "CAMB_RATE=y"}, []string{
			`REELQ_ACK_WAIT: invalid duration "abc"`, `REELQ_RETRY_MAX: invalid duration "x"`, `CAMB_RATE: invalid number "y"`}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.env, " "), func(t *testing.T) {
			_, err := LoadWorker(with(c.env...))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "configuration: ") || strings.Contains(msg, "parse error on field") {
				t.Errorf("got %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("got %q, want it to contain %q", msg, w)
				}
			}
		})
	}
	// Empty means unset: the default applies.
	if w, err := LoadWorker(with("REELQ_ACK_WAIT=", "SAMSAR_RATE=")); err != nil || w.AckWait != time.Minute {
		t.Errorf("empty values: %v %v", w, err)
	}
}

// Lists and maps of any element type are checked element by element, with
// their separators.
func TestCheckValueLists(t *testing.T) {
	type s struct {
		Durations []time.Duration          `env:"D"`
		Ints      []int                    `env:"I" envSeparator:";"`
		Floats    []float64                `env:"F"`
		Bools     []bool                   `env:"B"`
		Map       map[string]int           `env:"M" envKeyValSeparator:"="`
		Strings   []string                 `env:"S"`
		Uint      uint8                    `env:"U"`
		DurMap    map[string]time.Duration `env:"DM"`
	}
	fs := map[string]reflect.StructField{}
	for _, f := range fieldsOf(reflect.TypeFor[s](), "") {
		fs[f.Key] = f.SF
	}
	cases := []struct{ key, value, want string }{
		{"D", "1s,2m", ""},
		{"D", "1s,abc", `invalid duration "abc" in list "1s,abc"`},
		{"I", "1;2;3", ""},
		{"I", "1,2", `invalid integer "1,2" in list "1,2"`},
		{"F", "0.5,x", `invalid number "x" in list "0.5,x"`},
		{"B", "true,no", `invalid boolean "no" (want true or false) in list "true,no"`},
		{"M", "a=1,b=2", ""},
		{"M", "a=1,b:2", `invalid entry "b:2": want key=value[,key=value...]`},
		{"M", "a=x", `invalid integer "x" for key "a"`},
		{"S", "anything, at all", ""},
		{"U", "-1", `invalid non-negative integer "-1"`},
		{"U", "256", `non-negative integer "256" out of range`},
		{"DM", "a:1s,b:z", `invalid duration "z" for key "b"`},
	}
	for _, c := range cases {
		err := checkValue(fs[c.key], c.value)
		if got := errString(err); got != c.want {
			t.Errorf("%s=%s: got %q, want %q", c.key, c.value, got, c.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Settings that contradict a guarantee are errors naming the variables
// and the values.
func TestCrossChecks(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		want string // "" means accepted
	}{
		{"results kept longer than job state", []string{"REELQ_RESULTS_MAX_AGE=800h"},
			"REELQ_RESULTS_MAX_AGE: 800h is longer than REELQ_JOB_STATE_TTL (720h); a result kept longer than its job's state lets a re-enqueued job id collide with the old result"},
		{"job state shortened below results", []string{"REELQ_JOB_STATE_TTL=48h"},
			"REELQ_RESULTS_MAX_AGE: 720h is longer than REELQ_JOB_STATE_TTL (48h)"},
		{"results and job state equal", []string{"REELQ_JOB_STATE_TTL=48h", "REELQ_RESULTS_MAX_AGE=48h"}, ""},
		{"dedupe window below 1h", []string{"REELQ_DEDUPE_WINDOW=30m"}, "REELQ_DEDUPE_WINDOW: must be at least 1h, got 30m"},
		{"dedupe window longer than results", []string{"REELQ_DEDUPE_WINDOW=72h", "REELQ_RESULTS_MAX_AGE=48h"},
			"REELQ_DEDUPE_WINDOW: 72h is longer than REELQ_RESULTS_MAX_AGE (48h)"},
		{"shutdown shorter than the default request timeout", []string{"REELQ_SHUTDOWN_TIMEOUT=30s"},
			"REELQ_SHUTDOWN_TIMEOUT: 30s does not cover SAMSAR_REQUEST_TIMEOUT (1m, default) plus 10s to record the outcome; set it to at least 1m10s"},
		{"shutdown shorter than a set request timeout", []string{"SAMSAR_REQUEST_TIMEOUT=3s", "REELQ_SHUTDOWN_TIMEOUT=5s"},
			"REELQ_SHUTDOWN_TIMEOUT: 5s does not cover SAMSAR_REQUEST_TIMEOUT (3s, set) plus 10s to record the outcome; set it to at least 13s"},
		{"shutdown covers the request timeout exactly", []string{"SAMSAR_REQUEST_TIMEOUT=3s", "REELQ_SHUTDOWN_TIMEOUT=13s"}, ""},
		{"longest enabled provider counts", []string{"SAMSAR_REQUEST_TIMEOUT=3s", "CAMB_API_KEY=k-camb-1", "CAMB_REQUEST_TIMEOUT=20s", "REELQ_SHUTDOWN_TIMEOUT=15s"},
			"REELQ_SHUTDOWN_TIMEOUT: 15s does not cover CAMB_REQUEST_TIMEOUT (20s, set) plus 10s to record the outcome; set it to at least 30s"},
		{"disabled providers do not count", []string{"SAMSAR_REQUEST_TIMEOUT=3s", "REELQ_SHUTDOWN_TIMEOUT=13s",
			"CAMB_API_KEY=k-camb-1", "CAMB_ENABLED=false", "CAMB_REQUEST_TIMEOUT=5m", "VIMMERSE_REQUEST_TIMEOUT=5m"}, ""},
		{"force-enabled provider without a key counts", []string{"SAMSAR_REQUEST_TIMEOUT=3s", "REELQ_SHUTDOWN_TIMEOUT=13s", "VIMMERSE_ENABLED=true"},
			"VIMMERSE_REQUEST_TIMEOUT (1m, default)"},
		{"ack wait", []string{"REELQ_ACK_WAIT=1s"}, "REELQ_ACK_WAIT: must be at least 2s, got 1s"},
		{"attempts", []string{"REELQ_MAX_ATTEMPTS=0"}, "REELQ_MAX_ATTEMPTS: must be at least 1, got 0"},
		{"deliveries below attempts", []string{"REELQ_MAX_DELIVER=3"}, "REELQ_MAX_DELIVER: 3 is less than REELQ_MAX_ATTEMPTS (5)"},
		{"unlimited deliveries", []string{"REELQ_MAX_DELIVER=-1"}, ""},
		{"retry base above max", []string{"REELQ_RETRY_BASE=20m"}, "REELQ_RETRY_BASE: 20m is longer than REELQ_RETRY_MAX (10m)"},
		{"probe above max", []string{"REELQ_PROBE_INTERVAL=1h"}, "REELQ_PROBE_INTERVAL: 1h is longer than REELQ_MAX_PROBE_INTERVAL (10m)"},
		{"poll above max", []string{"CAMB_POLL_INTERVAL=1m", "CAMB_MAX_POLL_INTERVAL=30s"}, "CAMB_POLL_INTERVAL: 1m is longer than CAMB_MAX_POLL_INTERVAL (30s)"},
		{"replicas", []string{"REELQ_STREAM_REPLICAS=7"}, "REELQ_STREAM_REPLICAS: must be 1 to 5 (JetStream's limit), got 7"},
		{"negative duration", []string{"SAMSAR_REQUEST_TIMEOUT=-5s"}, "SAMSAR_REQUEST_TIMEOUT: must not be negative, got -5s"},
		{"negative rate", []string{"SAMSAR_RATE=-1"}, "SAMSAR_RATE: must be a positive number, got -1"},
		{"NaN rate", []string{"SAMSAR_RATE=NaN"}, "SAMSAR_RATE: must be a positive number, got NaN"},
		{"negative slots", []string{"SAMSAR_SLOTS=-1"}, "SAMSAR_SLOTS: must not be negative, got -1"},
		{"output policy", []string{"SAMSAR_OUTPUT_POLICY=ignore"}, `SAMSAR_OUTPUT_POLICY: must be fail, retry or accept, got "ignore"`},
		{"output retries", []string{"CAMB_OUTPUT_RETRIES=-1"}, "CAMB_OUTPUT_RETRIES: must not be negative, got -1"},
		{"log format", []string{"LOG_FORMAT=xml"}, `LOG_FORMAT: must be text or json, got "xml"`},
		{"log level", []string{"LOG_LEVEL=loud"}, `LOG_LEVEL: must be debug, info, warn or error, got "loud"`},
		{"callbacks without URL and secret", []string{"SAMSAR_CALLBACKS=true"},
			"REELQ_CALLBACK_URL: required with callbacks on (samsar)\nREELQ_CALLBACK_SECRET: required with callbacks on (samsar)"},
		{"callbacks for a provider without a callback URL", []string{"SEGMIND_API_KEY=k-segmind-1", "SEGMIND_CALLBACKS=true"},
			"SEGMIND_CALLBACKS: segmind takes no callback URL; poll it"},
		{"short callback secret", []string{"REELQ_CALLBACK_SECRET=0123456789"}, "REELQ_CALLBACK_SECRET: 10 bytes; at least 32"},
		{"callbacks on", []string{"SAMSAR_CALLBACKS=true", "REELQ_CALLBACK_URL=https://hooks.example", "REELQ_CALLBACK_SECRET=0123456789abcdef0123456789abcdef"}, ""},
		{"callback rate", []string{"REELQ_CALLBACK_RATE=0"}, "REELQ_CALLBACK_RATE: must be a positive number, got 0"},
		{"several at once", []string{"REELQ_ACK_WAIT=1s", "REELQ_RESULTS_MAX_AGE=800h"}, "REELQ_ACK_WAIT: must be at least 2s, got 1s\nREELQ_RESULTS_MAX_AGE: 800h"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadWorker(with(c.env...))
			switch {
			case c.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case c.want != "" && err == nil:
				t.Errorf("accepted, want %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Errorf("got %q\nwant it to contain %q", err, c.want)
			}
		})
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("key", " sk-from-file \n")
	empty := write("empty", "\n")
	w, err := LoadWorker([]string{"SEGMIND_API_KEY_FILE=" + key})
	if err != nil || w.Providers()["segmind"].APIKey != "sk-from-file" || !w.Providers()["segmind"].Active() {
		t.Fatalf("%v %+v", err, w)
	}
	for _, c := range []struct{ env, want string }{
		{"SEGMIND_API_KEY_FILE=" + empty, "SEGMIND_API_KEY_FILE: " + empty + " is empty"},
		{"SEGMIND_API_KEY_FILE=" + filepath.Join(dir, "missing"), "SEGMIND_API_KEY_FILE: open "},
		{"SAMSAR_API_KEY_FILE=" + key, "SAMSAR_API_KEY, SAMSAR_API_KEY_FILE: set only one of them"},
	} {
		if _, err := LoadWorker(with(c.env)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.env, err, c.want)
		}
	}
}

func TestLoadNATS(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("file-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		env   []string
		want  string // error substring; "" means accepted
		check func(*NATS) bool
	}{
		{"defaults", nil, "", func(n *NATS) bool { return n.Timeout == 5*time.Second && n.URL == "" && n.AuthMethod() == "none" }},
		{"user and password file", []string{"NATS_USER=worker", "NATS_PASSWORD_FILE=" + pw}, "",
			func(n *NATS) bool { return n.Password == "file-password" && n.AuthMethod() == "user" }},
		{"token", []string{"NATS_TOKEN=tok-123456", "NATS_URL=nats://a:4222"}, "", func(n *NATS) bool { return n.AuthMethod() == "token" }},
		{"worker variables are not its business", []string{"REELQ_ACK_WAIT=abc", "SAMSAR_RATE=x"}, "", nil},
		{"bad timeout", []string{"NATS_TIMEOUT=abc"}, `NATS_TIMEOUT: invalid duration "abc"`, nil},
		{"negative timeout", []string{"NATS_TIMEOUT=-1s"}, "NATS_TIMEOUT: must not be negative, got -1s", nil},
		{"two methods", []string{"NATS_USER=u", "NATS_TOKEN=t-123456"}, "NATS_TOKEN, NATS_USER: set only one of NATS_CREDS, NATS_NKEY, NATS_TOKEN and NATS_USER", nil},
		{"password without user", []string{"NATS_PASSWORD=p-123456"}, "NATS_PASSWORD: set, but NATS_USER is not", nil},
		{"password twice", []string{"NATS_USER=u", "NATS_PASSWORD=p", "NATS_PASSWORD_FILE=" + pw}, "NATS_PASSWORD, NATS_PASSWORD_FILE: set only one of them", nil},
		{"cert without key", []string{"NATS_CERT=c.pem"}, "NATS_CERT: set, but NATS_KEY is not", nil},
		{"key without cert", []string{"NATS_KEY=k.pem"}, "NATS_KEY: set, but NATS_CERT is not", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := LoadNATS(c.env)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want %q", err, c.want)
			case c.check != nil && !c.check(n):
				t.Errorf("got %+v", n)
			}
		})
	}
}

func TestNATSSecretsAndRedactURL(t *testing.T) {
	n := NATS{URL: "nats://u:pw-in-url@a:4222, nats://tok-as-user@b:4222", Password: "p1", Token: "t1"}
	if got := n.Secrets(); !slices.Equal(got, []string{"p1", "t1", "pw-in-url", "tok-as-user"}) {
		t.Errorf("Secrets() = %q", got)
	}
	if got := RedactURL("nats://u:pw@a:4222,nats://b:4222"); got != "nats://[REDACTED]@a:4222,nats://b:4222" {
		t.Errorf("RedactURL = %q", got)
	}
}

// Every default written in a tag is a valid value of its variable.
func TestTagDefaultsParse(t *testing.T) {
	fs := workerFields()
	for _, o := range optionTypes() {
		fs = append(fs, fieldsOf(o.Type, o.Prefix)...)
	}
	for _, f := range fs {
		if d, ok := f.SF.Tag.Lookup("envDefault"); ok {
			if err := checkValue(f.SF, d); err != nil {
				t.Errorf("%s: envDefault %q: %v", f.Key, d, err)
			}
		}
	}
}

// Every configuration field has a help text, so --help stays complete as
// fields are added.
func TestEveryFieldHasHelp(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[Worker](), reflect.TypeFor[NATS](), reflect.TypeFor[Provider]()} {
		for _, f := range fieldsOf(typ, "") {
			if strings.TrimSpace(f.SF.Tag.Get("help")) == "" {
				t.Errorf("%s (%s.%s) has no help tag", f.Key, typ.Name(), f.SF.Name)
			}
		}
	}
}

func TestDescribe(t *testing.T) {
	vars := Describe()
	byName := map[string]Var{}
	for _, v := range vars {
		if _, dup := byName[v.Name]; dup {
			t.Errorf("%s listed twice", v.Name)
		}
		byName[v.Name] = v
		if v.Help == "" || strings.Contains(v.Help, "\n") {
			t.Errorf("%s: help %q", v.Name, v.Help)
		}
	}
	want := map[string]string{ // name: default
		"NATS_URL": "(embedded server)", "NATS_TIMEOUT": "5s",
		"P_RATE": "fal, replicate 5; segmind 0.833, others 1", "P_MAX_INFLIGHT": "fal, replicate 10; vimmerse 3, others 5", "P_BURST": "fal, replicate 5, others 2",
		"P_REQUEST_TIMEOUT": "1m", "P_SLOTS": "P_MAX_INFLIGHT", "P_API_KEY": "", "P_API_KEY_FILE": "",
		"REELQ_ACK_WAIT": "60s", "REELQ_WORKER_ID": "host-pid", "REELQ_SHUTDOWN_TIMEOUT": "70s", "LOG_FORMAT": "text",
		"SAMSAR_VIDEO_MODELS": "", "SEGMIND_WORKFLOW_ID": "", "VIMMERSE_TEMPLATE_CREDITS": "", "CAMB_CREDITS_PER_TASK": "",
	}
	for name, def := range want {
		v, ok := byName[name]
		if !ok {
			t.Errorf("%s not described", name)
		} else if v.Default != def {
			t.Errorf("%s: default %q, want %q", name, v.Default, def)
		}
	}
	if v := byName["SAMSAR_VIDEO_MODELS"]; v.Help != "option of the samsar adapter" && !strings.Contains(v.Help, "model") {
		t.Errorf("SAMSAR_VIDEO_MODELS help %q", v.Help)
	}
	for _, name := range []string{"SEGMIND_RATE", "CAMB_API_KEY"} {
		if _, ok := byName[name]; ok {
			t.Errorf("%s listed; per-provider settings appear once as P_", name)
		}
	}
	// Every variable the worker reads is described (as P_ for the
	// per-provider ones).
	for _, k := range KnownVars() {
		name := k
		for _, p := range ProviderPrefixes() {
			if rest, ok := strings.CutPrefix(k, p); ok {
				if _, adapter := byName[k]; !adapter {
					name = "P_" + rest
				}
			}
		}
		if _, ok := byName[name]; !ok {
			t.Errorf("%s is read but not described", k)
		}
	}
}

func TestFormatHelp(t *testing.T) {
	var b strings.Builder
	FormatHelp(&b)
	out := b.String()
	lines := strings.Split(out, "\n")
	header := lines[0]
	col := strings.Index(header, "MEANING")
	if !strings.HasPrefix(header, "VARIABLE ") || col < 0 {
		t.Fatalf("header %q", header)
	}
	n := 0
	for _, l := range lines[1:] {
		if l == "" {
			break
		}
		n++
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing blanks: %q", l)
		}
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("help not aligned at column %d: %q", col, l)
		}
	}
	if n != len(Describe()) {
		t.Errorf("%d rows, want %d", n, len(Describe()))
	}
	for _, s := range []string{"P_ is each provider's prefix: CAMB_, FAL_, REPLICATE_, SAMSAR_, SEGMIND_, VIMMERSE_.", "REELQ_BENCH_*", "REELQ_SHUTDOWN_TIMEOUT", "P_RATE"} {
		if !strings.Contains(out, s) {
			t.Errorf("help lacks %q:\n%s", s, out)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"abc", "", 3}, {"", "ab", 2}, {"kitten", "sitting", 3}, {"INFLIGT", "INFLIGHT", 1}, {"WAIT", "WATI", 1}, {"ab", "ba", 1}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Minute: "1m", 720 * time.Hour: "720h", 70 * time.Second: "1m10s",
		1500 * time.Millisecond: "1.5s", 90 * time.Minute: "1h30m", -5 * time.Second: "-5s", 0: "0s", time.Hour + time.Second: "1h0m1s"} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
