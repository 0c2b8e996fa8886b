package providertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providersim"
)

func testBasics(t *testing.T, h Harness) {
	b := setup(t, h, providersim.Knobs{}, "")
	if got := b.p.Name(); got != h.Name {
		t.Errorf("Name() = %q, want %q", got, h.Name)
	}
	if err := b.p.Validate(h.ValidInput); err != nil {
		t.Fatalf("Validate(ValidInput): %v", err)
	}
	c := b.p.Estimate(h.ValidInput)
	if c.Amount <= 0 || (c.Unit != "usd" && c.Unit != "credits") || c.Basis == "" {
		t.Errorf("Estimate = %+v, want a positive amount in usd or credits with a basis", c)
	}
	checkSpec(t, h.spec, b.p, c)
	if cc, ok := b.p.(providers.CreditChecker); ok {
		if err := cc.CheckCredits(context.Background()); err != nil {
			t.Errorf("CheckCredits with unlimited credits: %v", err)
		}
	}
	if b.stats(h.Name).Tasks != 0 {
		t.Error("Validate, Estimate or CheckCredits started a task")
	}
}

func testSucceeds(t *testing.T, h Harness) {
	b := setup(t, h, providersim.Knobs{}, "")
	task, err := b.p.Submit(context.Background(), request(h, "job-ok"))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if task.ID == "" {
		t.Fatal("Submit returned an empty task id")
	}
	st := b.pollUntilDone(t, task)
	if st.State != providers.Succeeded {
		t.Fatalf("state %s (%s), err %v; want succeeded", st.State, st.Raw, st.Err)
	}
	if len(st.Outputs) == 0 {
		t.Fatal("succeeded without outputs")
	}
	for _, o := range st.Outputs {
		if o.URL == "" {
			t.Errorf("output %+v has no URL", o)
		}
	}
	if st.Raw == "" {
		t.Error("Status.Raw is empty")
	}
	if n := b.submitted(h.Name); n != 1 {
		t.Errorf("simulator saw %d paid submissions, want 1", n)
	}
	if a := b.stats(h.Name).Active; a != 0 {
		t.Errorf("simulator has %d tasks active after the terminal poll, want 0", a)
	}
}

func testTaskFails(t *testing.T, h Harness) {
	b := setup(t, h, providersim.Knobs{FailRate: 1}, "")
	task, err := b.p.Submit(context.Background(), request(h, "job-fail"))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	st := b.pollUntilDone(t, task)
	if st.State != providers.Failed {
		t.Fatalf("state %s (%s), want failed", st.State, st.Raw)
	}
	wantClass(t, "Status.Err", st.Err, providers.ErrTaskFailed)
	if got := providers.Code(st.Err); got != "provider_failed" {
		t.Errorf("Code = %q, want provider_failed", got)
	}
}

func testServerError(t *testing.T, h Harness) {
	b := setup(t, h, providersim.Knobs{ErrorRate: 1}, "")
	_, err := b.p.Submit(context.Background(), request(h, "job-5xx"))
	wantClass(t, "Submit", err, providers.ErrRetryable)
	if !providers.Retryable(err) {
		t.Error("Retryable(err) = false")
	}
	_, err = b.p.Poll(context.Background(), providers.Task{ID: "some-task"})
	wantClass(t, "Poll", err, providers.ErrRetryable)
	if n := b.submitted(h.Name); n != 0 {
		t.Errorf("%d paid submissions, want 0", n)
	}
}

func testRateLimited(t *testing.T, h Harness) {
	const wait = 3 * time.Second
	b := setup(t, h, providersim.Knobs{RateLimit: 0.001, RateBurst: 1, RetryAfter: providersim.Duration(wait)}, "")
	if _, err := b.p.Submit(context.Background(), request(h, "job-rl-1")); err != nil {
		t.Fatalf("first Submit: %v", err)
	}
	_, err := b.p.Submit(context.Background(), request(h, "job-rl-2"))
	wantClass(t, "second Submit", err, providers.ErrRateLimited)
	if ra := providers.RetryAfter(err); ra <= 0 || ra > wait+time.Second {
		t.Errorf("RetryAfter = %v, want about %v from the provider's header", ra, wait)
	}
	if got := providers.Code(err); got != "rate_limited" {
		t.Errorf("Code = %q, want rate_limited", got)
	}
	if n := b.submitted(h.Name); n != 1 {
		t.Errorf("%d paid submissions, want 1", n)
	}
}

