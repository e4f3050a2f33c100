package oci

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/test/images/imagebuild"
)

// listTree lists everything under root as "path type" lines, sorted, with
// type d (directory), f (file), l (symlink), c (character device), p (fifo).
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		kind := "?"
		switch m := d.Type(); {
		case m.IsDir():
			kind = "d"
		case m.IsRegular():
			kind = "f"
		case m&fs.ModeSymlink != 0:
			kind = "l"
		case m&fs.ModeCharDevice != 0:
			kind = "c"
		case m&fs.ModeNamedPipe != 0:
			kind = "p"
		}
		out = append(out, rel+" "+kind)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func getxattr(path, name string) string {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(buf[:n])
}

func isWhiteoutFile(t *testing.T, path string) bool {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Errorf("lstat %s: %v", path, err)
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// Layers are unpacked with whiteouts in overlay form; the root filesystem
// stacks them and shows the tree Docker would.
func TestRootfsWhiteoutsAndMetadata(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	base := layer(t,
		imagebuild.Dir("a", 0o755), imagebuild.File("a/keep", 0o644, "keep"), imagebuild.File("a/gone", 0o644, "gone"),
		imagebuild.Dir("b", 0o755), imagebuild.File("b/x", 0o644, "x"), imagebuild.File("b/y", 0o644, "y"),
		imagebuild.Dir("c", 0o755), imagebuild.File("c/file", 0o644, "c"),
		imagebuild.Dir("d", 0o755), imagebuild.File("d/old", 0o644, "old"),
		imagebuild.Dir("e", 0o755),
		imagebuild.Symlink("link", "a/keep"),
		imagebuild.Entry{Path: "hard", Type: tar.TypeLink, Linkname: "a/keep"},
		imagebuild.Dir("dev", 0o755),
		imagebuild.Entry{Path: "dev/null", Type: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		imagebuild.Entry{Path: "fifo", Type: tar.TypeFifo, Mode: 0o600},
		imagebuild.Entry{Path: "owned", Type: tar.TypeReg, Mode: 0o4755, UID: 1000, GID: 1001, Data: []byte("x"),
			Xattrs: map[string]string{"user.paddock": "yes", "trusted.overlay.opaque": "y"}, ModTime: mtime},
	)
	top := layer(t,
		imagebuild.File("a/.wh.gone", 0o644, ""),
		imagebuild.File("b/.wh..wh..opq", 0o644, ""), imagebuild.File("b/new", 0o644, "new"),
		imagebuild.File(".wh.c", 0o644, ""),
		imagebuild.File(".wh.d", 0o644, ""), imagebuild.Dir("d", 0o750), imagebuild.File("d/fresh", 0o644, "fresh"),
		imagebuild.File("e/own", 0o644, "mine"), imagebuild.File("e/.wh.own", 0o644, ""), // hides lower layers only
		imagebuild.File("a/.wh..wh.plnk", 0o644, ""), // AUFS metadata: ignored
	)
	s := openStore(t)
	img := importImage(t, s, "paddock.dev/test/whiteouts:v1", image(t, base, top))

	// The top layer as unpacked: overlay whiteouts and opaque directories.
	topDir := layerDir(s, img.Layers[1].DiffID)
	for _, p := range []string{"a/gone", "c"} {
		if !isWhiteoutFile(t, filepath.Join(topDir, p)) {
			t.Errorf("%s in the top layer is not a 0/0 character device", p)
		}
	}
	for _, p := range []string{"b", "d"} {
		if got := getxattr(filepath.Join(topDir, p), "trusted.overlay.opaque"); got != "y" {
			t.Errorf("%s in the top layer: trusted.overlay.opaque = %q, want y", p, got)
		}
	}
	if got := getxattr(filepath.Join(layerDir(s, img.Layers[0].DiffID), "owned"), "trusted.overlay.opaque"); got == "y" {
		t.Errorf("a layer's own trusted.overlay.* xattr was written: overlay metadata must not be forgeable")
	}

	dir := t.TempDir()
	rootfs, err := s.PrepareRootfs(ctx, img, "ctr-1", dir, false)
	if err != nil {
		t.Fatalf("PrepareRootfs = %v", err)
	}
	t.Cleanup(func() { rootfs.Cleanup() })
	root := rootfs.Path
	if root != filepath.Join(dir, "rootfs") || !mounted(t, root) {
		t.Fatalf("Rootfs.Path = %s (mounted: %v), want %s mounted", root, mounted(t, root), filepath.Join(dir, "rootfs"))
	}
	want := []string{
		"a d", "a/keep f", "b d", "b/new f", "d d", "d/fresh f", "dev d", "dev/null c",
		"e d", "e/own f", "fifo p", "hard f", "link l", "owned f",
	}
	if got := listTree(t, root); !slices.Equal(got, want) {
		t.Errorf("root filesystem tree:\n got %v\nwant %v", got, want)
	}

	// Metadata survives unpacking.
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "owned"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o4755 || st.Uid != 1000 || st.Gid != 1001 || st.Mtim.Sec != mtime.Unix() {
		t.Errorf("owned: mode %o uid %d gid %d mtime %d, want 4755 1000 1001 %d", st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec, mtime.Unix())
	}
	if got := getxattr(filepath.Join(root, "owned"), "user.paddock"); got != "yes" {
		t.Errorf("owned: user.paddock = %q, want yes", got)
	}
	if err := unix.Lstat(filepath.Join(root, "dev", "null"), &st); err != nil || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null: rdev %d, %v, want 1:3", st.Rdev, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "d")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("d: %v, %v, want mode 0750 from the top layer", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(root, "link")); err != nil || target != "a/keep" {
		t.Errorf("link -> %q, %v, want a/keep", target, err)
	}
	baseDir := layerDir(s, img.Layers[0].DiffID)
	keep, err1 := os.Lstat(filepath.Join(baseDir, "a", "keep"))
	hard, err2 := os.Lstat(filepath.Join(baseDir, "hard"))
	if err1 != nil || err2 != nil || !os.SameFile(keep, hard) {
		t.Errorf("hard is not a hard link of a/keep in the base layer (%v, %v)", err1, err2)
	}

	// Writes go to the container's upper directory, never to the layers.
	if err := os.WriteFile(filepath.Join(root, "new-file"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "a", "keep")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "upper", "new-file")); err != nil {
		t.Errorf("upper/new-file: %v", err)
	}
	if !isWhiteoutFile(t, filepath.Join(dir, "upper", "a", "keep")) {
		t.Errorf("removing a/keep left no whiteout in the upper directory")
	}
	if _, err := os.Stat(filepath.Join(baseDir, "a", "keep")); err != nil {
		t.Errorf("the base layer lost a/keep: %v", err)
	}

	if _, err := s.PrepareRootfs(ctx, img, "ctr-1", t.TempDir(), false); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("PrepareRootfs(ctr-1) again = %v, want ErrAlreadyExists", err)
	}

	// A read-only root filesystem refuses writes.
	ro, err := s.PrepareRootfs(ctx, img, "ctr-ro", t.TempDir(), true)
	if err != nil {
		t.Fatalf("PrepareRootfs(read-only) = %v", err)
	}
	t.Cleanup(func() { ro.Cleanup() })
	if err := os.WriteFile(filepath.Join(ro.Path, "x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing to a read-only root filesystem = %v, want EROFS", err)
	}

	// Cleanup unmounts and removes the container's layer; it is idempotent.
	if err := rootfs.Cleanup(); err != nil {
		t.Fatalf("Cleanup = %v", err)
	}
	if mounted(t, root) {
		t.Errorf("%s is still mounted after Cleanup", root)
	}
	for _, d := range []string{"rootfs", "upper", "work"} {
		if _, err := os.Lstat(filepath.Join(dir, d)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after Cleanup: %v, want it gone", d, err)
		}
	}
	if err := rootfs.Cleanup(); err != nil {
		t.Errorf("second Cleanup = %v", err)
	}
}

