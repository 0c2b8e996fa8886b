package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// get downloads url with f and returns the body and the error of Get or
// of reading.
func get(t *testing.T, f *Fetcher, url string) ([]byte, error) {
	t.Helper()
	r, err := f.Get(testCtx(t), url)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestFetchNormal(t *testing.T) {
	data := payload(1, 100_000)
	srv := source(t, serveBytes(data, "video/mp4"))
	f := fetcher(t, FetchConfig{})
	r, err := f.Get(testCtx(t), srv.URL+"/a/out.mp4?sig=secret")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size != int64(len(data)) || r.ContentType != "video/mp4" || r.Path != "/a/out.mp4" {
		t.Errorf("response %+v", r)
	}
	if strings.Contains(r.URL, "secret") {
		t.Errorf("URL %q keeps the query", r.URL)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if r.Err() != nil {
		t.Errorf("Err after clean end: %v", r.Err())
	}
}

func TestFetchStatusClasses(t *testing.T) {
	f := fetcher(t, FetchConfig{})
	for _, tc := range []struct {
		code      int
		want      error
		permanent bool
	}{
		{404, ErrGone, true},
		{410, ErrGone, true},
		{403, ErrGone, true},
		{400, ErrRejected, true},
		{401, ErrRejected, true},
		{500, nil, false},
		{503, nil, false},
		{429, nil, false},
		{408, nil, false},
	} {
		srv := source(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", tc.code)
		}))
		_, err := get(t, f, srv.URL+"/x?token=abc")
		if err == nil {
			t.Fatalf("%d: no error", tc.code)
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%d: %v, want %v", tc.code, err, tc.want)
		}
		if Permanent(err) != tc.permanent {
			t.Errorf("%d: Permanent(%v) = %v", tc.code, err, !tc.permanent)
		}
		if !strings.Contains(err.Error(), fmt.Sprint(tc.code)) || strings.Contains(err.Error(), "abc") {
			t.Errorf("%d: error %q should name the status and not the query", tc.code, err)
		}
	}
}

func TestFetchURLRules(t *testing.T) {
	srv := source(t, serveBytes([]byte("ok"), "text/plain"))
	host := strings.TrimPrefix(srv.URL, "http://")
	_, port, _ := net.SplitHostPort(host)

	strict := fetcher(t, FetchConfig{AllowHosts: []string{}})
	for _, u := range []string{
		srv.URL,                          // loopback address
		"http://localhost:" + port + "/", // a name that resolves to loopback
		"ftp://" + host + "/x",
		"file:///etc/passwd",
		"http://user:pw@" + host + "/",
		"http:///nohost",
		"gopher://" + host,
		"http://[::1]:" + port + "/",
		"http://0.0.0.0:" + port + "/",
	} {
		_, err := get(t, strict, u)
		if !errors.Is(err, ErrUnsafeURL) || !Permanent(err) {
			t.Errorf("%s: %v, want ErrUnsafeURL", u, err)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("%s: error %q keeps the password", u, err)
		}
	}

	// Explicit allows: by address, by prefix, by name, or all private.
	for _, c := range []FetchConfig{
		{AllowHosts: []string{"127.0.0.1"}},
		{AllowHosts: []string{"127.0.0.0/8"}},
		{AllowPrivate: true},
	} {
		if b, err := get(t, fetcher(t, c), srv.URL); err != nil || string(b) != "ok" {
			t.Errorf("%+v: %q, %v", c, b, err)
		}
	}
	byName := fetcher(t, FetchConfig{AllowHosts: []string{"LOCALHOST"}})
	if b, err := get(t, byName, "http://127.0.0.1:"+port+"/"); err == nil {
		t.Errorf("allowing a name allowed a bare address: %q", b)
	}
	// localhost may resolve to ::1 first, where the server does not
	// listen; the dialer then tries 127.0.0.1.
	if b, err := get(t, byName, "http://localhost:"+port+"/"); err != nil || string(b) != "ok" {
		t.Errorf("allowed by name: %q, %v", b, err)
	}
	if _, err := NewFetcher(FetchConfig{AllowHosts: []string{"10.0.0.0/33"}}); err == nil {
		t.Error("bad prefix accepted")
	}
	if _, err := NewFetcher(FetchConfig{AllowHosts: []string{"http://x"}}); err == nil {
		t.Error("URL accepted as a host")
	}
}

