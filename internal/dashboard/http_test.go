package dashboard_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/dashboard"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
)

// Without credentials the dashboard shows everything and does nothing:
// every action is refused, and no form offers one.
func TestReadOnly(t *testing.T) {
	t.Parallel()
	d := startDash(t, dashOptions{worker: &reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}}})
	d.Enqueue(samsarJobs("ro", 2)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.Client.Wait(ctx, "ro-01"); err != nil {
		t.Fatal(err)
	}
	b := d.browser(t)
	for _, p := range []string{"/", "/batches/ro", "/jobs", "/jobs/ro-01", "/dlq", "/static/app.css", "/static/app.js", "/healthz"} {
		code, body := b.get(p)
		if code != 200 {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
		if strings.Contains(body, `method="post"`) {
			t.Errorf("GET %s: a read-only page offers a form that acts", p)
		}
	}
	for _, p := range []string{"/providers/samsar/pause", "/batches/ro/cancel", "/jobs/ro-02/cancel", "/jobs/ro-01/retry", "/dlq/1/redrive"} {
		if code, _, body := b.do("POST", p, url.Values{"csrf": {"x"}}, nil); code != http.StatusForbidden || !strings.Contains(body, "read-only") {
			t.Errorf("POST %s: %d %q, want 403 read-only", p, code, body)
		}
	}
	if code, _ := b.get("/login"); code != http.StatusNotFound {
		t.Errorf("GET /login on a read-only dashboard: %d", code)
	}
	if st, err := d.Inspector.Stats(ctx, inspect.StatsOptions{Recent: -1}); err != nil || st.Providers[1].Pause != nil {
		t.Errorf("samsar paused by a refused request: %v", err)
	}
}

// Actions need a signed-in session and its CSRF token, from this origin;
// a bearer token works for scripts; the Host must be a loopback name.
func TestActionsNeedCredentialsAndCSRF(t *testing.T) {
	t.Parallel()
	d := startDash(t, dashOptions{auth: dashboard.Auth{Token: testToken}})
	b := d.browser(t)
	pause := "/providers/vimmerse/pause"

	if code, _, _ := b.do("POST", pause, url.Values{}, nil); code != http.StatusUnauthorized {
		t.Errorf("pause without signing in: %d, want 401", code)
	}
	// A wrong token is refused, and many wrong tokens are slowed down.
	code, body := b.get("/login")
	m := csrfField.FindStringSubmatch(body)
	if code != 200 || m == nil {
		t.Fatalf("login form: %d", code)
	}
	if code, h, _ := b.do("POST", "/login", url.Values{"csrf": {m[1]}, "secret": {"wrong-token-000000"}}, nil); code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "failed") {
		t.Errorf("wrong token: %d %s", code, h.Get("Location"))
	}
	if code, _, _ := b.do("POST", "/login", url.Values{"csrf": {"forged"}, "secret": {testToken}}, nil); code != http.StatusForbidden {
		t.Errorf("sign-in without the form's token: %d, want 403", code)
	}
	b.signIn(testToken)
	csrf := b.csrf()

	if code, _, _ := b.do("POST", pause, url.Values{"csrf": {"not-the-token"}}, nil); code != http.StatusForbidden {
		t.Errorf("pause with a wrong CSRF token: %d, want 403", code)
	}
	if code, _, _ := b.do("POST", pause, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "https://evil.example"}); code != http.StatusForbidden {
		t.Errorf("pause from another origin: %d, want 403", code)
	}
	if code, _, _ := b.do("POST", pause, url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
		t.Errorf("pause from a cross-site request: %d, want 403", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	paused := func() bool {
		st, err := d.Inspector.Stats(ctx, inspect.StatsOptions{Recent: -1})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Providers {
			if p.Provider == "vimmerse" {
				return p.Pause != nil
			}
		}
		return false
	}
	if paused() {
		t.Fatal("vimmerse paused by a refused request")
	}
	code, h, _ := b.do("POST", pause, url.Values{"csrf": {csrf}, "reason": {"budget review"}, "back": {"/?x=1"}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/?x=1" {
		t.Fatalf("pause: %d %v", code, h)
	}
	if !paused() {
		t.Fatal("vimmerse not paused")
	}
	if _, body := b.get("/"); !strings.Contains(body, "vimmerse paused") || !strings.Contains(body, "budget review (token)") {
		t.Errorf("no flash or reason after pausing:\n%s", body)
	}
	// The redirect after an action stays on this site.
	if code, h, _ := b.do("POST", "/providers/vimmerse/resume", url.Values{"csrf": {csrf}, "back": {"//evil.example/x"}}, nil); code != http.StatusSeeOther || h.Get("Location") != "/" {
		t.Errorf("resume with an off-site back: %d %q", code, h.Get("Location"))
	}
	if paused() {
		t.Error("vimmerse still paused")
	}

	// A script with the token as a bearer credential, no cookie.
	script := d.browser(t)
	if code, _, body := script.do("POST", pause, nil, map[string]string{"Authorization": "Bearer " + testToken}); code != 200 || !strings.Contains(body, "paused") {
		t.Errorf("bearer pause: %d %q", code, body)
	}
	if code, _, _ := script.do("POST", "/providers/vimmerse/resume", nil, map[string]string{"Authorization": "Bearer wrong"}); code != http.StatusUnauthorized {
		t.Errorf("bearer with a wrong token: %d", code)
	}
	// Basic credentials are never taken from the header (a browser resends
	// them on its own).
	if code, _, _ := script.do("POST", "/providers/vimmerse/resume", nil, map[string]string{"Authorization": "Basic dG9rZW46" + testToken}); code != http.StatusUnauthorized {
		t.Errorf("basic header: %d, want 401", code)
	}

	// DNS rebinding: a page whose name points at 127.0.0.1 is not answered.
	if code, _, _ := b.do("GET", "/", nil, map[string]string{"Host": "rebind.evil.example"}); code != http.StatusMisdirectedRequest {
		t.Errorf("foreign Host: %d, want 421", code)
	}
	if code, _, _ := b.do("GET", "/", nil, map[string]string{"Host": "localhost:8090"}); code != 200 {
		t.Errorf("Host localhost: %d", code)
	}

	// Sign out ends the session.
	if code, _, _ := b.do("POST", "/logout", url.Values{"csrf": {csrf}}, nil); code != http.StatusSeeOther {
		t.Errorf("logout: %d", code)
	}
	if code, _, _ := b.do("POST", "/providers/vimmerse/resume", url.Values{"csrf": {csrf}}, nil); code != http.StatusUnauthorized {
		t.Errorf("resume after signing out: %d", code)
	}
}

// Users from a basic-auth file sign in through the form (plain and bcrypt
// passwords); with AuthRead nothing is shown before.
func TestBasicAuthUsersAndAuthRead(t *testing.T) {
	t.Parallel()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-bcrypt-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{"ana": "plain-pass-123456", "bo": string(hash)}
	d := startDash(t, dashOptions{auth: dashboard.Auth{Users: users}, authRead: true})
	b := d.browser(t)
	if code, h, _ := b.do("GET", "/batches/x", nil, nil); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login?back=") {
		t.Errorf("a page before signing in: %d %v", code, h.Get("Location"))
	}
	if code, _ := b.get("/live?view=overview"); code != http.StatusUnauthorized {
		t.Errorf("live before signing in: %d", code)
	}
	if code, _ := b.get("/static/app.css"); code != 200 {
		t.Errorf("assets before signing in: %d", code)
	}
	for user, pw := range map[string]string{"ana": "plain-pass-123456", "bo": "s3cret-bcrypt-pass"} {
		u := d.browser(t)
		_, body := u.get("/login")
		m := csrfField.FindStringSubmatch(body)
		if m == nil || !strings.Contains(body, `name="user"`) {
			t.Fatalf("login form without a user field:\n%s", body)
		}
		if code, h, _ := u.do("POST", "/login", url.Values{"csrf": {m[1]}, "user": {user}, "secret": {pw}, "back": {"/dlq"}}, nil); code != http.StatusSeeOther || h.Get("Location") != "/dlq" {
			t.Errorf("sign in as %s: %d %v", user, code, h.Get("Location"))
		}
		if code, body := u.get("/dlq"); code != 200 || !strings.Contains(body, user+" · sign out") {
			t.Errorf("as %s: %d", user, code)
		}
	}
	u := d.browser(t)
	_, body := u.get("/login")
	m := csrfField.FindStringSubmatch(body)
	if code, h, _ := u.do("POST", "/login", url.Values{"csrf": {m[1]}, "user": {"ana"}, "secret": {"s3cret-bcrypt-pass"}}, nil); code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "failed") {
		t.Errorf("ana with bo's password: %d %v", code, h.Get("Location"))
	}
}

