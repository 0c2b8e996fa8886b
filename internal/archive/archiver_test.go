package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/media"
)

// fastRetry retries quickly, for tests.
var fastRetry = Retry{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Budget: 5 * time.Second}

func archiver(t testing.TB, st Store, o Options) *Archiver {
	t.Helper()
	if o.Fetcher == nil {
		o.Fetcher = fetcher(t, FetchConfig{})
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Retry == (Retry{}) {
		o.Retry = fastRetry
	}
	a, err := NewArchiver(st, o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// counted wraps h and counts its requests.
func counted(h http.HandlerFunc) (http.HandlerFunc, *atomic.Int32) {
	var n atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}, &n
}

// objects returns how many objects st holds.
func objects(t *testing.T, st Store) int {
	t.Helper()
	ctx := testCtx(t)
	switch s := st.(type) {
	case *JetStreamStore:
		list, err := s.obs.List(ctx)
		if errors.Is(err, jetstream.ErrNoObjectsFound) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	case *S3Store:
		n := 0
		for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			n++
		}
		return n
	}
	t.Fatalf("unknown store %T", st)
	return 0
}

func TestArchive(t *testing.T) {
	stores(t, func(t *testing.T, st Store) {
		ctx := testCtx(t)
		a := archiver(t, st, Options{})
		data := payload(10, 3<<20+17)

		// With a Content-Length and a content type.
		srv := source(t, serveBytes(data, "video/mp4"))
		c, err := a.Archive(ctx, Key("job-a", 1, 0), srv.URL+"/out?sig=1")
		if err != nil {
			t.Fatal(err)
		}
		want := Copy{Store: st.Name(), Bucket: st.Bucket(), Key: "job-a/1/0", Size: int64(len(data)), ContentType: "video/mp4", SHA256: sha(data)}
		// The bytes were inspected on the way: all of them, and they are
		// no media.
		if m := c.Media; m == nil || m.Bytes != int64(len(data)) || m.DeclaredType != "video/mp4" || m.Kind != media.Unknown {
			t.Fatalf("media %+v, want %d bytes of unknown kind served as video/mp4", m, len(data))
		}
		c.Media = nil
		if c != want {
			t.Fatalf("copy %+v, want %+v", c, want)
		}
		if !bytes.Equal(readAll(t, st, c.Key), data) {
			t.Fatal("stored bytes differ")
		}

		// Without a Content-Length, type from the extension.
		chunked := source(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			serveChunked(data[:100_000], "application/octet-stream")(w, r)
		}))
		c, err = a.Archive(ctx, Key("job-a", 1, 1), chunked.URL+"/files/voice.wav")
		if err != nil {
			t.Fatal(err)
		}
		if c.Size != 100_000 || c.SHA256 != sha(data[:100_000]) || c.ContentType != "audio/wav" {
			t.Errorf("chunked copy %+v", c)
		}
		if st, err := st.Stat(ctx, c.Key); err != nil || st.ContentType != "audio/wav" {
			t.Errorf("stat %+v, %v", st, err)
		}
	})
}

func TestArchiveIdempotent(t *testing.T) {
	stores(t, func(t *testing.T, st Store) {
		ctx := testCtx(t)
		a := archiver(t, st, Options{})
		first, second := payload(20, 1<<20), payload(21, 300_000)
		key := Key("job-i", 1, 0)
		for _, d := range [][]byte{first, second} {
			if _, err := a.Archive(ctx, key, source(t, serveBytes(d, "video/mp4")).URL); err != nil {
				t.Fatal(err)
			}
		}
		if n := objects(t, st); n != 1 {
			t.Errorf("%d objects, want 1", n)
		}
		if got := readAll(t, st, key); !bytes.Equal(got, second) {
			t.Errorf("object has %d bytes, want the second content (%d)", len(got), len(second))
		}
		if js, ok := st.(*JetStreamStore); ok {
			// The first object's chunks are purged: the stream holds the
			// second object's chunks and one metadata message.
			info, err := js.stream.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			chunks := (len(second) + DefaultChunkSize - 1) / DefaultChunkSize
			if info.State.Msgs != uint64(chunks+1) {
				t.Errorf("stream holds %d messages, want %d", info.State.Msgs, chunks+1)
			}
		}
	})
}

