package archive

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestKeyAndFileName(t *testing.T) {
	if got := Key("job-1", 2, 0); got != "job-1/2/0" {
		t.Errorf("Key = %q", got)
	}
	for _, tc := range []struct {
		id, ct string
		n      int
		want   string
	}{
		{"job-1", "video/mp4", 0, "job-1-0.mp4"},
		{"job-1", "audio/mpeg", 1, "job-1-1.mp3"},
		{"job-1", "audio/wav; codecs=1", 2, "job-1-2.wav"},
		{"job-1", "", 3, "job-1-3.bin"},
		{"job-1", "application/x-unknown-thing", 3, "job-1-3.bin"},
		// A provider's type never names an active file (before: .htm,
		// .svg, .js, .wasm, .pdf, .xml from the mime table).
		{"job-1", "text/html; charset=utf-8", 4, "job-1-4.bin"},
		{"job-1", "image/svg+xml", 4, "job-1-4.bin"},
		{"job-1", "text/javascript", 4, "job-1-4.bin"},
		{"job-1", "application/wasm", 4, "job-1-4.bin"},
		{"job-1", "application/pdf", 4, "job-1-4.bin"},
		{"job-1", "text/xml", 4, "job-1-4.bin"},
		{"../etc/x", "video/webm", 0, ".._etc_x-0.webm"},
		{"..", "video/mp4", 0, "_..-0.mp4"},
	} {
		if got := FileName(tc.id, tc.n, tc.ct); got != tc.want {
			t.Errorf("FileName(%q, %d, %q) = %q, want %q", tc.id, tc.n, tc.ct, got, tc.want)
		}
	}
}

func TestContentTypeFor(t *testing.T) {
	for _, tc := range []struct{ header, path, want string }{
		{"video/mp4", "/x.bin", "video/mp4"},
		{"Video/MP4; Foo=Bar", "/x", "video/mp4; foo=Bar"},
		{"application/octet-stream", "/out/clip.mp4", "video/mp4"},
		{"", "/out/voice.WAV", "audio/wav"},
		{"", "/out/thing", "application/octet-stream"},
		{"not a type;;", "/a.mp3", "audio/mpeg"},
	} {
		if got := contentTypeFor(tc.header, tc.path); got != tc.want {
			t.Errorf("contentTypeFor(%q, %q) = %q, want %q", tc.header, tc.path, got, tc.want)
		}
	}
}

func TestNewStoreConfig(t *testing.T) {
	ctx := testCtx(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown kind", Config{Kind: "gcs"}, `unknown store kind "gcs"`},
		{"jetstream without connection", Config{}, "needs a JetStream connection"},
		{"s3 without bucket", Config{Kind: "s3"}, "needs a bucket"},
		{"s3 endpoint with path", Config{Kind: "s3", Bucket: "b", S3: S3Config{Endpoint: "https://h/x"}}, "S3.Endpoint"},
		{"s3 endpoint scheme", Config{Kind: "s3", Bucket: "b", S3: S3Config{Endpoint: "ftp://h"}}, "scheme must be http or https"},
		{"s3 https and DisableTLS", Config{Kind: "s3", Bucket: "b", S3: S3Config{Endpoint: "https://h", DisableTLS: true}}, "DisableTLS"},
		{"s3 part size", Config{Kind: "s3", Bucket: "b", S3: S3Config{Endpoint: "h:9000", PartSize: 1 << 20}}, "S3.PartSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := NewStore(ctx, tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewStore: %v, %v; want error containing %q", st, err, tc.want)
			}
		})
	}

	st, err := NewStore(ctx, Config{Kind: "off"}, nil)
	if st != nil || err != nil || (Config{Kind: "off"}).Enabled() {
		t.Errorf("off: %v, %v", st, err)
	}
	st, err = NewStore(ctx, Config{Kind: "s3", Bucket: "b", S3: S3Config{Endpoint: "http://127.0.0.1:1", PathStyle: true}}, nil)
	if err != nil || st.Name() != "s3" || st.Bucket() != "b" {
		t.Errorf("s3: %v, %v", st, err)
	}

	js := natsServer(t)
	if _, err := NewStore(ctx, Config{}, js); err == nil || !strings.Contains(err.Error(), `"reelq_outputs" does not exist`) {
		t.Errorf("missing bucket: %v", err)
	}
	if _, err := NewStore(ctx, Config{Bucket: "a.b"}, js); err == nil || !strings.Contains(err.Error(), "only letters") {
		t.Errorf("bad bucket name: %v", err)
	}
	if _, err := js.CreateObjectStore(ctx, BucketConfig(1, time.Hour)); err != nil {
		t.Fatal(err)
	}
	st, err = NewStore(ctx, Config{Kind: "jetstream"}, js)
	if err != nil || st.Name() != "jetstream" || st.Bucket() != DefaultBucket {
		t.Fatalf("jetstream: %v, %v", st, err)
	}
	if err := st.Check(ctx); err != nil {
		t.Error(err)
	}
}

