package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Download writes the object c describes from store to path and reports
// whether it skipped the work because path already holds it (same size
// and SHA-256; a copy without SHA256 is always downloaded again). It
// writes to a temporary file in path's directory and renames it over path
// only after the size and, when c has one, the SHA-256 match, so path
// never holds a partial or wrong file, and a partial file left there is
// replaced. It fails with ErrMismatch when the stored bytes do not match c
// and with ErrNotFound when the object is gone (expired).
func Download(ctx context.Context, store Store, c Copy, path string) (skipped bool, err error) {
	if store == nil {
		return false, errors.New("archive: Download needs a store")
	}
	if c.Store != store.Name() || c.Bucket != store.Bucket() {
		return false, fmt.Errorf("archive: copy %s is in %s bucket %q, the store is %s bucket %q",
			c.Key, c.Store, c.Bucket, store.Name(), store.Bucket())
	}
	if done, err := complete(path, c); err != nil {
		return false, err
	} else if done {
		return true, nil
	}
	rc, info, err := store.Open(ctx, c.Key)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	if info.Size != c.Size || (c.SHA256 != "" && info.SHA256 != "" && info.SHA256 != c.SHA256) {
		return false, fmt.Errorf("archive: %s/%s: %w: stored object has %d bytes, sha256 %q; copy has %d bytes, sha256 %q",
			c.Bucket, c.Key, ErrMismatch, info.Size, info.SHA256, c.Size, c.SHA256)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.part")
	if err != nil {
		return false, fmt.Errorf("archive: download %s: %w", c.Key, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(ctxReader{ctx, rc}, c.Size+1))
	if err != nil {
		return false, fmt.Errorf("archive: download %s: %w", c.Key, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if n != c.Size || (c.SHA256 != "" && sum != c.SHA256) {
		return false, fmt.Errorf("archive: download %s: %w: got %d bytes, sha256 %s; want %d bytes, sha256 %s",
			c.Key, ErrMismatch, n, sum, c.Size, c.SHA256)
	}
	if err = tmp.Chmod(0o644); err == nil {
		if err = tmp.Sync(); err == nil {
			err = tmp.Close()
		}
	}
	if err != nil {
		return false, fmt.Errorf("archive: download %s: %w", c.Key, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("archive: download %s: %w", c.Key, err)
	}
	return false, nil
}

// complete reports whether path is a regular file of c's size and SHA-256.
func complete(path string, c Copy) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("archive: download %s: %w", c.Key, err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("archive: download %s: %s exists and is not a regular file", c.Key, path)
	}
	if c.SHA256 == "" || fi.Size() != c.Size {
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("archive: download %s: %w", c.Key, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("archive: download %s: %w", c.Key, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == c.SHA256, nil
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