func TestInternalAddresses(t *testing.T) {
	for _, tc := range []struct {
		ip     string
		kind   string
		always bool
	}{
		{"127.0.0.1", "loopback", false},
		{"::1", "loopback", false},
		{"10.1.2.3", "private", false},
		{"172.16.0.1", "private", false},
		{"192.168.1.1", "private", false},
		{"fd00::1", "private", false},
		{"169.254.169.254", "link-local", false},
		{"fe80::1", "link-local", false},
		{"100.64.0.1", "carrier-grade NAT", false},
		{"0.0.0.0", "unspecified", true},
		{"::", "unspecified", true},
		{"224.0.0.1", "multicast", true},
		{"ff02::1", "multicast", true},
		{"255.255.255.255", "broadcast", true},
		{"64:ff9b::7f00:1", "NAT64 loopback", false},
		{"2002:a00:1::", "6to4 private", false},
		{"8.8.8.8", "", false},
		{"2606:4700::1111", "", false},
		{"172.32.0.1", "", false},
	} {
		kind, always := internal(netip.MustParseAddr(tc.ip))
		if kind != tc.kind || always != tc.always {
			t.Errorf("%s: %q %v, want %q %v", tc.ip, kind, always, tc.kind, tc.always)
		}
	}
	f := fetcher(t, FetchConfig{AllowPrivate: true})
	if err := f.checkAddr("x", "[::ffff:127.0.0.1]:80"); err != nil {
		t.Errorf("AllowPrivate, mapped loopback: %v", err)
	}
	if err := f.checkAddr("x", "224.0.0.1:80"); !errors.Is(err, ErrUnsafeURL) {
		t.Errorf("AllowPrivate, multicast: %v", err)
	}
	strict := fetcher(t, FetchConfig{AllowHosts: []string{}})
	if err := strict.checkAddr("evil.example", "[::ffff:10.0.0.1]:443"); !errors.Is(err, ErrUnsafeURL) ||
		!strings.Contains(err.Error(), "evil.example resolves to 10.0.0.1") {
		t.Errorf("mapped private: %v", err)
	}
}

func TestFetchRedirects(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/r/{n}", func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscan(r.PathValue("n"), &n)
		if n == 0 {
			_, _ = w.Write([]byte("landed"))
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/r/%d", n-1), http.StatusFound)
	})
	srv := source(t, mux)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	mux.HandleFunc("/to", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("u"), http.StatusFound)
	})
	f := fetcher(t, FetchConfig{AllowHosts: []string{"127.0.0.1"}})

	for n := 0; n <= 3; n++ {
		if b, err := get(t, f, fmt.Sprintf("%s/r/%d", srv.URL, n)); err != nil || string(b) != "landed" {
			t.Errorf("%d redirects: %q, %v", n, b, err)
		}
	}
	if _, err := get(t, f, srv.URL+"/r/4"); !errors.Is(err, ErrUnsafeURL) || !strings.Contains(err.Error(), "more than 3 redirects") {
		t.Errorf("4 redirects: %v", err)
	}
	one := fetcher(t, FetchConfig{AllowHosts: []string{"127.0.0.1"}, MaxRedirects: 1})
	if _, err := get(t, one, srv.URL+"/r/2"); !errors.Is(err, ErrUnsafeURL) {
		t.Errorf("2 redirects with MaxRedirects 1: %v", err)
	}

	// Each redirect's target is checked again: the address it dials (a
	// loopback address not on the allow-list, by address and by name),
	// its scheme and its user info.
	for _, target := range []string{
		"http://127.0.0.2:" + port + "/r/0",
		"http://[::1]:" + port + "/r/0",
		"ftp://127.0.0.1/x",
		"http://u:p@127.0.0.1:" + port + "/r/0",
	} {
		_, err := get(t, f, srv.URL+"/to?u="+target)
		if !errors.Is(err, ErrUnsafeURL) {
			t.Errorf("redirect to %s: %v, want ErrUnsafeURL", target, err)
		}
	}
}

