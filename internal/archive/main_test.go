package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/reelq/reelq/internal/embedded"
)

// fakeS3Env makes the test binary, started again by the benchmark, run an
// S3 server in its own process instead of the tests.
const fakeS3Env = "REELQ_ARCHIVE_FAKES3_BUCKET"

func TestMain(m *testing.M) {
	if bucket := os.Getenv(fakeS3Env); bucket != "" {
		serveFakeS3(bucket)
		return
	}
	goleak.VerifyTestMain(m)
}

// serveFakeS3 runs gofakes3 over TLS on a loopback port, prints its URL
// and serves until stdin closes (the parent ends).
func serveFakeS3(bucket string) {
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	srv := httptest.NewTLSServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	fmt.Println(srv.URL)
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

const testBucket = "reelq-test"

// natsServer starts an embedded JetStream server (internal/embedded, as
// internal/natstest does, without natstest's dependency on the queue
// package) and connects to it; both end with the test.
func natsServer(t testing.TB) jetstream.JetStream {
	t.Helper()
	s, err := embedded.Start(embedded.Options{Name: "archive-test", Listen: "127.0.0.1:-1", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(func() { embedded.Stop(s) })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// jsStore returns a JetStreamStore on a fresh embedded server.
func jsStore(t testing.TB) *JetStreamStore {
	t.Helper()
	js := natsServer(t)
	ctx := testCtx(t)
	if _, err := js.CreateObjectStore(ctx, BucketConfig(1, time.Hour)); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	st, err := NewJetStreamStore(ctx, js, DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// s3Store returns an S3Store on a gofakes3 server behind httptest, with
// credentials from the environment as in production.
func s3Store(t *testing.T) *S3Store { return s3StoreWith(t, nil) }

// s3StoreWith is s3Store with middleware in front of the S3 server.
func s3StoreWith(t *testing.T, wrap func(http.Handler) http.Handler) *S3Store {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	// TLS, as in production: over plain HTTP minio-go signs payloads in
	// aws-chunked encoding with trailers, which gofakes3 does not decode.
	h := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "test-access-key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
	tr := srv.Client().Transport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	st, err := NewS3Store(S3Config{Endpoint: srv.URL, Region: "us-east-1", Bucket: testBucket, PathStyle: true, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// stores runs f for each Store implementation.
func stores(t *testing.T, f func(t *testing.T, st Store)) {
	t.Run("jetstream", func(t *testing.T) { f(t, jsStore(t)) })
	t.Run("s3", func(t *testing.T) { f(t, s3Store(t)) })
}

// testCtx is a hang guard, not a speed bound: TestStore's 17 MiB puts took
// over 60 s under -race on a 2-core machine at load 20.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// payload returns n deterministic pseudo-random bytes.
func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fetcher returns a Fetcher allowed to reach httptest servers on
// 127.0.0.1, closed when the test ends.
func fetcher(t testing.TB, c FetchConfig) *Fetcher {
	t.Helper()
	if c.AllowHosts == nil {
		c.AllowHosts = []string{"127.0.0.1"}
	}
	f, err := NewFetcher(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// serveBytes is a handler serving b with a Content-Length and type ct.
func serveBytes(b []byte, ct string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	}
}

// serveChunked serves b without a Content-Length.
func serveChunked(b []byte, ct string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ct)
		for len(b) > 0 {
			n := min(len(b), 32<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			b = b[n:]
		}
	}
}

// source starts an httptest server with h, closed when the test ends.
func source(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// readAll opens key in st and returns its bytes.
func readAll(t testing.TB, st Store, key string) []byte {
	t.Helper()
	rc, _, err := st.Open(testCtx(t), key)
	if err != nil {
		t.Fatalf("open %s: %v", key, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, rc); err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return buf.Bytes()
}
