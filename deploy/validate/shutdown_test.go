package validate

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// What the worker promises on SIGTERM: no new paid call starts; calls in
// flight finish and are recorded, for up to REELQ_SHUTDOWN_TIMEOUT, which
// internal/config requires to be at least the longest P_REQUEST_TIMEOUT
// plus recordingMargin. The orchestrator must then wait that long plus
// graceMargin (draining the NATS connection, exiting) before it kills the
// process, or a call the provider billed goes unrecorded.
const (
	defaultShutdownTimeout = 70 * time.Second // REELQ_SHUTDOWN_TIMEOUT's default
	defaultRequestTimeout  = time.Minute      // P_REQUEST_TIMEOUT's default
	recordingMargin        = 10 * time.Second // internal/config RecordingMargin
	graceMargin            = 15 * time.Second
)

// envDuration reads a duration variable, or def when unset.
func envDuration(env map[string]string, name string, def time.Duration) (time.Duration, error) {
	v, ok := env[name]
	if !ok || v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %v", name, v, err)
	}
	return d, nil
}

// workerShutdown returns the worker's REELQ_SHUTDOWN_TIMEOUT in env, and
// errors if it does not cover every provider's request timeout (each
// provider may be enabled, so each counts, with its default when unset).
func workerShutdown(env map[string]string) (time.Duration, []error) {
	var errs []error
	shutdown, err := envDuration(env, "REELQ_SHUTDOWN_TIMEOUT", defaultShutdownTimeout)
	if err != nil {
		return 0, []error{err}
	}
	for _, p := range providers {
		name := strings.ToUpper(p) + "_REQUEST_TIMEOUT"
		rt, err := envDuration(env, name, defaultRequestTimeout)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if shutdown < rt+recordingMargin {
			errs = append(errs, fmt.Errorf("REELQ_SHUTDOWN_TIMEOUT %s does not cover %s %s plus %s (the worker refuses to start)",
				shutdown, name, rt, recordingMargin))
		}
	}
	return shutdown, errs
}

// checkShutdown checks a worker's environment against the grace period
// its orchestrator gives it after SIGTERM.
func checkShutdown(env map[string]string, grace time.Duration) []error {
	shutdown, errs := workerShutdown(env)
	if shutdown > 0 && grace < shutdown+graceMargin {
		errs = append(errs, fmt.Errorf("grace period %s is shorter than REELQ_SHUTDOWN_TIMEOUT %s plus %s: calls in flight could be killed unrecorded",
			grace, shutdown, graceMargin))
	}
	return errs
}

// The check fails when someone lowers a grace period below the shutdown
// timeout plus the margin, or raises a request timeout beyond what the
// shutdown timeout covers (guards the guard the manifests are checked
// with).
func TestShutdownCheck(t *testing.T) {
	for _, c := range []struct {
		env   map[string]string
		grace time.Duration
		ok    bool
	}{
		{map[string]string{}, 90 * time.Second, true},
		{map[string]string{"REELQ_SHUTDOWN_TIMEOUT": "70s"}, 85 * time.Second, true},
		{map[string]string{"REELQ_SHUTDOWN_TIMEOUT": "70s"}, 80 * time.Second, false},
		{map[string]string{}, 60 * time.Second, false},
		{map[string]string{"SAMSAR_REQUEST_TIMEOUT": "61s"}, 90 * time.Second, false},
		{map[string]string{"REELQ_SHUTDOWN_TIMEOUT": "2m", "CAMB_REQUEST_TIMEOUT": "110s"}, 135 * time.Second, true},
		{map[string]string{"REELQ_SHUTDOWN_TIMEOUT": "30s"}, 90 * time.Second, false},
		{map[string]string{"REELQ_SHUTDOWN_TIMEOUT": "soon"}, 90 * time.Second, false},
	} {
		errs := checkShutdown(c.env, c.grace)
		if (len(errs) == 0) != c.ok {
			t.Errorf("%v with grace %s: %v, want ok=%v", c.env, c.grace, errs, c.ok)
		}
	}
}