// An archived output streams whole or by range, as its type; the bytes
// are the archived copy's.
func TestOutputRanges(t *testing.T) {
	t.Parallel()
	d := startDash(t, dashOptions{worker: &reelqtest.WorkerOptions{Archive: true, Providers: map[string]reelqtest.Settings{"samsar": {}}},
		knobs: map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond)}}})
	d.Enqueue(samsarJobs("media", 1)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := d.Client.Wait(ctx, "media-01")
	if err != nil || r.Status != reelq.StatusSucceeded || len(r.Outputs) == 0 || r.Outputs[0].Archive == nil {
		t.Fatalf("result %+v %v", r, err)
	}
	cp := *r.Outputs[0].Archive
	file := filepath.Join(t.TempDir(), "out.mp4")
	if _, err := d.Inspector.DownloadOutput(ctx, cp, file, nil); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(whole)) != cp.Size || !bytes.HasPrefix(whole[4:], []byte("ftyp")) {
		t.Fatalf("archived copy: %d bytes, want %d of MP4", len(whole), cp.Size)
	}
	b := d.browser(t)
	path := "/jobs/media-01/outputs/1"
	code, h, body := b.do("GET", path, nil, nil)
	if code != 200 || body != string(whole) || h.Get("Content-Type") != "video/mp4" || h.Get("Accept-Ranges") != "bytes" {
		t.Errorf("whole: %d %d bytes %v", code, len(body), h)
	}
	for rng, want := range map[string][2]int64{"bytes=0-99": {0, 99}, "bytes=100-": {100, cp.Size - 1}, "bytes=-50": {cp.Size - 50, cp.Size - 1}, "bytes=10-999999": {10, cp.Size - 1}} {
		code, h, body := b.do("GET", path, nil, map[string]string{"Range": rng})
		if code != http.StatusPartialContent || body != string(whole[want[0]:want[1]+1]) {
			t.Errorf("%s: %d, %d bytes (want %d-%d)", rng, code, len(body), want[0], want[1])
		}
		if cr := h.Get("Content-Range"); !strings.HasPrefix(cr, "bytes ") {
			t.Errorf("%s: Content-Range %q", rng, cr)
		}
	}
	if code, _, _ := b.do("GET", path, nil, map[string]string{"Range": "bytes=999999-"}); code != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("range past the end: %d", code)
	}
	if code, _, _ := b.do("GET", "/jobs/media-01/outputs/2", nil, nil); code != http.StatusNotFound {
		t.Errorf("missing output: %d", code)
	}
	_, page := b.get("/jobs/media-01")
	if !strings.Contains(page, `<video controls preload="metadata" playsinline src="/jobs/media-01/outputs/1"`) {
		t.Errorf("job page without its video:\n%s", page)
	}
	if !strings.Contains(page, "Checked as media: video/mp4") || strings.Contains(page, "Failed its media check") {
		t.Errorf("job page without the passed media check:\n%s", page)
	}
	// An output that fails its check says so, with its code and words.
	if err := d.Sim.SetKnobs("samsar", providersim.Knobs{CompleteAfter: providersim.Duration(50 * time.Millisecond), OutputBroken: providersim.BrokenHTML}); err != nil {
		t.Fatal(err)
	}
	d.Enqueue(samsarJobs("broken", 1)...)
	if r, err := d.Client.Wait(ctx, "broken-01"); err != nil || r.Status != reelq.StatusFailed {
		t.Fatalf("broken-01: %+v %v, want failed", r, err)
	}
	_, page = b.get("/jobs/broken-01")
	if !strings.Contains(page, "Failed its media check: <code>not_media</code> the body is an HTML page") {
		t.Errorf("job page without the failed media check:\n%s", page)
	}
}

// No page, fragment or log line shows a provider API key, the NATS
// credentials or the dashboard's own credential.
func TestNoSecretsInPages(t *testing.T) {
	t.Parallel()
	d := startDash(t, dashOptions{auth: dashboard.Auth{Token: testToken},
		worker: &reelqtest.WorkerOptions{Archive: true, Providers: map[string]reelqtest.Settings{"samsar": {}}}})
	d.Enqueue(samsarJobs("sec", 2)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.Client.Wait(ctx, "sec-02"); err != nil {
		t.Fatal(err)
	}
	b := d.browser(t)
	b.signIn(testToken)
	secrets := []string{testToken}
	for _, p := range all.Names() {
		secrets = append(secrets, reelqtest.APIKey(p))
	}
	for _, p := range []string{"/", "/batches/sec", "/jobs", "/jobs/sec-01", "/dlq", "/login"} {
		_, body := b.get(p)
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("%s shows a secret", p)
			}
		}
	}
}

// The sign-in throttle holds when wrong passwords arrive at once: with
// bcrypt each check takes tens of milliseconds, and 40 concurrent
// attempts get at most the limit's 5 plus one a second checked; the rest
// are refused with 429. (Before, every attempt sent at once saw tokens
// left, all 40 were checked, and only then counted.)
func TestSignInThrottleHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-bcrypt-pass"), 8)
	if err != nil {
		t.Fatal(err)
	}
	d := startDash(t, dashOptions{auth: dashboard.Auth{Users: map[string]string{"bo": string(hash)}}})
	b := d.browser(t)
	_, body := b.get("/login")
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no sign-in form")
	}
	form := url.Values{"csrf": {m[1]}, "user": {"bo"}, "secret": {"wrong"}}.Encode()
	const n = 40
	codes := make(chan int, n)
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", d.URL+"/login", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := b.http.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			_ = resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	allowed := 5 + int(elapsed/time.Second) + 1
	if got[http.StatusSeeOther] > allowed || got[http.StatusSeeOther]+got[http.StatusTooManyRequests] != n {
		t.Errorf("40 concurrent wrong passwords in %v: %v (303: checked, 429: refused); want at most %d checked", elapsed, got, allowed)
	}
}

