package providersim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
)

// clock is a settable time source for the simulator, so tests move a
// task through its states without waiting.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a simulator on a fake clock behind a real HTTP server.
type fixture struct {
	sim   *providersim.Server
	clock *clock
	url   string
	srv   *httptest.Server
}

// close stops the server, waiting for its handlers to finish.
func (f *fixture) close() { f.srv.Close() }

// newFixture starts a simulator whose tasks take 10 s of fake time.
func newFixture(t *testing.T, name string, k providersim.Knobs) *fixture {
	t.Helper()
	if k.CompleteAfter == 0 {
		k.CompleteAfter = providersim.Duration(10 * time.Second)
	}
	s := all.Simulator(map[string]providersim.Knobs{name: k}, 7)
	c := &clock{t: time.Date(2025, 4, 11, 18, 33, 59, 780864000, time.UTC)}
	s.SetNow(c.now)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &fixture{sim: s, clock: c, url: srv.URL, srv: srv}
}

// reply is a simulator answer.
type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (f *fixture) do(t *testing.T, method, path string, header map[string]string, body io.Reader) reply {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

// multipartBody builds a form with fields (repeated keys allowed) and an
// optional file field.
func multipartBody(t *testing.T, fields [][2]string, file, fileName, content string) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	if file != "" {
		fw, err := mw.CreateFormFile(file, fileName)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write([]byte(content))
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf, mw.FormDataContentType()
}

func formBody(fields [][2]string) io.Reader {
	v := url.Values{}
	for _, f := range fields {
		v.Add(f[0], f[1])
	}
	return strings.NewReader(v.Encode())
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func wantStatus(t *testing.T, what string, r reply, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: HTTP %d %s, want %d", what, r.status, r.raw, status)
	}
}
