package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// GC deletes the blobs and unpacked layers that no image in the index and
// no root filesystem in use refers to, and what crashed writers left under
// tmp/. It waits for running pulls, imports and PrepareRootfs calls (of every
// process) to finish and holds new ones back while it runs. A root filesystem
// whose container directory is gone is forgotten. GC returns how many blobs
// and layers it removed and how many bytes it freed.
func (s *Store) GC(ctx context.Context) (removed int, freed int64, err error) {
	l, err := lockFile(ctx, s.path("gc.lock"), unix.LOCK_EX)
	if err != nil {
		return 0, 0, err
	}
	defer l.unlock()

	idx, err := s.readIndex()
	if err != nil {
		return 0, 0, err
	}
	blobs := map[string]bool{}  // hex digests
	layers := map[string]bool{} // hex diff IDs
	keep := func(set map[string]bool, digest string) {
		if hx, err := hexOf(digest); err == nil {
			set[hx] = true
		}
	}
	for _, img := range idx.Images {
		keep(blobs, img.Digest)
		keep(blobs, img.ConfigDigest)
		for _, layer := range img.Layers {
			keep(blobs, layer.Digest)
			keep(layers, layer.DiffID)
		}
	}
	recs, err := s.rootfsRecords()
	if err != nil {
		return 0, 0, err
	}
	for _, rec := range recs {
		if _, err := os.Stat(rec.Dir); errors.Is(err, fs.ErrNotExist) {
			// The container's directory went away without a release.
			if err := os.Remove(s.path("rootfs", rec.ContainerID+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return removed, freed, err
			}
			continue
		}
		for _, diffID := range rec.Layers {
			keep(layers, diffID)
		}
	}

	sweep := func(dir, lockPrefix string, live map[string]bool) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if live[e.Name()] {
				continue
			}
			p := filepath.Join(dir, e.Name())
			n, err := diskUsage(p)
			if err != nil {
				return err
			}
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			removed++
			freed += n
			// No one waits on this lock: its users all hold gc.lock shared.
			if err := os.Remove(s.path("locks", lockPrefix+e.Name()+".lock")); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	if err := sweep(s.path("blobs", "sha256"), "blob-", blobs); err != nil {
		return removed, freed, fmt.Errorf("image gc: %w", err)
	}
	if err := sweep(s.path("layers", "sha256"), "layer-", layers); err != nil {
		return removed, freed, fmt.Errorf("image gc: %w", err)
	}

	// Leftovers of writers that crashed, and locks of content that never
	// made it into the store.
	tmp, err := os.ReadDir(s.path("tmp"))
	if err != nil {
		return removed, freed, fmt.Errorf("image gc: %w", err)
	}
	for _, e := range tmp {
		p := s.path("tmp", e.Name())
		n, err := diskUsage(p)
		if err != nil {
			return removed, freed, fmt.Errorf("image gc: %w", err)
		}
		if err := os.RemoveAll(p); err != nil {
			return removed, freed, fmt.Errorf("image gc: %w", err)
		}
		freed += n
	}
	locks, err := os.ReadDir(s.path("locks"))
	if err != nil {
		return removed, freed, fmt.Errorf("image gc: %w", err)
	}
	for _, e := range locks {
		name := strings.TrimSuffix(e.Name(), ".lock")
		var exists error
		switch {
		case strings.HasPrefix(name, "blob-"):
			_, exists = os.Lstat(s.blobPath(strings.TrimPrefix(name, "blob-")))
		case strings.HasPrefix(name, "layer-"):
			_, exists = os.Lstat(s.layerPath(strings.TrimPrefix(name, "layer-")))
		}
		if errors.Is(exists, fs.ErrNotExist) {
			if err := os.Remove(s.path("locks", e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return removed, freed, fmt.Errorf("image gc: %w", err)
			}
		}
	}
	return removed, freed, nil
}

// diskUsage sums the sizes of the regular files under p, counting each
// hard-linked file once.
func diskUsage(p string) (int64, error) {
	var total int64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		total += fi.Size()
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return total, nil
	}
	return total, err
}