func TestFetchSizeLimit(t *testing.T) {
	data := payload(2, 3000)
	f := fetcher(t, FetchConfig{MaxSize: 2000})

	// By Content-Length, before reading: the handler is not left to send
	// it all.
	srv := source(t, serveBytes(data, "video/mp4"))
	if _, err := f.Get(testCtx(t), srv.URL); !errors.Is(err, ErrTooLarge) || !Permanent(err) {
		t.Errorf("Content-Length over the limit: %v", err)
	}
	// By counting, without a Content-Length.
	chunked := source(t, serveChunked(data, "video/mp4"))
	r, err := f.Get(testCtx(t), chunked.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size != -1 {
		t.Errorf("Size = %d, want -1", r.Size)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, ErrTooLarge) || !errors.Is(r.Err(), ErrTooLarge) {
		t.Errorf("counted over the limit: %v", err)
	}
	// At the limit is fine.
	if b, err := get(t, f, source(t, serveChunked(data[:2000], "video/mp4")).URL); err != nil || len(b) != 2000 {
		t.Errorf("at the limit: %d bytes, %v", len(b), err)
	}
}

func TestFetchTimeouts(t *testing.T) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	// stall sends n bytes, then nothing until the client goes away.
	stall := func(n int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write(make([]byte, n))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		}
	}
	// Idle while reading the body.
	f := fetcher(t, FetchConfig{IdleTimeout: 200 * time.Millisecond, Timeout: time.Minute})
	srv := source(t, stall(10))
	b, err := get(t, f, srv.URL)
	if !errors.Is(err, ErrTimeout) || Permanent(err) || len(b) != 10 || !strings.Contains(err.Error(), "nothing received") {
		t.Errorf("idle body: %d bytes, %v", len(b), err)
	}
	// Idle before the headers.
	noHeaders := source(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	if _, err := get(t, f, noHeaders.URL); !errors.Is(err, ErrTimeout) {
		t.Errorf("idle headers: %v", err)
	}
	// A body that keeps trickling beats the idle timeout but not the
	// overall one.
	trickle := source(t, trickling(stop))
	slow := fetcher(t, FetchConfig{IdleTimeout: 10 * time.Second, Timeout: 300 * time.Millisecond})
	b, err = get(t, slow, trickle.URL)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "not complete within") || len(b) == 0 {
		t.Errorf("overall timeout: %d bytes, %v", len(b), err)
	}
}

func TestFetchSlowBody(t *testing.T) {
	data := payload(3, 8<<10)
	srv := source(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(data); i += 1024 {
			if _, err := w.Write(data[i : i+1024]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			<-tick.C
		}
	}))
	f := fetcher(t, FetchConfig{IdleTimeout: 5 * time.Second})
	if b, err := get(t, f, srv.URL); err != nil || !bytes.Equal(b, data) {
		t.Errorf("slow body: %d bytes, %v", len(b), err)
	}
}

func TestFetchCutShort(t *testing.T) {
	srv := source(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write(make([]byte, 400))
		// Returning with fewer bytes than declared makes the server
		// close the connection.
	}))
	f := fetcher(t, FetchConfig{})
	b, err := get(t, f, srv.URL)
	if err == nil || Permanent(err) || !errors.Is(err, io.ErrUnexpectedEOF) || err == io.ErrUnexpectedEOF {
		t.Errorf("cut short: %d bytes, %v", len(b), err)
	}
	if !strings.Contains(fmt.Sprint(err), "cut short at 400 of 1000 bytes") {
		t.Errorf("error %q", err)
	}
}

// A source that trickles (a byte every 20 ms, 50 B/s) is cut off once a
// rate window has been spent waiting for it, with ErrTooSlow, which is
// not retried. Time the reader spends elsewhere (a slow store, our own
// bandwidth limit) does not count against the source. (Before, a trickle
// that beat the idle timeout held its transfer slot until the overall
// timeout, 30 minutes by default, and then through the retries.)
func TestFetchMinRate(t *testing.T) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	trickle := source(t, trickling(stop))
	f := fetcher(t, FetchConfig{MinRate: 1000, MinRateWindow: 300 * time.Millisecond, IdleTimeout: 10 * time.Second, Timeout: time.Minute})
	b, err := get(t, f, trickle.URL)
	if !errors.Is(err, ErrTooSlow) || !Permanent(err) || len(b) == 0 || !strings.Contains(err.Error(), "the minimum is 1000 bytes/s") {
		t.Errorf("trickle: %d bytes, %v; want ErrTooSlow, permanent", len(b), err)
	}
	// A fast source read slowly by us is not too slow, even against a
	// minimum (1 MiB/s) far above the pace we read at.
	data := payload(4, 64<<10)
	fast := source(t, serveBytes(data, "video/mp4"))
	strict := fetcher(t, FetchConfig{MinRate: 1 << 20, MinRateWindow: 300 * time.Millisecond})
	r, err := strict.Get(testCtx(t), fast.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []byte
	buf := make([]byte, 4<<10)
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("fast source read slowly: %v after %d bytes", err, len(got))
		}
		time.Sleep(25 * time.Millisecond) // the reader's own pace: 160 KiB/s at most, for 0.4 s in all
	}
	if !bytes.Equal(got, data) {
		t.Errorf("read %d of %d bytes", len(got), len(data))
	}
}

// trickling sends a byte every 20 ms until the client goes away or stop
// is closed.
func trickling(stop <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			case <-stop:
				return
			}
		}
	}
}
