// Package providertest is the conformance suite every provider adapter
// runs against the provider simulator (internal/providersim) over real
// HTTP. One call, Run, checks the contract the worker relies on: the
// happy path, each error class with the provider's own wire form (its 429,
// its credit error, its auth failure), input validation that never reaches
// the provider, prompt context cancellation, and that the API key never
// appears in an error.
//
// It also checks the provider's Spec against its adapter: the limits and
// timings make sense, the estimate's unit is the Kind's, Cancelable says
// whether the adapter cancels, and a lookup Recovery has a Finder.
//
// An adapter's test is a few lines:
//
//	func TestConformance(t *testing.T) {
//		providertest.Run(t, segmind.Spec, providertest.Harness{
//			ValidInput:     json.RawMessage(`{}`),
//			ForbiddenInput: json.RawMessage(`{"prompt":"` + providersim.ForbiddenMarker + `"}`),
//			InvalidInputs:  map[string]json.RawMessage{"array": json.RawMessage(`[]`)},
//		})
//	}
package providertest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providersim"
)

// Key is the API key the suite gives adapters; WrongKey the one the
// simulator rejects. Neither may appear in any error.
const (
	Key      = "sk-reelq-conformance-5f2b9c1e7d"
	WrongKey = "sk-reelq-WRONG-93a7e0c4b1"
)

// Harness describes one adapter's test inputs to the suite.
type Harness struct {
	// Name, New, BaseURL, CreditsAtPoll and spec are set by Run from the
	// provider's Spec.
	Name          string
	New           func(baseURL, key string) providers.Provider
	BaseURL       func(srvURL string) string
	CreditsAtPoll bool
	spec          providers.Spec
	// ValidInput is a job input the adapter and the simulator accept.
	ValidInput json.RawMessage
	// InvalidInputs are inputs that break a documented rule, by name.
	// Validate and Submit must reject each without calling the provider.
	InvalidInputs map[string]json.RawMessage
	// ForbiddenInput is a valid input that mentions
	// providersim.ForbiddenMarker (in its prompt, title or text), which
	// the simulator refuses with the provider's per-job 403.
	ForbiddenInput json.RawMessage
	// ForbiddenAtPoll is set for providers that accept such a job and
	// fail the task when polled (Camb's exception_reason FORBIDDEN).
	ForbiddenAtPoll bool
	// Findable is set when Find recovers a submitted task. When false, a
	// Finder must answer with an error wrapping providers.ErrNotFound.
	Findable bool
}

// Run runs the conformance suite for the provider spec describes, with
// h's inputs, as parallel subtests.
func Run(t *testing.T, spec providers.Spec, h Harness) {
	t.Helper()
	if spec.Name() == "" || spec.New == nil || h.ValidInput == nil || h.ForbiddenInput == nil {
		t.Fatal("providertest: the Spec needs a Kind and New; the Harness ValidInput and ForbiddenInput")
	}
	h.spec, h.Name, h.CreditsAtPoll = spec, spec.Name(), spec.CreditsOnPoll
	h.New = func(baseURL, key string) providers.Provider {
		p, err := spec.New(providers.Config{BaseURL: baseURL, APIKey: key}, nil)
		if err != nil {
			t.Fatalf("%s: New: %v", spec.Name(), err)
		}
		return p
	}
	h.BaseURL = func(srvURL string) string { return srvURL + spec.Sim.Base }
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"Basics", testBasics},
		{"Succeeds", testSucceeds},
		{"TaskFails", testTaskFails},
		{"ServerErrorIsRetryable", testServerError},
		{"RateLimited", testRateLimited},
		{"CreditsExhausted", testCredits},
		{"WrongKey", testWrongKey},
		{"InvalidInputNeverSent", testInvalid},
		{"ContextCancel", testContextCancel},
		{"PollUnknownTask", testPollUnknown},
		{"Cancel", testCancel},
		{"Find", testFind},
		{"KeyNeverInErrors", testKeyEcho},
		{"SubmitWithoutTaskID", testMissingTaskID},
		{"ForbiddenJob", testForbidden},
		{"BalanceEndpointFails", testBalanceFailures},
		{"BadOutputURLs", testBadOutputs},
		{"OutputsDownload", testOutputsDownload},
		{"RedirectToOtherHost", testCrossHostRedirect},
		{"RedirectSameHostGET", testSameHostRedirect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, h)
		})
	}
}