func testCredits(t *testing.T, h Harness) {
	zero := 0.0
	b := setup(t, h, providersim.Knobs{Credits: &zero}, "")
	ctx := context.Background()
	task, err := b.p.Submit(ctx, request(h, "job-broke"))
	if h.CreditsAtPoll {
		// Two tasks: the simulator answers them in the old form (status
		// PAYMENT_REQUIRED) and the new (ERROR + exception_reason).
		task2, err2 := b.p.Submit(ctx, request(h, "job-broke-2"))
		if err != nil || err2 != nil {
			t.Fatalf("Submit: %v, %v (this provider reports credits at poll)", err, err2)
		}
		raws := map[string]bool{}
		for _, tk := range []providers.Task{task, task2} {
			st := b.pollUntilDone(t, tk)
			if st.State != providers.Failed {
				t.Fatalf("state %s (%s), want failed", st.State, st.Raw)
			}
			wantClass(t, "Status.Err ("+st.Raw+")", st.Err, providers.ErrCreditsExhausted)
			raws[st.Raw] = true
		}
		if len(raws) != 2 {
			t.Errorf("both tasks answered %v; want both documented forms", raws)
		}
	} else {
		wantClass(t, "Submit", err, providers.ErrCreditsExhausted)
	}
	if n := b.submitted(h.Name); n != 0 {
		t.Errorf("%d paid submissions with no credits, want 0", n)
	}
	if cc, ok := b.p.(providers.CreditChecker); ok {
		wantClass(t, "CheckCredits at 0", cc.CheckCredits(ctx), providers.ErrCreditsExhausted)
		if err := b.sim.SetCredits(h.Name, 1000, false); err != nil {
			t.Fatal(err)
		}
		if err := cc.CheckCredits(ctx); err != nil {
			t.Errorf("CheckCredits after top-up: %v", err)
		}
	}
}

func testWrongKey(t *testing.T, h Harness) {
	b := setup(t, h, providersim.Knobs{APIKey: Key}, WrongKey)
	ctx := context.Background()
	_, err := b.p.Submit(ctx, request(h, "job-auth"))
	wantClass(t, "Submit", err, providers.ErrAuth)
	_, err = b.p.Poll(ctx, providers.Task{ID: "some-task"})
	wantClass(t, "Poll", err, providers.ErrAuth)
	if cc, ok := b.p.(providers.CreditChecker); ok {
		wantClass(t, "CheckCredits", cc.CheckCredits(ctx), providers.ErrAuth)
	}
	if n := b.stats(h.Name).Tasks; n != 0 {
		t.Errorf("%d tasks created with a wrong key", n)
	}
}

func testInvalid(t *testing.T, h Harness) {
	if len(h.InvalidInputs) == 0 {
		t.Fatal("Harness.InvalidInputs is empty: list inputs that break documented rules")
	}
	b := setup(t, h, providersim.Knobs{}, "")
	for name, in := range h.InvalidInputs {
		err := b.p.Validate(in)
		wantClass(t, "Validate("+name+")", err, providers.ErrInvalidInput)
		_, err = b.p.Submit(context.Background(), providers.Request{JobID: "job-bad", Input: in})
		wantClass(t, "Submit("+name+")", err, providers.ErrInvalidInput)
	}
	if st := b.stats(h.Name); st.TotalRequests != 0 || len(st.Submissions) != 0 {
		t.Errorf("invalid input reached the provider: %d requests, submissions %v", st.TotalRequests, st.Submissions)
	}
}

