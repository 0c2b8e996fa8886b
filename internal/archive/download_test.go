package archive

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDownload(t *testing.T) {
	stores(t, func(t *testing.T, st Store) {
		ctx := testCtx(t)
		data := payload(50, 2<<20+3)
		c, err := st.Put(ctx, Key("job-d", 1, 0), bytes.NewReader(data), int64(len(data)), "video/mp4")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		path := filepath.Join(dir, FileName("job-d", 1, c.ContentType))
		if filepath.Base(path) != "job-d-1.mp4" {
			t.Errorf("file name %s", path)
		}

		skipped, err := Download(ctx, st, c, path)
		if err != nil || skipped {
			t.Fatalf("download: skipped %v, %v", skipped, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
			t.Fatalf("file has %d bytes, want %d", len(got), len(data))
		}

		// A complete file is skipped without reading the store: it works
		// even with the object gone.
		if err := st.Delete(ctx, c.Key); err != nil {
			t.Fatal(err)
		}
		if skipped, err := Download(ctx, st, c, path); err != nil || !skipped {
			t.Errorf("complete file: skipped %v, %v", skipped, err)
		}
		// With the object gone, a missing file cannot be had.
		if _, err := Download(ctx, st, c, filepath.Join(dir, "other.mp4")); !errors.Is(err, ErrNotFound) {
			t.Errorf("expired object: %v, want ErrNotFound", err)
		}

		// A partial file, or one with the right size and wrong bytes, is
		// replaced.
		if c, err = st.Put(ctx, c.Key, bytes.NewReader(data), int64(len(data)), "video/mp4"); err != nil {
			t.Fatal(err)
		}
		for _, old := range [][]byte{data[:1000], make([]byte, len(data))} {
			if err := os.WriteFile(path, old, 0o644); err != nil {
				t.Fatal(err)
			}
			if skipped, err := Download(ctx, st, c, path); err != nil || skipped {
				t.Fatalf("partial file: skipped %v, %v", skipped, err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
				t.Fatalf("replaced file has %d bytes", len(got))
			}
		}

		// A copy whose hash or size does not match the stored bytes fails
		// and leaves neither the file nor a temporary file.
		bad := c
		bad.SHA256 = strings.Repeat("0", 64)
		badPath := filepath.Join(dir, "bad.mp4")
		if _, err := Download(ctx, st, bad, badPath); !errors.Is(err, ErrMismatch) {
			t.Errorf("wrong hash: %v, want ErrMismatch", err)
		}
		bad = c
		bad.Size++
		if _, err := Download(ctx, st, bad, badPath); !errors.Is(err, ErrMismatch) {
			t.Errorf("wrong size: %v, want ErrMismatch", err)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "job-d-1.mp4" {
				t.Errorf("left behind: %s", e.Name())
			}
		}

		// A copy from another store is refused.
		other := c
		other.Bucket = "elsewhere"
		if _, err := Download(ctx, st, other, badPath); err == nil || !strings.Contains(err.Error(), "elsewhere") {
			t.Errorf("other bucket: %v", err)
		}

		// A copy without a hash (as S3's Stat returns) is checked by size
		// and never skipped.
		nohash := c
		nohash.SHA256 = ""
		if skipped, err := Download(ctx, st, nohash, path); err != nil || skipped {
			t.Errorf("copy without hash: skipped %v, %v", skipped, err)
		}
	})
}