// Layers that try to write outside their directory are refused, and leave
// nothing behind, outside or in the store.
func TestUnpackRefusesPathTraversal(t *testing.T) {
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("victim"), 0o644); err != nil {
		t.Fatal(err)
	}
	up := strings.Repeat("../", 24) // far enough to reach /
	rel := up + strings.TrimPrefix(outside, "/")

	file := imagebuild.File
	tests := []struct {
		name    string
		entries []imagebuild.Entry
	}{
		{"dot-dot", []imagebuild.Entry{file(rel+"/evil", 0o644, "x")}},
		{"dot-dot inside", []imagebuild.Entry{imagebuild.Dir("a", 0o755), file("a/"+rel+"/evil", 0o644, "x")}},
		{"dot-dot that stays inside", []imagebuild.Entry{imagebuild.Dir("a", 0o755), file("a/../evil", 0o644, "x")}},
		{"absolute", []imagebuild.Entry{file(outside+"/evil", 0o644, "x")}},
		{"through an absolute symlink", []imagebuild.Entry{imagebuild.Symlink("esc", outside), file("esc/evil", 0o644, "x")}},
		{"through a relative symlink", []imagebuild.Entry{imagebuild.Symlink("esc", rel), file("esc/evil", 0o644, "x")}},
		{"through a nested symlink", []imagebuild.Entry{imagebuild.Dir("a", 0o755), imagebuild.Symlink("a/b", "/"), file("a/b"+outside+"/evil", 0o644, "x")}},
		{"directory through a symlink", []imagebuild.Entry{imagebuild.Symlink("esc", outside), imagebuild.Dir("esc/sub", 0o755)}},
		{"symlink through a symlink", []imagebuild.Entry{imagebuild.Symlink("esc", outside), imagebuild.Symlink("esc/victim", "/etc/passwd")}},
		{"whiteout through a symlink", []imagebuild.Entry{imagebuild.Symlink("esc", outside), file("esc/.wh.victim", 0o644, "")}},
		{"opaque through a symlink", []imagebuild.Entry{imagebuild.Symlink("esc", outside), file("esc/.wh..wh..opq", 0o644, "")}},
		{"whiteout of dot-dot", []imagebuild.Entry{imagebuild.Dir("a", 0o755), file("a/.wh...", 0o644, "")}},
		{"hard link to an absolute path", []imagebuild.Entry{{Path: "hl", Type: tar.TypeLink, Linkname: victim}}},
		{"hard link with dot-dot", []imagebuild.Entry{{Path: "hl", Type: tar.TypeLink, Linkname: rel + "/victim"}}},
		{"hard link through a symlink", []imagebuild.Entry{imagebuild.Symlink("esc", outside), {Path: "hl", Type: tar.TypeLink, Linkname: "esc/victim"}}},
		{"file over a symlinked directory's child", []imagebuild.Entry{imagebuild.Symlink("esc", outside), file("esc/victim", 0o644, "overwritten")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			img := image(t, layer(t, imagebuild.File("ok", 0o644, "ok")), layer(t, tt.entries...))
			_, err := s.Import(t.Context(), bytes.NewReader(ociArchive(t, "paddock.dev/test/evil:v1", img)))
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Import = %v, want ErrInvalidArgument", err)
			}
			t.Logf("Import = %v", err)
			if got := listTree(t, outside); !slices.Equal(got, []string{"victim f"}) {
				t.Errorf("outside the store: %v, want only the untouched victim", got)
			}
			if data, err := os.ReadFile(victim); err != nil || string(data) != "victim" {
				t.Errorf("victim = %q, %v", data, err)
			}
			if list, _ := s.List(); len(list) != 0 {
				t.Errorf("List() = %v after a refused import", list)
			}
			if got := names(t, filepath.Join(s.Root(), "tmp")); len(got) != 0 {
				t.Errorf("tmp holds %v: the half-unpacked layer was left behind", got)
			}
			// Only the harmless first layer may have been unpacked.
			if got := names(t, filepath.Join(s.Root(), "layers", "sha256")); len(got) > 1 {
				t.Errorf("layers = %v, want at most the first one", got)
			}
		})
	}
}
