package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// ensureBlob makes blobs/sha256/<hex> hold the blob with the given digest
// and size (size < 0: not known), fetching it with open when it is missing or
// fails verification. One caller at a time, across processes, checks or
// fetches a given blob. count, if not nil, is told the bytes fetched so far.
// ensureBlob reports whether it fetched the blob.
func (s *Store) ensureBlob(ctx context.Context, digest string, size int64, open func() (io.ReadCloser, error), count func(done int64)) (bool, error) {
	hx, err := hexOf(digest)
	if err != nil {
		return false, err
	}
	l, err := lockFile(ctx, s.path("locks", "blob-"+hx+".lock"), unix.LOCK_EX)
	if err != nil {
		return false, err
	}
	defer l.unlock()

	ok, err := s.verifyBlob(hx, size)
	if err != nil || ok {
		return false, err
	}
	rc, err := open()
	if err != nil {
		return false, fmt.Errorf("fetch blob %s: %w", digest, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(s.path("tmp"), "blob-"+hx[:12]+"-")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed

	h := sha256.New()
	src := io.Reader(&ctxReader{ctx: ctx, r: rc})
	if count != nil {
		src = &countingReader{r: src, report: count}
	}
	n, err := io.Copy(io.MultiWriter(f, h), src)
	if err != nil {
		f.Close()
		return false, fmt.Errorf("fetch blob %s: %w", digest, err)
	}
	if size >= 0 && n != size {
		f.Close()
		return false, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("blob %s has %d bytes, its descriptor says %d", digest, n, size))
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		f.Close()
		return false, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("blob %s failed verification: its content has digest %s", digest, got))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, s.blobPath(hx)); err != nil {
		return false, err
	}
	return true, syncDir(s.path("blobs", "sha256"))
}

// verifyBlob reports whether the stored blob hx exists, has size bytes (when
// size >= 0) and matches its digest. A blob that fails is removed.
func (s *Store) verifyBlob(hx string, size int64) (bool, error) {
	p := s.blobPath(hx)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return false, fmt.Errorf("verify blob sha256:%s: %w", hx, err)
	}
	if (size >= 0 && n != size) || hex.EncodeToString(h.Sum(nil)) != hx {
		// Damaged (a crash of something that bypassed the rename, a disk
		// error, a person): drop it so that it is fetched again.
		if err := os.Remove(p); err != nil {
			return false, err
		}
		return false, nil
	}
	return true, nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// countingReader reports the running total of bytes read.
type countingReader struct {
	r      io.Reader
	n      int64
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		c.report(c.n)
	}
	return n, err
}