func TestBucketConfig(t *testing.T) {
	c := BucketConfig(3, 48*time.Hour)
	if c.Bucket != DefaultBucket || c.Replicas != 3 || c.TTL != 48*time.Hour || c.Storage != jetstream.FileStorage {
		t.Errorf("BucketConfig = %+v", c)
	}
	js := natsServer(t)
	ctx := testCtx(t)
	obs, err := js.CreateObjectStore(ctx, BucketConfig(1, 2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	st, err := obs.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != 2*time.Hour {
		t.Errorf("bucket TTL = %v", st.TTL())
	}
}

func TestStore(t *testing.T) {
	stores(t, func(t *testing.T, st Store) {
		ctx := testCtx(t)
		if err := st.Check(ctx); err != nil {
			t.Fatalf("check: %v", err)
		}
		// Sizes: empty, small, and one that crosses S3's 16 MiB part and
		// many JetStream chunks, with known and unknown size.
		for i, n := range []int{0, 1000, 17<<20 + 5} {
			for _, known := range []bool{true, false} {
				data := payload(uint64(i), n)
				key := Key("job", i, 0)
				size := int64(-1)
				if known {
					size = int64(n)
				}
				c, err := st.Put(ctx, key, bytes.NewReader(data), size, "video/mp4")
				if err != nil {
					t.Fatalf("put %d bytes (known %v): %v", n, known, err)
				}
				want := Copy{Store: st.Name(), Bucket: st.Bucket(), Key: key, Size: int64(n), ContentType: "video/mp4", SHA256: sha(data)}
				if c != want {
					t.Fatalf("put = %+v, want %+v", c, want)
				}
				sc, err := st.Stat(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if st.Name() == KindS3 {
					want.SHA256 = "" // S3 keeps no whole-object SHA-256
				}
				if sc != want {
					t.Errorf("stat = %+v, want %+v", sc, want)
				}
				if got := readAll(t, st, key); !bytes.Equal(got, data) {
					t.Errorf("read back %d bytes, want %d", len(got), n)
				}
			}
		}

		// A reader shorter or longer than the declared size stores nothing.
		for _, tc := range []struct {
			n    int
			size int64
			want error
		}{{100, 200, errShort}, {300, 200, errLong}} {
			key := Key("bad", tc.n, 0)
			_, err := st.Put(ctx, key, bytes.NewReader(payload(9, tc.n)), tc.size, "")
			if !errors.Is(err, tc.want) {
				t.Errorf("put %d bytes as %d: %v, want %v", tc.n, tc.size, err, tc.want)
			}
			if _, err := st.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("after failed put of %d bytes as %d: stat %v, want ErrNotFound", tc.n, tc.size, err)
			}
		}

		if _, err := st.Stat(ctx, "nope/0/0"); !errors.Is(err, ErrNotFound) {
			t.Errorf("stat missing: %v", err)
		}
		if _, _, err := st.Open(ctx, "nope/0/0"); !errors.Is(err, ErrNotFound) {
			t.Errorf("open missing: %v", err)
		}
		key := Key("job", 1, 0)
		if err := st.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("stat deleted: %v", err)
		}
		if err := st.Delete(ctx, key); err != nil {
			t.Errorf("delete missing: %v", err)
		}
		if _, err := st.Put(ctx, "", bytes.NewReader(nil), 0, ""); err == nil {
			t.Error("empty key accepted")
		}
	})
}

func TestPutReader(t *testing.T) {
	data := payload(5, 100)
	for _, tc := range []struct {
		n, size int
		want    error
	}{{100, 100, nil}, {100, -1, nil}, {0, 0, nil}, {99, 100, errShort}, {101, 100, errLong}, {1, 0, errLong}} {
		src := bytes.NewReader(payload(5, 101)[:tc.n])
		pr := newPutReader(src, int64(tc.size))
		// Reads of every size, including empty ones, which must not
		// consume anything.
		var got []byte
		var err error
		for i := 0; err == nil; i++ {
			buf := make([]byte, i%7)
			var n int
			n, err = pr.Read(buf)
			got = append(got, buf[:n]...)
		}
		if tc.want == nil {
			if err != io.EOF || !bytes.Equal(got, data[:tc.n]) || pr.sum() != sha(data[:tc.n]) {
				t.Errorf("%d bytes as %d: %d bytes, %v", tc.n, tc.size, len(got), err)
			}
		} else if !errors.Is(err, tc.want) {
			t.Errorf("%d bytes as %d: %v, want %v", tc.n, tc.size, err, tc.want)
		}
	}
}
