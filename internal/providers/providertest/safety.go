package providertest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providersim"
)

// testMissingTaskID: a submit answered 2xx without the task id (the
// simulator renames the field) is an unknown submission, never retried:
// the provider charged for it.
func testMissingTaskID(t *testing.T, h Harness) {
	b := setup(t, h, providersim.Knobs{MissingTaskID: true}, "")
	_, err := b.p.Submit(context.Background(), request(h, "job-no-id"))
	wantClass(t, "Submit", err, providers.ErrUnknownSubmission)
	if providers.Retryable(err) {
		t.Error("an unknown submission is retryable: every retry would pay again")
	}
	if got := providers.Code(err); got != "unknown_submission" {
		t.Errorf("Code = %q, want unknown_submission", got)
	}
	var pe *providers.Error
	if errors.As(err, &pe) && !strings.Contains(pe.Message, h.Name+"-") {
		t.Errorf("message %q does not keep the provider's answer (which holds the task id)", pe.Message)
	}
	if n := b.submitted(h.Name); n != 1 {
		t.Errorf("simulator charged %d submissions, want 1", n)
	}
	// A 2xx that is not JSON at all (a proxy's page, say) is no better.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><body>Accepted</body></html>"))
	}))
	defer srv.Close()
	base := srv.URL
	if h.BaseURL != nil {
		base = h.BaseURL(srv.URL)
	}
	_, err = h.New(base, Key).Submit(context.Background(), request(h, "job-html"))
	wantClass(t, "Submit answered with HTML", err, providers.ErrUnknownSubmission)
	if errors.As(err, &pe) && !strings.Contains(pe.Message, "Accepted") {
		t.Errorf("message %q does not keep the answer", pe.Message)
	}
}

// testForbidden: a 403 about one job is ErrForbidden, not ErrAuth (which
// would pause the provider), and the provider goes on serving other jobs.
func testForbidden(t *testing.T, h Harness) {
	b := setup(t, h, providersim.Knobs{ForbiddenMarker: providersim.ForbiddenMarker}, "")
	ctx := context.Background()
	if err := b.p.Validate(h.ForbiddenInput); err != nil {
		t.Fatalf("Validate(ForbiddenInput): %v", err)
	}
	task, err := b.p.Submit(ctx, providers.Request{JobID: "job-forbidden", Input: h.ForbiddenInput})
	if h.ForbiddenAtPoll {
		if err != nil {
			t.Fatalf("Submit: %v (this provider reports it at poll)", err)
		}
		st := b.pollUntilDone(t, task)
		if st.State != providers.Failed {
			t.Fatalf("state %s (%s), want failed", st.State, st.Raw)
		}
		err = st.Err
	}
	wantClass(t, "forbidden job", err, providers.ErrForbidden)
	if errors.Is(err, providers.ErrAuth) {
		t.Errorf("a per-job 403 is also ErrAuth: %v", err)
	}
	if got := providers.Code(err); got != "forbidden" {
		t.Errorf("Code = %q, want forbidden", got)
	}
	if n := b.submitted(h.Name); n != 0 {
		t.Errorf("%d paid submissions for a refused job, want 0", n)
	}
	task, err = b.p.Submit(ctx, request(h, "job-after-forbidden"))
	if err != nil {
		t.Fatalf("Submit after the forbidden job: %v", err)
	}
	if st := b.pollUntilDone(t, task); st.State != providers.Succeeded {
		t.Errorf("job after the forbidden one: %s (%v)", st.State, st.Err)
	}
}

// testBalanceFailures: a balance endpoint that fails says nothing about
// the balance: retryable or not found, never credits exhausted, never fine.
func testBalanceFailures(t *testing.T, h Harness) {
	if _, ok := h.New("http://127.0.0.1:1", Key).(providers.CreditChecker); !ok {
		t.Skip("adapter has no CheckCredits")
	}
	for _, tc := range []struct {
		name  string
		k     providersim.Knobs
		class error
	}{
		{"503", providersim.Knobs{BalanceStatus: http.StatusServiceUnavailable}, providers.ErrRetryable},
		{"500", providersim.Knobs{BalanceStatus: http.StatusInternalServerError}, providers.ErrRetryable},
		{"402", providersim.Knobs{BalanceStatus: http.StatusPaymentRequired}, providers.ErrRetryable},
		{"404", providersim.Knobs{BalanceStatus: http.StatusNotFound}, providers.ErrNotFound},
		{"unreadable body", providersim.Knobs{BalanceMalformed: true}, providers.ErrRetryable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, h, tc.k, "")
			err := b.p.(providers.CreditChecker).CheckCredits(context.Background())
			wantClass(t, "CheckCredits", err, tc.class)
			if errors.Is(err, providers.ErrCreditsExhausted) {
				t.Errorf("a failing balance endpoint reads as exhausted credits: %v", err)
			}
		})
	}
}

// badOutputURLs are output URLs no adapter may return.
var badOutputURLs = []string{
	"javascript:alert(document.domain)",
	"file:///etc/passwd",
	"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
	"https://user:s3cret-pw@cdn.example/video.mp4",
	"https:///no-host.mp4",
	"//cdn.example/video.mp4",
	"ftp://cdn.example/video.mp4",
}

