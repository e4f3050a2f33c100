package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/test/images/imagebuild"
)

func TestGC(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	s := openStore(t)
	const commonData, aData, bData = "common layer\n", "only in a\n", "only in b\n"
	common := layer(t, imagebuild.File("common", 0o644, commonData))
	imgA := image(t, common, layer(t, imagebuild.File("a", 0o644, aData)))
	imgB := image(t, common, layer(t, imagebuild.File("b", 0o644, bData)))
	a := importImage(t, s, "paddock.dev/test/a:v1", imgA)
	b := importImage(t, s, "paddock.dev/test/b:v1", imgB)
	blobsDir := filepath.Join(s.Root(), "blobs", "sha256")
	layersDir := filepath.Join(s.Root(), "layers", "sha256")
	sorted := func(s ...string) []string { slices.Sort(s); return s }

	// What crashed writers leave behind goes; everything else is in use.
	if err := os.WriteFile(filepath.Join(s.Root(), "tmp", "blob-crashed"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.Root(), "tmp", "layer-crashed", "rootfs", "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	removed, freed, err := s.GC(ctx)
	if err != nil || removed != 0 || freed != int64(len("partial")) {
		t.Fatalf("GC() = %d, %d, %v, want 0 removed and the 7 bytes of tmp freed", removed, freed, err)
	}
	if got := names(t, filepath.Join(s.Root(), "tmp")); len(got) != 0 {
		t.Errorf("tmp holds %v after GC", got)
	}
	if got := names(t, blobsDir); len(got) != 7 {
		t.Errorf("blobs after GC = %v, want the 7 of both images", got)
	}

	// A root filesystem in use keeps its image's layers after the image is
	// removed; the rest of both images goes.
	rootfs, err := s.PrepareRootfs(ctx, a, "ctr-a", t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rootfs.Cleanup() })
	for _, ref := range []string{a.Ref, b.Ref, b.Ref} { // removing twice succeeds
		if err := s.Remove(ctx, ref); err != nil {
			t.Fatalf("Remove(%s) = %v", ref, err)
		}
	}
	if _, err := s.Get(a.Ref); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(%s) after Remove = %v, want ErrNotFound", a.Ref, err)
	}
	removed, freed, err = s.GC(ctx)
	wantFreed := a.Size + b.Size - a.Layers[0].Size + int64(len(bData)) // every blob once, and layer b
	if err != nil || removed != 8 || freed != wantFreed {
		t.Errorf("GC() = %d, %d, %v, want 8 removed (7 blobs, 1 layer), %d bytes freed", removed, freed, err, wantFreed)
	}
	if got := names(t, blobsDir); len(got) != 0 {
		t.Errorf("blobs after GC = %v, want none", got)
	}
	if got, want := names(t, layersDir), sorted(hexes(a.Layers[0].DiffID, a.Layers[1].DiffID)...); !slices.Equal(got, want) {
		t.Errorf("layers after GC = %v, want the in-use %v", got, want)
	}
	if data, err := os.ReadFile(filepath.Join(rootfs.Path, "a")); err != nil || string(data) != aData {
		t.Errorf("the container's file a = %q, %v", data, err)
	}

	if err := rootfs.Cleanup(); err != nil {
		t.Fatal(err)
	}
	removed, freed, err = s.GC(ctx)
	if err != nil || removed != 2 || freed != int64(len(commonData)+len(aData)) {
		t.Errorf("GC() after Cleanup = %d, %d, %v, want 2 layers and %d bytes", removed, freed, err, len(commonData)+len(aData))
	}
	for _, d := range []string{"blobs/sha256", "layers/sha256", "locks", "rootfs", "tmp"} {
		if got := names(t, filepath.Join(s.Root(), d)); len(got) != 0 {
			t.Errorf("%s after the last GC = %v, want empty", d, got)
		}
	}

	// A root filesystem whose container directory vanished without a
	// release does not pin its layers.
	c := importImage(t, s, "paddock.dev/test/c:v1", imgA)
	dir := filepath.Join(t.TempDir(), "ctr")
	gone, err := s.PrepareRootfs(ctx, c, "ctr-gone", dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(gone.Path, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, c.Ref); err != nil {
		t.Fatal(err)
	}
	if removed, _, err := s.GC(ctx); err != nil || removed != 6 {
		t.Errorf("GC() = %d, %v, want 6 removed (4 blobs, 2 layers)", removed, err)
	}
	if got := names(t, filepath.Join(s.Root(), "rootfs")); len(got) != 0 {
		t.Errorf("rootfs records = %v, want the stale one dropped", got)
	}
}

// GC waits for pulls, imports and PrepareRootfs (which hold gc.lock shared)
// of every process.
func TestGCWaitsForPulls(t *testing.T) {
	s := openStore(t)
	other, err := Open(s.Root()) // another process
	if err != nil {
		t.Fatal(err)
	}
	held, err := lockFile(t.Context(), filepath.Join(other.Root(), "gc.lock"), unix.LOCK_SH)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, _, err := s.GC(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GC() while a pull holds gc.lock = %v, want it to wait until its context ends", err)
	}
	held.unlock()
	if _, _, err := s.GC(t.Context()); err != nil {
		t.Fatalf("GC() after the pull = %v", err)
	}
}