func TestArchivePermanentErrors(t *testing.T) {
	stores(t, func(t *testing.T, st Store) {
		ctx := testCtx(t)
		for _, tc := range []struct {
			name string
			h    http.HandlerFunc
			max  int64
			want error
		}{
			{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, 0, ErrGone},
			{"410", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }, 0, ErrGone},
			{"403", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) }, 0, ErrGone},
			{"too large by length", serveBytes(payload(1, 5000), "video/mp4"), 4000, ErrTooLarge},
			{"too large by counting", serveChunked(payload(1, 200_000), "video/mp4"), 100_000, ErrTooLarge},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h, hits := counted(tc.h)
				a := archiver(t, st, Options{Fetcher: fetcher(t, FetchConfig{MaxSize: tc.max})})
				key := Key("job-p", 1, 0)
				_, err := a.Archive(ctx, key, source(t, h).URL)
				if !errors.Is(err, tc.want) || !Permanent(err) {
					t.Fatalf("%v, want %v", err, tc.want)
				}
				if hits.Load() != 1 {
					t.Errorf("%d requests, want 1 (no retry)", hits.Load())
				}
				if _, err := st.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
					t.Errorf("stat after failure: %v, want ErrNotFound", err)
				}
			})
		}
		a := archiver(t, st, Options{Fetcher: fetcher(t, FetchConfig{AllowHosts: []string{}})})
		for _, u := range []string{source(t, serveBytes([]byte("x"), "")).URL, "file:///etc/passwd", "http://u:p@example.com/x"} {
			if _, err := a.Archive(ctx, Key("job-u", 1, 0), u); !errors.Is(err, ErrUnsafeURL) {
				t.Errorf("%s: %v, want ErrUnsafeURL", u, err)
			}
		}
	})
}

// flaky fails its first requests in the given ways, then serves data.
func flaky(t *testing.T, data []byte, failures ...string) (http.HandlerFunc, *atomic.Int32) {
	return counted(func(w http.ResponseWriter, r *http.Request) {
		mode := ""
		if i := int(requests(r)); i <= len(failures) {
			mode = failures[i-1]
		}
		switch mode {
		case "503":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "short":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			_, _ = w.Write(data[:len(data)/2])
		case "reset":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			_, _ = w.Write(data[:len(data)/3])
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // close with RST
			}
			conn.Close()
		default:
			serveBytes(data, "video/mp4")(w, r)
		}
	})
}

// requests returns the request's number, set by withNumber.
func requests(r *http.Request) int32 { return r.Context().Value(numberKey{}).(int32) }

type numberKey struct{}

// withNumber numbers the requests to h from 1.
func withNumber(h http.Handler) http.Handler {
	var n atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), numberKey{}, n.Add(1))))
	})
}