// Bad input is the client's error, never the dashboard's: a name that is
// not one answers 400, a name nothing has 404 (and an action the job's
// state does not allow 409); 500 is kept for the dashboard's own
// failures. (Before, an unknown provider's pause, dead letter 0 and a
// DLQ cursor past the last sequence answered 500, and a malformed id 409.)
func TestBadInputsAreClientErrors(t *testing.T) {
	t.Parallel()
	d := startDash(t, dashOptions{auth: dashboard.Auth{Token: testToken}})
	b := d.browser(t)
	for path, want := range map[string]int{
		"/dlq?after=18446744073709551615": http.StatusOK, // past the end: an empty page
		"/dlq?after=99999999999999999999": http.StatusBadRequest,
		"/dlq?after=abc":                  http.StatusBadRequest,
		"/jobs/bad.id":                    http.StatusBadRequest,
		"/jobs/nope":                      http.StatusNotFound,
		"/jobs/nope/outputs/0":            http.StatusNotFound,
		"/batches/a.b":                    http.StatusBadRequest,
	} {
		if code, body := b.get(path); code != want {
			t.Errorf("GET %s: %d, want %d\n%.300s", path, code, want, body)
		}
	}
	bearer := map[string]string{"Authorization": "Bearer " + testToken}
	for path, want := range map[string]int{
		"/providers/runway/pause":  http.StatusNotFound,
		"/providers/runway/resume": http.StatusNotFound,
		"/jobs/bad.id/cancel":      http.StatusBadRequest,
		"/jobs/bad.id/retry":       http.StatusBadRequest,
		"/jobs/nope/retry":         http.StatusNotFound,
		"/batches/a.b/cancel":      http.StatusBadRequest,
		"/dlq/abc/redrive":         http.StatusBadRequest,
		"/dlq/0/redrive":           http.StatusBadRequest,
		"/dlq/99999/redrive":       http.StatusNotFound,
	} {
		if code, _, body := b.do("POST", path, url.Values{}, bearer); code != want {
			t.Errorf("POST %s: %d %q, want %d", path, code, body, want)
		}
	}
}