func testContextCancel(t *testing.T, h Harness) {
	// The simulator holds every call for a second. (A server cannot see a
	// client hang up before it reads the request body, so a longer hold
	// would only slow the test's cleanup.)
	const hold = time.Second
	b := setup(t, h, providersim.Knobs{SlowRate: 1, SlowFor: providersim.Duration(hold)}, "")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.p.Submit(ctx, request(h, "job-ctx"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit with a 100ms deadline: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d >= hold-100*time.Millisecond {
		t.Errorf("Submit took %v: it waited for the provider instead of the context", d)
	}
	noKey(t, err)
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	_, err = b.p.Poll(done, providers.Task{ID: "some-task"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Poll with a cancelled context: %v, want context.Canceled", err)
	}
}

func testPollUnknown(t *testing.T, h Harness) {
	b := setup(t, h, providersim.Knobs{}, "")
	_, err := b.p.Poll(context.Background(), providers.Task{ID: "no-such-task"})
	wantClass(t, "Poll(unknown)", err, providers.ErrNotFound)
}

func testCancel(t *testing.T, h Harness) {
	b := setup(t, h, providersim.Knobs{CompleteAfter: providersim.Duration(time.Hour)}, "")
	cn, ok := b.p.(providers.Canceler)
	if !ok {
		t.Skip("adapter has no Cancel")
	}
	ctx := context.Background()
	task, err := b.p.Submit(ctx, request(h, "job-cancel"))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if err := cn.Cancel(ctx, task); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	st, err := b.p.Poll(ctx, task)
	switch {
	case err != nil:
		wantClass(t, "Poll after Cancel", err, providers.ErrNotFound)
	case st.State != providers.Failed:
		t.Errorf("after Cancel: state %s (%s), want failed or not found", st.State, st.Raw)
	}
	if a := b.stats(h.Name).Active; a != 0 {
		t.Errorf("%d tasks still active after Cancel", a)
	}
}

func testFind(t *testing.T, h Harness) {
	b := setup(t, h, providersim.Knobs{}, "")
	f, ok := b.p.(providers.Finder)
	if !ok {
		t.Skip("adapter has no Find")
	}
	ctx := context.Background()
	req := request(h, "job-find-7")
	task, err := b.p.Submit(ctx, req)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	got, err := f.Find(ctx, req)
	if !h.Findable {
		wantClass(t, "Find", err, providers.ErrNotFound)
		return
	}
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	if got.ID != task.ID {
		t.Errorf("Find = %q, want the submitted task %q", got.ID, task.ID)
	}
	_, err = f.Find(ctx, request(h, "job-never-submitted"))
	wantClass(t, "Find(unsubmitted)", err, providers.ErrNotFound)
}

// testKeyEcho runs the adapter against a server that quotes every request
// header back in its error bodies, as a careless provider might: the key
// must still not appear in any error.
func testKeyEcho(t *testing.T, h Harness) {
	for _, status := range []int{http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusInternalServerError} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var b strings.Builder
			for k, vs := range r.Header {
				fmt.Fprintf(&b, "%s=%s ", k, strings.Join(vs, ","))
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			msg, _ := json.Marshal(b.String())
			fmt.Fprintf(w, `{"error":%s,"message":%s,"detail":%s}`, msg, msg, msg)
		}))
		base := srv.URL
		if h.BaseURL != nil {
			base = h.BaseURL(srv.URL)
		}
		p := h.New(base, Key)
		_, err := p.Submit(context.Background(), request(h, "job-echo"))
		if err == nil {
			t.Errorf("HTTP %d: Submit succeeded", status)
		}
		noKey(t, err)
		_, err = p.Poll(context.Background(), providers.Task{ID: "some-task"})
		noKey(t, err)
		srv.Close()
	}
}

// checkSpec holds a provider's Spec against its adapter p (whose estimate
// of the valid input is est).
func checkSpec(t *testing.T, s providers.Spec, p providers.Provider, est providers.Cost) {
	t.Helper()
	d := s.Timings
	if d.PollInterval <= 0 || d.MaxPollInterval < d.PollInterval || d.JobTimeout <= d.MaxPollInterval {
		t.Errorf("Spec.Timings = %+v, want 0 < poll <= max poll < job timeout", d)
	}
	if l := s.Limits; l.Rate <= 0 || l.Burst < 1 || l.MaxInflight < 1 || l.RequestTimeout <= 0 {
		t.Errorf("Spec.Limits = %+v, want a positive rate, burst, cap and request timeout", l)
	}
	if est.Unit != s.Kind.Unit || s.HoldAbove.Unit != s.Kind.Unit {
		t.Errorf("Estimate unit %q, HoldAbove unit %q, Kind.Unit %q: want one unit", est.Unit, s.HoldAbove.Unit, s.Kind.Unit)
	}
	if _, ok := p.(providers.Canceler); ok != s.Kind.Cancelable {
		t.Errorf("the adapter cancels: %v; Kind.Cancelable: %v", ok, s.Kind.Cancelable)
	}
	if _, ok := p.(providers.Finder); ok != (s.Recovery == providers.RecoveryLookup) {
		t.Errorf("the adapter finds tasks: %v; Recovery: %s", ok, s.Recovery)
	}
	switch s.Recovery {
	case providers.RecoveryIdempotencyKey, providers.RecoveryLookup, providers.RecoveryNone:
	default:
		t.Errorf("Recovery %q is not one of idempotency-key, lookup, none", s.Recovery)
	}
	if s.LinkExpiry.Status != http.StatusNotFound && s.LinkExpiry.Status != http.StatusForbidden {
		t.Errorf("LinkExpiry.Status %d, want 404 or 403", s.LinkExpiry.Status)
	}
	if s.BaseURL == "" || !strings.HasPrefix(s.BaseURL, "https://") || s.Doc == "" || len(s.Kind.Schema) == 0 || s.Sim.Routes == nil {
		t.Error("the Spec needs an https BaseURL, a Doc, the input's Schema and simulator Routes")
	}
}