// testBadOutputs: a provider that returns an unusable output URL has
// failed the task; the URL is never an output.
func testBadOutputs(t *testing.T, h Harness) {
	for _, u := range badOutputURLs {
		b := setup(t, h, providersim.Knobs{OutputURL: u}, "")
		task, err := b.p.Submit(context.Background(), request(h, "job-bad-output"))
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		st := b.pollUntilDone(t, task)
		if st.State != providers.Failed {
			t.Errorf("output %q: state %s with outputs %v, want failed", u, st.State, st.Outputs)
			continue
		}
		wantClass(t, "Status.Err for "+u, st.Err, providers.ErrTaskFailed)
		if msg := st.Err.Error(); !strings.Contains(msg, "output") || strings.Contains(msg, "s3cret-pw") {
			t.Errorf("Err %q should name the bad output without its user info", msg)
		}
	}
}

// testOutputsDownload: the outputs of a successful task are real files:
// they download without the key, with the type the adapter reports and
// a Content-Length that matches.
func testOutputsDownload(t *testing.T, h Harness) {
	b := setup(t, h, providersim.Knobs{}, "")
	task, err := b.p.Submit(context.Background(), request(h, "job-download"))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	st := b.pollUntilDone(t, task)
	if st.State != providers.Succeeded {
		t.Fatalf("state %s: %v", st.State, st.Err)
	}
	for _, o := range st.Outputs {
		resp, err := http.Get(o.URL)
		if err != nil {
			t.Fatalf("GET %s: %v", o.URL, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d, %v", o.URL, resp.StatusCode, err)
		}
		ct := resp.Header.Get("Content-Type")
		if o.ContentType != "" && o.ContentType != ct {
			t.Errorf("output %s: adapter says %q, file is %q", o.Name, o.ContentType, ct)
		}
		if resp.ContentLength != int64(len(body)) {
			t.Errorf("output %s: Content-Length %d, body %d bytes", o.Name, resp.ContentLength, len(body))
		}
		if !validMedia(ct, body) {
			t.Errorf("output %s (%s) is not a valid file: % x", o.Name, ct, body[:min(16, len(body))])
		}
	}
	n := 0
	for _, c := range b.stats(h.Name).Downloads {
		n += c
	}
	if n != len(st.Outputs) {
		t.Errorf("simulator counted %d downloads, want %d", n, len(st.Outputs))
	}
}

// validMedia checks a file's signature against its type.
func validMedia(ct string, b []byte) bool {
	switch ct {
	case providersim.TypeMP4:
		return len(b) > 8 && string(b[4:8]) == "ftyp"
	case providersim.TypeWAV:
		return len(b) > 44 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WAVE"
	case providersim.TypePNG:
		return bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n"))
	}
	return false
}

// testCrossHostRedirect: a provider (or anything on its path) that
// redirects to another host gets no request through, so the key never
// reaches that host, and a submit is sent exactly once.
func testCrossHostRedirect(t *testing.T, h Harness) {
	var (
		mu     sync.Mutex
		leaked []string
	)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		leaked = append(leaked, r.Method+" "+r.URL.Path)
		_, _ = w.Write([]byte(`{}`))
	}))
	defer other.Close()
	ctx := context.Background()
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect} {
		var posts atomic.Int32
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				posts.Add(1)
			}
			http.Redirect(w, r, other.URL+r.URL.RequestURI(), code)
		}))
		base := front.URL
		if h.BaseURL != nil {
			base = h.BaseURL(front.URL)
		}
		p := h.New(base, Key)
		_, err := p.Submit(ctx, request(h, "job-redirect"))
		want := providers.ErrUnknownSubmission // a 302 to a POST may mean it was accepted
		if code == http.StatusTemporaryRedirect {
			want = providers.ErrRetryable // 307: not acted on, repeat elsewhere
		}
		wantClass(t, "Submit redirected", err, want)
		if n := posts.Load(); n != 1 {
			t.Errorf("HTTP %d: the submit was sent %d times, want 1", code, n)
		}
		_, err = p.Poll(ctx, providers.Task{ID: "some-task", PollURL: front.URL + "/workflows/request/some-task"})
		wantClass(t, "Poll redirected", err, providers.ErrRetryable)
		if cc, ok := p.(providers.CreditChecker); ok {
			err := cc.CheckCredits(ctx)
			wantClass(t, "CheckCredits redirected", err, providers.ErrRetryable)
		}
		if cn, ok := p.(providers.Canceler); ok {
			wantClass(t, "Cancel redirected", cn.Cancel(ctx, providers.Task{ID: "some-task"}), providers.ErrRetryable)
		}
		front.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) > 0 {
		t.Errorf("the other host received %d requests: %v", len(leaked), leaked)
	}
}

// testSameHostRedirect: a GET redirected within the API host is followed
// (with the key), so a job still completes; a submit is not redirected.
func testSameHostRedirect(t *testing.T, h Harness) {
	sim := h.simulator(map[string]providersim.Knobs{h.Name: {CompleteAfter: providersim.Duration(50 * time.Millisecond)}})
	var redirected atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/moved"); ok {
			r2 := r.Clone(r.Context())
			r2.URL.Path, r2.URL.RawPath = rest, ""
			sim.ServeHTTP(w, r2)
			return
		}
		if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/outputs/") {
			redirected.Add(1)
			http.Redirect(w, r, "/moved"+r.URL.RequestURI(), http.StatusFound)
			return
		}
		sim.ServeHTTP(w, r)
	}))
	defer front.Close()
	base := front.URL
	if h.BaseURL != nil {
		base = h.BaseURL(front.URL)
	}
	b := &bundle{sim: sim, p: h.New(base, Key), key: Key}
	task, err := b.p.Submit(context.Background(), request(h, "job-same-host"))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if st := b.pollUntilDone(t, task); st.State != providers.Succeeded {
		t.Fatalf("state %s: %v", st.State, st.Err)
	}
	if redirected.Load() == 0 {
		t.Fatal("no GET was redirected: the test did not exercise anything")
	}
}