func TestArchiveRetriesTransient(t *testing.T) {
	stores(t, func(t *testing.T, st Store) {
		ctx := testCtx(t)
		data := payload(30, 2<<20)
		for _, failures := range [][]string{{"short"}, {"reset"}, {"503", "short", "reset"}} {
			t.Run(strings.Join(failures, "+"), func(t *testing.T) {
				h, hits := flaky(t, data, failures...)
				var logs bytes.Buffer
				a := archiver(t, st, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
				key := Key("job-r", 1, 0)
				c, err := a.Archive(ctx, key, source(t, withNumber(h)).URL+"/o.mp4?token=s3cr3t")
				if err != nil {
					t.Fatal(err)
				}
				if int(hits.Load()) != len(failures)+1 {
					t.Errorf("%d requests, want %d", hits.Load(), len(failures)+1)
				}
				if c.Size != int64(len(data)) || c.SHA256 != sha(data) || !bytes.Equal(readAll(t, st, key), data) {
					t.Errorf("copy %+v does not hold the data", c)
				}
				// One warning per retry, with stable keys and no secret.
				lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
				if len(lines) != len(failures) {
					t.Fatalf("%d log lines, want %d:\n%s", len(lines), len(failures), logs.String())
				}
				for _, l := range lines {
					var rec map[string]any
					if err := json.Unmarshal([]byte(l), &rec); err != nil {
						t.Fatal(err)
					}
					for _, k := range []string{"key", "url", "attempt", "retry_in", "error"} {
						if _, ok := rec[k]; !ok {
							t.Errorf("log %s lacks %q", l, k)
						}
					}
					if strings.Contains(l, "s3cr3t") {
						t.Errorf("log leaks the query: %s", l)
					}
				}
			})
		}
	})
}

func TestArchiveRetriesUpload(t *testing.T) {
	// The S3 server fails the first upload; Archive downloads again and
	// uploads again.
	var puts atomic.Int32
	st := s3StoreWith(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && puts.Add(1) == 1 {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>try later</Message></Error>`)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	data := payload(31, 100_000)
	h, hits := counted(serveBytes(data, "video/mp4"))
	c, err := archiver(t, st, Options{}).Archive(testCtx(t), Key("job-u", 1, 0), source(t, h).URL)
	if err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 2 || puts.Load() < 2 || c.SHA256 != sha(data) {
		t.Errorf("%d downloads, %d uploads, copy %+v", hits.Load(), puts.Load(), c)
	}
	if !bytes.Equal(readAll(t, st, c.Key), data) {
		t.Error("stored bytes differ")
	}
}

func TestArchiveRetryBudget(t *testing.T) {
	st := jsStore(t)
	ctx := testCtx(t)
	h, hits := counted(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	srv := source(t, h)

	// The budget ends the retries (Archive returns, well before ctx's
	// end) after a few: 1 s leaves room for three 20 ms apart on a busy
	// host.
	a := archiver(t, st, Options{Retry: Retry{Initial: 20 * time.Millisecond, Max: 20 * time.Millisecond, Budget: time.Second}})
	_, err := a.Archive(ctx, Key("job-b", 1, 0), srv.URL)
	if err == nil || Permanent(err) || !strings.Contains(err.Error(), "status 502") {
		t.Fatalf("%v", err)
	}
	if hits.Load() < 3 {
		t.Errorf("%d requests within the retry budget, want >= 3", hits.Load())
	}

	hits.Store(0)
	a = archiver(t, st, Options{Retry: Retry{Initial: time.Millisecond, Budget: time.Minute, Attempts: 2}})
	if _, err := a.Archive(ctx, Key("job-b", 1, 0), srv.URL); err == nil || !strings.Contains(err.Error(), "2 attempts") {
		t.Errorf("%v", err)
	}
	if hits.Load() != 2 {
		t.Errorf("%d requests, want 2", hits.Load())
	}

	// Cancelling ends the retries; the error says why and what failed last.
	retrying := make(chan struct{}, 1)
	a = archiver(t, st, Options{
		Retry:  Retry{Initial: time.Hour, Budget: 2 * time.Hour},
		Logger: slog.New(signalHandler{retrying}),
	})
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := a.Archive(cctx, Key("job-b", 1, 0), srv.URL); done <- err }()
	<-retrying // the first attempt failed; Archive now waits an hour to retry
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "status 502") {
		t.Errorf("cancelled: %v", err)
	}
}

func TestArchiveSlots(t *testing.T) {
	st := jsStore(t)
	ctx := testCtx(t)
	h, hits := counted(serveBytes([]byte("data"), "text/plain"))
	srv := source(t, h)
	slots := NewSlots(1)
	a := archiver(t, st, Options{Slots: slots})

	release, err := slots.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := a.Archive(short, Key("job-s", 1, 0), srv.URL); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with the only slot taken: %v", err)
	}
	if hits.Load() != 0 {
		t.Errorf("fetched without a slot")
	}
	release()
	release() // a second release is harmless
	if _, err := a.Archive(ctx, Key("job-s", 1, 0), srv.URL); err != nil {
		t.Fatal(err)
	}
	// The slot came back.
	r2, err := slots.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2()
}

// recordBandwidth records WaitN calls.
type recordBandwidth struct {
	mu       sync.Mutex
	total    int
	largest  int
	sawCalls int
}

func (b *recordBandwidth) WaitN(ctx context.Context, n int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += n
	b.largest = max(b.largest, n)
	b.sawCalls++
	return ctx.Err()
}

func TestArchiveBandwidth(t *testing.T) {
	st := jsStore(t)
	ctx := testCtx(t)
	data := payload(40, 1<<20)
	srv := source(t, serveBytes(data, "video/mp4"))

	rec := &recordBandwidth{}
	if _, err := archiver(t, st, Options{Bandwidth: rec}).Archive(ctx, Key("job-w", 1, 0), srv.URL); err != nil {
		t.Fatal(err)
	}
	if rec.total != len(data) || rec.largest > BandwidthChunk || rec.sawCalls < len(data)/BandwidthChunk {
		t.Errorf("WaitN saw %d bytes in %d calls, largest %d", rec.total, rec.sawCalls, rec.largest)
	}

	// The in-process limiter: 1 MiB at 4 MiB/s with a burst of 0.1 s
	// cannot take less than 0.15 s.
	start := time.Now()
	if _, err := archiver(t, st, Options{Bandwidth: NewBandwidth(4 << 20)}).Archive(ctx, Key("job-w", 1, 1), srv.URL); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("1 MiB at 4 MiB/s took %v", d)
	}
	// WaitN takes any n, and stops when ctx ends.
	bw := NewBandwidth(1 << 20)
	if err := bw.WaitN(ctx, 100_000); err != nil {
		t.Error(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := bw.WaitN(cctx, 10<<20); err == nil {
		t.Error("WaitN ignored a cancelled context")
	}
}

func TestNewArchiverErrors(t *testing.T) {
	if _, err := NewArchiver(nil, Options{}); err == nil {
		t.Error("nil store accepted")
	}
	if _, err := NewArchiver(&S3Store{}, Options{}); err == nil {
		t.Error("missing fetcher accepted")
	}
}

// signalHandler is a slog.Handler that signals each record on ch.
type signalHandler struct{ ch chan struct{} }

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(context.Context, slog.Record) error {
	select {
	case h.ch <- struct{}{}:
	default:
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }
