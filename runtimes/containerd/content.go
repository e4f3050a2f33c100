package containerd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// blob is a piece of content by digest and size.
type blob struct {
	digest string
	size   int64
}

// maxMetadataBlob bounds the manifests and configurations the plugin
// reads into memory.
const maxMetadataBlob = 8 << 20

// readBlob reads a whole (small) blob of namespace ns.
func (d *daemon) readBlob(ctx context.Context, ns, digest string) ([]byte, error) {
	var buf bytes.Buffer
	if err := d.copyBlob(ctx, ns, digest, &limitWriter{w: &buf, n: maxMetadataBlob}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// readJSON reads a blob of namespace ns into v.
func (d *daemon) readJSON(ctx context.Context, ns, digest string, v any) error {
	b, err := d.readBlob(ctx, ns, digest)
	if err != nil {
		return fmt.Errorf("read %s: %w", digest, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("blob %s: %v", digest, err))
	}
	return nil
}

// copyBlob streams a blob of namespace ns to w.
func (d *daemon) copyBlob(ctx context.Context, ns, digest string, w io.Writer) error {
	s, err := d.content.Read(inNamespace(ctx, ns), &contentapi.ReadContentRequest{Digest: digest})
	if err != nil {
		return err
	}
	for {
		msg, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := w.Write(msg.Data); err != nil {
			return err
		}
	}
}

type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errdefs.New(errdefs.ErrInvalidArgument, "blob larger than the plugin reads into memory")
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// hasBlob reports whether namespace ns has the blob.
func (d *daemon) hasBlob(ctx context.Context, ns, digest string) (bool, error) {
	_, err := d.content.Info(inNamespace(ctx, ns), &contentapi.InfoRequest{Digest: digest})
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// writeLocks keeps two writers of one blob in one namespace apart (the
// daemon refuses a second writer of a ref).
var writeLocks keyedMutex

// writeBlob stores what open returns as blob b in namespace ns (ctx
// carries the namespace's lease), with labels; content already there is
// left as it is.
func (d *daemon) writeBlob(ctx context.Context, ns string, b blob, labels map[string]string, open func() (io.ReadCloser, error)) error {
	unlock := writeLocks.lock(ns + "/" + b.digest)
	defer unlock()
	if ok, err := d.hasBlob(ctx, ns, b.digest); err != nil || ok {
		return err
	}
	ctx = inNamespace(ctx, ns)
	ref := "paddock-" + b.digest
	d.content.Abort(ctx, &contentapi.AbortRequest{Ref: ref}) // a write left by a crash
	r, err := open()
	if err != nil {
		return err
	}
	defer r.Close()
	s, err := d.content.Write(ctx)
	if err != nil {
		return err
	}
	defer s.CloseSend()
	send := func(req *contentapi.WriteContentRequest) (*contentapi.WriteContentResponse, error) {
		req.Ref, req.Total, req.Expected = ref, b.size, b.digest
		if err := s.Send(req); err != nil {
			return nil, err
		}
		return s.Recv()
	}
	if _, err := send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_STAT}); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	hash := sha256.New()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			hash.Write(buf[:n])
			if _, err := send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_WRITE, Offset: off, Data: buf[:n]}); err != nil {
				return fmt.Errorf("write %s: %w", b.digest, err)
			}
			off += int64(n)
		}
		if rerr == io.EOF || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if got := "sha256:" + hex.EncodeToString(hash.Sum(nil)); got != b.digest || off != b.size {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("blob %s: read %d bytes with digest %s, want %d bytes", b.digest, off, got, b.size))
	}
	if _, err := send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_COMMIT, Offset: off, Labels: labels}); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("commit %s: %w", b.digest, err)
	}
	return nil
}

// keyedMutex is a mutex per key.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