// bundle is one subtest's simulator and adapter.
type bundle struct {
	sim *providersim.Server
	p   providers.Provider
	key string
}

// setup starts a simulator with knobs for h's provider and returns an
// adapter pointed at it, using key (Key if empty).
func setup(t *testing.T, h Harness, k providersim.Knobs, key string) *bundle {
	t.Helper()
	if key == "" {
		key = Key
	}
	if k.CompleteAfter == 0 {
		k.CompleteAfter = providersim.Duration(50 * time.Millisecond)
	}
	sim := h.simulator(map[string]providersim.Knobs{h.Name: k})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	base := srv.URL
	if h.BaseURL != nil {
		base = h.BaseURL(srv.URL)
	}
	return &bundle{sim: sim, p: h.New(base, key), key: key}
}

func (b *bundle) stats(name string) providersim.Stats { return b.sim.Stats(time.Second)[name] }

// submitted counts paid submissions across all keys.
func (b *bundle) submitted(name string) int {
	n := 0
	for _, v := range b.stats(name).Submissions {
		n += v
	}
	return n
}

// request is the job request the suite submits.
func request(h Harness, jobID string) providers.Request {
	return providers.Request{JobID: jobID, Input: h.ValidInput}
}

// pollUntilDone polls task at a short interval until it is terminal or
// the deadline passes. The simulator's tasks finish after CompleteAfter,
// so this is a bounded wait on the provider's state, not a sleep.
func (b *bundle) pollUntilDone(t *testing.T, task providers.Task) providers.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := b.p.Poll(ctx, task)
		if err != nil {
			t.Fatalf("Poll(%+v): %v", task, err)
		}
		checkStatus(t, st)
		if st.State != providers.Pending {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("task %s still %s (%s) after 10s", task.ID, st.State, st.Raw)
		case <-tick.C:
		}
	}
}

// checkStatus checks the invariants of any Status.
func checkStatus(t *testing.T, st providers.Status) {
	t.Helper()
	if st.Progress != -1 && (st.Progress < 0 || st.Progress > 100) {
		t.Errorf("Progress = %g, want -1 or 0..100", st.Progress)
	}
	switch st.State {
	case providers.Pending:
		if st.Err != nil || len(st.Outputs) > 0 {
			t.Errorf("pending status has Err %v or outputs %v", st.Err, st.Outputs)
		}
	case providers.Failed:
		if st.Err == nil {
			t.Error("failed status without Err")
		}
	}
}

// wantClass fails unless err is an error of class.
func wantClass(t *testing.T, what string, err, class error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, class)
	}
	if !errors.Is(err, class) {
		t.Fatalf("%s: error %q is not %q", what, err, class)
	}
	var pe *providers.Error
	if !errors.As(err, &pe) {
		t.Fatalf("%s: error %q (%T) is not a *providers.Error", what, err, err)
	}
	noKey(t, err)
}

// noKey fails if any API key the suite uses shows in err.
func noKey(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, k := range []string{Key, WrongKey} {
		if strings.Contains(err.Error(), k) {
			t.Fatalf("error leaks the API key: %q", err)
		}
	}
}

// simulator serves h's provider alone, with knobs.
func (h Harness) simulator(knobs map[string]providersim.Knobs) *providersim.Server {
	api := h.spec.Sim
	api.Expired = h.spec.LinkExpiry.Status
	return providersim.New(map[string]providersim.API{h.Name: api}, knobs, 1)
}
