package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// Rootfs is a container's root filesystem made by PrepareRootfs.
type Rootfs struct {
	// Path is the mounted root filesystem, DIR/rootfs.
	Path        string
	ContainerID string
	store       *Store
}

// Cleanup unmounts the root filesystem, deletes the container's writable
// layer and lets GC collect the image's layers. It is idempotent.
func (r *Rootfs) Cleanup() error {
	return r.store.ReleaseRootfs(r.ContainerID)
}

// rootfsRecord is rootfs/<container>.json: a root filesystem in use.
type rootfsRecord struct {
	ContainerID string   `json:"containerID"`
	Dir         string   `json:"dir"`
	Ref         string   `json:"ref"`
	Image       string   `json:"image"`  // manifest digest
	Layers      []string `json:"layers"` // diff IDs, bottom first
}

var containerIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// PrepareRootfs mounts a root filesystem for container containerID made of
// image's layers under dir: an overlayfs at DIR/rootfs whose lower
// directories are the unpacked layers (top first) and whose upper and work
// directories are DIR/upper and DIR/work (the container's writes). readOnly
// mounts it read-only. The store records the root filesystem so that GC keeps
// its layers until Cleanup (or ReleaseRootfs). A containerID that already has
// one is an ErrAlreadyExists; an image whose layers are not unpacked here
// (removed and collected since) is an ErrNotFound.
func (s *Store) PrepareRootfs(ctx context.Context, image *Image, containerID, dir string, readOnly bool) (*Rootfs, error) {
	if !containerIDRE.MatchString(containerID) {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("container ID %q is not valid: want 1 to 128 letters, digits, '_', '.' or '-'", containerID))
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(dir, ",:") {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("container directory %q has a ',' or ':', which overlay mount options cannot hold", dir))
	}
	l, err := lockFile(ctx, s.path("gc.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer l.unlock()

	rec := rootfsRecord{ContainerID: containerID, Dir: dir, Ref: image.Ref, Image: image.Digest}
	for _, layer := range image.Layers {
		rec.Layers = append(rec.Layers, layer.DiffID)
	}
	var lowers []string // relative to layers/sha256, top first
	for _, layer := range slices.Backward(image.Layers) {
		hx, err := hexOf(layer.DiffID)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(filepath.Join(s.layerPath(hx), "rootfs")); err != nil || !fi.IsDir() {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("layer %s of image %s is not unpacked in the image store; pull the image again", layer.DiffID, image.Ref))
		}
		lowers = append(lowers, hx+"/rootfs")
	}
	if len(lowers) == 0 { // overlayfs needs a lower directory
		lowers = append(lowers, s.path("empty"))
	}

	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if err := s.createFileAtomic(filepath.Join("rootfs", containerID+".json"), data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("container %s already has a root filesystem", containerID))
		}
		return nil, err
	}
	rootfs := &Rootfs{Path: filepath.Join(dir, "rootfs"), ContainerID: containerID, store: s}
	if err := s.mountRootfs(dir, lowers, readOnly); err != nil {
		_ = rootfs.Cleanup()
		return nil, err
	}
	return rootfs, nil
}

func (s *Store) mountRootfs(dir string, lowers []string, readOnly bool) error {
	upper, work, target := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	for _, d := range []string{upper, work, target} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := os.Chmod(d, 0o755); err != nil { // the upper directory is the container's "/"
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), upper, work)
	if len(opts) >= os.Getpagesize() {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("image has too many layers (%d) for one overlay mount", len(lowers)))
	}
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	// The lower directories are relative to layers/sha256, which keeps the
	// options under the kernel's one-page limit for images of many layers. A
	// working directory is per process, so the mount runs on a thread of its
	// own that leaves the process's file system context (CLONE_FS) and dies
	// with its goroutine.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("mount root filesystem: unshare: %w", err)
			return
		}
		if err := unix.Chdir(s.path("layers", "sha256")); err != nil {
			errc <- fmt.Errorf("mount root filesystem: %w", err)
			return
		}
		if err := unix.Mount("overlay", target, "overlay", flags, opts); err != nil {
			if err == unix.EPERM {
				errc <- fmt.Errorf("mount root filesystem %s: overlay mounts need CAP_SYS_ADMIN: %w", target, errdefs.ErrPermissionDenied)
				return
			}
			errc <- fmt.Errorf("mount root filesystem %s: %w", target, err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// ReleaseRootfs undoes PrepareRootfs for containerID, for example after the
// plugin restarted and lost its Rootfs: it unmounts DIR/rootfs, deletes
// DIR/upper and DIR/work and forgets the record, so that GC may collect the
// layers. Releasing one that does not exist succeeds.
func (s *Store) ReleaseRootfs(containerID string) error {
	if !containerIDRE.MatchString(containerID) {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("container ID %q is not valid", containerID))
	}
	recPath := s.path("rootfs", containerID+".json")
	data, err := os.ReadFile(recPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var rec rootfsRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("root filesystem record %s: %w", recPath, err)
	}
	target := filepath.Join(rec.Dir, "rootfs")
	if err := unmountAll(target); err != nil {
		return err
	}
	// Remove, not RemoveAll: if something is still mounted there, fail
	// rather than delete through it.
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove root filesystem of %s: %w", containerID, err)
	}
	for _, d := range []string{"upper", "work"} {
		if err := os.RemoveAll(filepath.Join(rec.Dir, d)); err != nil {
			return fmt.Errorf("remove root filesystem of %s: %w", containerID, err)
		}
	}
	if err := os.Remove(recPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// unmountAll unmounts everything mounted at target; a busy mount is
// detached.
func unmountAll(target string) error {
	for range 16 {
		err := unix.Unmount(target, 0)
		if err == unix.EBUSY {
			err = unix.Unmount(target, unix.MNT_DETACH)
		}
		switch err {
		case nil:
			continue
		case unix.EINVAL, unix.ENOENT: // not a mount point (any more)
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 16 unmounts", target)
}

// rootfsRecords reads every record of a root filesystem in use.
func (s *Store) rootfsRecords() ([]rootfsRecord, error) {
	entries, err := os.ReadDir(s.path("rootfs"))
	if err != nil {
		return nil, err
	}
	var recs []rootfsRecord
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(s.path("rootfs", e.Name()))
		if err != nil {
			return nil, err
		}
		var rec rootfsRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			return nil, fmt.Errorf("root filesystem record %s: %w", e.Name(), err)
		}
		recs = append(recs, rec)
	}
	return recs, nil
}
