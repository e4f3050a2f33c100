package oci

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-dev/paddock/core/errdefs"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."     // AUFS metadata, and the opaque marker below
	whiteoutOpaque = ".wh..wh..opq" // this directory hides the lower layers' content
	opaqueXattr    = "trusted.overlay.opaque"
	paxXattrPrefix = "SCHILY.xattr."
)

// unpackLayer writes the uncompressed layer tar read from r into dir, an
// empty directory, as one overlayfs lower layer: whiteouts become 0/0
// character devices and opaque markers the trusted.overlay.opaque xattr.
// Entries that would land outside dir are refused with ErrInvalidArgument.
// Ownership, modes, times and xattrs are kept where the process may set them;
// device nodes it may not create are skipped.
func unpackLayer(ctx context.Context, r io.Reader, dir string) error {
	root, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &unpacker{root: int(root.Fd()), buf: make([]byte, 128<<10)}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) {
			return invalidEntry(hdr.Name, "leaves the layer")
		}
		if err != nil {
			return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("layer is not a valid tar archive: %v", err))
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
	return u.finish()
}

// unpacker writes a layer's entries beneath the directory root. It never
// follows a symbolic link: every directory on the way to an entry is opened
// with O_NOFOLLOW, one component at a time, and every entry is created
// relative to its parent directory's descriptor.
type unpacker struct {
	root int
	buf  []byte
	dirs []*tar.Header // directories whose times are set at the end
}

func invalidEntry(name, why string) error {
	return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("layer entry %q %s", name, why))
}

// entryName checks a tar name and cleans it to a relative slash path; ""
// is the layer's root.
func entryName(name string) (string, error) {
	switch {
	case name == "":
		return "", invalidEntry(name, "has no name")
	case strings.HasPrefix(name, "/"):
		return "", invalidEntry(name, "is an absolute path")
	case strings.ContainsRune(name, 0):
		return "", invalidEntry(name, "contains a NUL byte")
	case slices.Contains(strings.Split(name, "/"), ".."):
		return "", invalidEntry(name, `has a ".." component`)
	}
	p := path.Clean(name)
	if p == "." {
		return "", nil
	}
	return p, nil
}

func splitName(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name, err := entryName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" {
		// The layer's root: the container's root directory is the upper
		// directory that PrepareRootfs makes, so there is nothing to keep.
		return nil
	}
	dir, base := splitName(name)
	parent, err := u.openDir(dir, hdr.Name, true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)

	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(parent, name, base)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.mkdir(parent, name, base, hdr)
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		return u.file(parent, name, base, hdr, r)
	case tar.TypeSymlink:
		return u.symlink(parent, name, base, hdr)
	case tar.TypeLink:
		return u.hardlink(parent, name, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return u.node(parent, name, base, hdr)
	default:
		return invalidEntry(hdr.Name, fmt.Sprintf("has unsupported type %q", hdr.Typeflag))
	}
}

