package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/dashboard"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
)

// testToken signs in to act in the tests.
const testToken = "dash-token-7f3c2a9e41b8d605"

// dash is a dashboard served over real HTTP against a real JetStream
// server, simulator and worker.
type dash struct {
	*reelqtest.Env
	URL    string
	Server *dashboard.Server
	Client *reelq.Client
}

type dashOptions struct {
	knobs    map[string]providersim.Knobs
	worker   *reelqtest.WorkerOptions // nil: no worker
	auth     dashboard.Auth
	authRead bool
}

func startDash(t testing.TB, o dashOptions) *dash {
	t.Helper()
	env := reelqtest.New(t, o.knobs)
	if o.worker != nil {
		env.StartWorker(*o.worker)
	}
	nc, _ := natstest.Connect(t, env.Server)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := reelq.NewClient(ctx, nc, reelq.Options{ProviderEnv: map[string]string{}, By: "dashboard", ConsumerPrefix: "dashboard"})
	if err != nil {
		t.Fatal(err)
	}
	ins, err := inspect.New(ctx, nc, reelq.Options{By: "dashboard", ConsumerPrefix: "dashboard"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := dashboard.New(dashboard.Config{Client: c, Inspector: ins, NC: nc, Logger: log, Auth: o.auth, AuthRead: o.authRead, ListenHost: "127.0.0.1",
		NATSServer: env.Server.ClientURL(), Version: "test", MinInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	hs := httptest.NewUnstartedServer(d)
	hs.Config.BaseContext = nil
	hs.Start()
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		stop()
		if err := <-done; err != nil {
			t.Errorf("dashboard run: %v", err)
		}
	})
	return &dash{Env: env, URL: hs.URL, Server: d, Client: c}
}

// browser is an HTTP client with a cookie jar, as a person's browser.
type browser struct {
	t    testing.TB
	d    *dash
	http *http.Client
}

func (d *dash) browser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, d: d, http: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values, hdr map[string]string) (int, http.Header, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.d.URL+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(data)
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	code, _, body := b.do("GET", path, nil, nil)
	return code, body
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs in with the token through the form.
func (b *browser) signIn(secret string) {
	b.t.Helper()
	code, body := b.get("/login")
	m := csrfField.FindStringSubmatch(body)
	if code != 200 || m == nil {
		b.t.Fatalf("sign-in form: %d %s", code, body)
	}
	code, h, _ := b.do("POST", "/login", url.Values{"csrf": {m[1]}, "secret": {secret}, "back": {"/"}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/" {
		b.t.Fatalf("sign in: %d %v", code, h)
	}
}

// csrf is the session's token, read from a page's forms.
func (b *browser) csrf() string {
	b.t.Helper()
	_, body := b.get("/")
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("no CSRF token on the page (not signed in?)")
	}
	return m[1]
}

func samsarJobs(batch string, n int) []reelq.Job {
	out := make([]reelq.Job, n)
	for i := range out {
		out[i] = reelqtest.SamsarJob(fmt.Sprintf("%s-%02d", batch, i+1))
		out[i].Batch = batch
	}
	return out
}