// openDir opens the directory rel ("" for the root), on the way to the layer
// entry named entry, without following symbolic links, creating missing
// directories (mode 0755) when create is set. A component that is a symbolic
// link or not a directory is an ErrInvalidArgument; one that is a whiteout of
// this layer becomes an opaque directory. The caller closes the descriptor.
func (u *unpacker) openDir(rel, entry string, create bool) (int, error) {
	fd, err := unix.Openat(u.root, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if rel == "" {
		return fd, nil
	}
	components := strings.Split(rel, "/")
	for i, c := range components {
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if create && (err == unix.ENOENT || (err == unix.ENOTDIR && isWhiteout(fd, c))) {
			next, err = u.mkdirImplicit(fd, c, err == unix.ENOTDIR)
		}
		unix.Close(fd)
		if err != nil {
			sofar := strings.Join(components[:i+1], "/")
			switch err {
			case unix.ELOOP, unix.ENOTDIR:
				return -1, invalidEntry(entry, fmt.Sprintf("passes through %q, which is not a directory in this layer (symbolic links are not followed)", sofar))
			case unix.ENOENT:
				return -1, fmt.Errorf("layer directory %q: %w", sofar, errdefs.ErrNotFound)
			}
			return -1, fmt.Errorf("layer directory %q: %w", sofar, err)
		}
		fd = next
	}
	return fd, nil
}

// mkdirImplicit creates a directory that the layer did not list itself, in
// place of a whiteout when overWhiteout is set, and opens it.
func (u *unpacker) mkdirImplicit(parent int, name string, overWhiteout bool) (int, error) {
	if overWhiteout {
		if err := unix.Unlinkat(parent, name, 0); err != nil {
			return -1, err
		}
	}
	if err := unix.Mkdirat(parent, name, 0o755); err != nil && err != unix.EEXIST {
		return -1, err
	}
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Fchmod(fd, 0o755); err != nil { // not subject to the umask
		unix.Close(fd)
		return -1, err
	}
	if overWhiteout {
		if err := setOpaque(fd); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// isWhiteout reports whether name in dir is an overlay whiteout (a 0/0
// character device).
func isWhiteout(dir int, name string) bool {
	var st unix.Stat_t
	if unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func setOpaque(dirfd int) error {
	if err := unix.Fsetxattr(dirfd, opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("mark directory opaque (%s needs CAP_SYS_ADMIN): %w", opaqueXattr, err)
	}
	return nil
}

// whiteout handles ".wh.NAME" and ".wh..wh..opq" in the directory parent.
// A whiteout hides only lower layers' files (OCI image spec), so an entry of
// this layer that is already at NAME stays.
func (u *unpacker) whiteout(parent int, name, base string) error {
	if base == whiteoutOpaque {
		return setOpaque(parent)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return invalidEntry(name, "is a whiteout of no valid name")
	}
	var st unix.Stat_t
	if err := unix.Fstatat(parent, target, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return nil
	}
	if err := unix.Mknodat(parent, target, unix.S_IFCHR, 0); err != nil {
		if err == unix.EPERM {
			return fmt.Errorf("layer whiteout %q: writing an overlay whiteout needs CAP_MKNOD: %w", name, errdefs.ErrPermissionDenied)
		}
		return fmt.Errorf("layer whiteout %q: %w", name, err)
	}
	return nil
}

// clear makes way for a new entry called base in parent: whatever is there
// goes, except a directory when the new entry is one too. It reports whether
// a directory was kept and whether a whiteout was replaced.
func (u *unpacker) clear(parent int, base string, dir bool) (kept, replacedWhiteout bool, err error) {
	var st unix.Stat_t
	err = unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if dir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return true, false, nil
	}
	replacedWhiteout = st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
	return false, replacedWhiteout, removeAt(parent, base)
}

// removeAt removes name in dir and, for a directory, everything below it,
// without following symbolic links.
func removeAt(dir int, name string) error {
	err := unix.Unlinkat(dir, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return err
	}
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return err
	}
	for _, n := range names {
		if err := removeAt(fd, n); err != nil {
			d.Close()
			return err
		}
	}
	d.Close()
	return unix.Unlinkat(dir, name, unix.AT_REMOVEDIR)
}

func (u *unpacker) mkdir(parent int, name, base string, hdr *tar.Header) error {
	kept, replacedWhiteout, err := u.clear(parent, base, true)
	if err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	if !kept {
		if err := unix.Mkdirat(parent, base, 0o700); err != nil {
			return fmt.Errorf("layer entry %q: %w", name, err)
		}
	}
	fd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	defer unix.Close(fd)
	if replacedWhiteout {
		// The layer deleted the lower NAME and made a new directory NAME:
		// the lower directory's content must not show through.
		if err := setOpaque(fd); err != nil {
			return err
		}
	}
	if err := u.attrs(fd, parent, base, hdr); err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	u.dirs = append(u.dirs, hdr)
	return nil
}

func (u *unpacker) file(parent int, name, base string, hdr *tar.Header, r io.Reader) error {
	if _, _, err := u.clear(parent, base, false); err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := io.CopyBuffer(f, r, u.buf); err != nil {
		f.Close()
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	if err := u.attrs(fd, parent, base, hdr); err != nil {
		f.Close()
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	return nil
}

func (u *unpacker) symlink(parent int, name, base string, hdr *tar.Header) error {
	if hdr.Linkname == "" {
		return invalidEntry(hdr.Name, "is a symbolic link with no target")
	}
	if _, _, err := u.clear(parent, base, false); err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	// The target is kept as written: it is resolved inside the container's
	// root when the container runs, and never while unpacking.
	if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	if err := u.attrs(-1, parent, base, hdr); err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	return nil
}

func (u *unpacker) hardlink(parent int, name, base string, hdr *tar.Header) error {
	target, err := entryName(hdr.Linkname)
	if err != nil {
		return invalidEntry(hdr.Name, fmt.Sprintf("is a hard link to %q, outside the layer", hdr.Linkname))
	}
	if target == "" {
		return invalidEntry(hdr.Name, "is a hard link to the layer's root")
	}
	if target == name {
		return nil
	}
	tdir, tbase := splitName(target)
	tparent, err := u.openDir(tdir, hdr.Name, false)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return invalidEntry(hdr.Name, fmt.Sprintf("is a hard link to %q, which is not in the layer", hdr.Linkname))
		}
		return err
	}
	defer unix.Close(tparent)
	var st unix.Stat_t
	if err := unix.Fstatat(tparent, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return invalidEntry(hdr.Name, fmt.Sprintf("is a hard link to %q, which is not a file in the layer", hdr.Linkname))
	}
	if _, _, err := u.clear(parent, base, false); err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	// Flags 0: a symbolic link target is linked itself, not followed.
	if err := unix.Linkat(tparent, tbase, parent, base, 0); err != nil {
		return fmt.Errorf("layer entry %q: hard link to %q: %w", name, hdr.Linkname, err)
	}
	return nil
}

func (u *unpacker) node(parent int, name, base string, hdr *tar.Header) error {
	if _, _, err := u.clear(parent, base, false); err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(parent, base, mode, int(dev)); err != nil {
		if err == unix.EPERM && hdr.Typeflag != tar.TypeFifo {
			return nil // not permitted here (no CAP_MKNOD): skipped
		}
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	if err := u.attrs(-1, parent, base, hdr); err != nil {
		return fmt.Errorf("layer entry %q: %w", name, err)
	}
	return nil
}

// attrs sets an entry's owner, mode, xattrs and (for all but directories,
// which get theirs in finish) times. fd is the entry opened, or -1 to work
// on parent/base without following a symbolic link.
func (u *unpacker) attrs(fd, parent int, base string, hdr *tar.Header) error {
	var err error
	if fd >= 0 {
		err = unix.Fchown(fd, hdr.Uid, hdr.Gid)
	} else {
		err = unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	// EPERM: not root; EINVAL: the id is not mapped in our user namespace.
	if err != nil && err != unix.EPERM && err != unix.EINVAL {
		return fmt.Errorf("chown: %w", err)
	}
	if hdr.Typeflag != tar.TypeSymlink { // after chown, which clears set-id bits
		mode := uint32(hdr.Mode & 0o7777)
		if fd >= 0 {
			err = unix.Fchmod(fd, mode)
		} else {
			err = unix.Fchmodat(parent, base, mode, 0) // not a symlink: we just made it
		}
		if err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if err := setXattrs(fd, parent, base, hdr); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil
	}
	return setTimes(parent, base, hdr)
}

// setXattrs sets the xattrs recorded in the entry's PAX records, except
// overlayfs' own, which a layer must not be able to forge. Xattrs this
// process or file system cannot set are skipped.
func setXattrs(fd, parent int, base string, hdr *tar.Header) error {
	for _, key := range slices.Sorted(maps.Keys(hdr.PAXRecords)) {
		attr, ok := strings.CutPrefix(key, paxXattrPrefix)
		if !ok || strings.HasPrefix(attr, "trusted.overlay.") || strings.HasPrefix(attr, "user.overlay.") {
			continue
		}
		value := []byte(hdr.PAXRecords[key])
		var err error
		if fd >= 0 {
			err = unix.Fsetxattr(fd, attr, value, 0)
		} else {
			// The parent's descriptor through /proc names the directory
			// without resolving a path again; Lsetxattr does not follow base.
			err = unix.Lsetxattr("/proc/self/fd/"+strconv.Itoa(parent)+"/"+base, attr, value, 0)
		}
		switch err {
		case nil, unix.ENOTSUP, unix.EPERM, unix.EACCES, unix.ENOENT:
		default:
			return fmt.Errorf("set xattr %s: %w", attr, err)
		}
	}
	return nil
}

func setTimes(parent int, base string, hdr *tar.Header) error {
	mtime := hdr.ModTime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// finish sets the directories' times, which adding their entries changed.
func (u *unpacker) finish() error {
	for _, hdr := range slices.Backward(u.dirs) {
		name, _ := entryName(hdr.Name)
		dir, base := splitName(name)
		parent, err := u.openDir(dir, hdr.Name, false)
		if err != nil {
			continue // replaced by a later entry
		}
		var st unix.Stat_t
		if unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = setTimes(parent, base, hdr)
		}
		unix.Close(parent)
		if err != nil {
			return fmt.Errorf("layer entry %q: %w", name, err)
		}
	}
	return nil
}
