// Package imagebuild assembles the small OCI images Paddock's tests run,
// offline and reproducibly: every file and the image itself carry the time
// stamp Epoch and root ownership unless told otherwise, entries keep the
// order given, and layers are gzip-compressed at a fixed level, so building
// twice from the same inputs gives the same digests.
//
// It serves both `make testimages` (test/images/build) and tests that need
// images, including deliberately odd ones (whiteouts, hostile paths): Layer
// writes the entries exactly as given.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The references of the test images.
const (
	BusyboxRef = "paddock.dev/test/busybox:latest"
	ServerRef  = "paddock.dev/test/server:latest"
)

// Epoch is the modification time of every entry that sets none, and the
// creation time of every image.
var Epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// DefaultPath is the PATH of the test images.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Entry is one entry of a layer.
type Entry struct {
	// Path is the name written to the tar, as is (tests use hostile ones).
	Path string
	// Type is a tar type flag: tar.TypeReg, TypeDir, TypeSymlink, TypeLink,
	// TypeChar, TypeBlock, TypeFifo.
	Type byte
	// Mode holds the permission bits, with set-id and sticky bits.
	Mode     int64
	UID, GID int
	// Data is a regular file's content, or Source names a host file to copy.
	Data   []byte
	Source string
	// Linkname is a symbolic link's target or a hard link's path.
	Linkname           string
	Devmajor, Devminor int64
	// Xattrs are written as PAX records.
	Xattrs  map[string]string
	ModTime time.Time // zero: Epoch
}

// Dir is a directory.
func Dir(p string, mode int64) Entry { return Entry{Path: p, Type: tar.TypeDir, Mode: mode} }

// File is a regular file with the given content.
func File(p string, mode int64, data string) Entry {
	return Entry{Path: p, Type: tar.TypeReg, Mode: mode, Data: []byte(data)}
}

// Symlink is a symbolic link to target.
func Symlink(p, target string) Entry {
	return Entry{Path: p, Type: tar.TypeSymlink, Mode: 0o777, Linkname: target}
}

// Tar writes entries as an uncompressed tar, in the order given.
func Tar(w io.Writer, entries []Entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:     e.Path,
			Typeflag: e.Type,
			Mode:     e.Mode,
			Uid:      e.UID,
			Gid:      e.GID,
			Linkname: e.Linkname,
			Devmajor: e.Devmajor,
			Devminor: e.Devminor,
			ModTime:  e.ModTime,
		}
		if hdr.ModTime.IsZero() {
			hdr.ModTime = Epoch
		}
		if e.Type == tar.TypeDir && !strings.HasSuffix(hdr.Name, "/") {
			hdr.Name += "/"
		}
		data := e.Data
		if e.Source != "" {
			var err error
			if data, err = os.ReadFile(e.Source); err != nil {
				return err
			}
		}
		if e.Type == tar.TypeReg {
			hdr.Size = int64(len(data))
		}
		for _, k := range slices.Sorted(maps.Keys(e.Xattrs)) {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = e.Xattrs[k]
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar entry %q: %w", e.Path, err)
		}
		if e.Type == tar.TypeReg {
			if _, err := tw.Write(data); err != nil {
				return fmt.Errorf("tar entry %q: %w", e.Path, err)
			}
		}
	}
	return tw.Close()
}

// Layer makes a gzip-compressed OCI layer of entries.
func Layer(entries []Entry) (v1.Layer, error) {
	var buf bytes.Buffer
	if err := Tar(&buf, entries); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression),
		tarball.WithCompressedCaching,
	)
}

// Image makes a linux OCI image for this machine's architecture of layers
// (bottom first) and cfg.
func Image(cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var adds []mutate.Addendum
	for _, l := range layers {
		adds = append(adds, mutate.Addendum{
			Layer:     l,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "paddock imagebuild"},
		})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Created = v1.Time{Time: Epoch}
	return mutate.ConfigFile(img, cf)
}

// Busybox makes the busybox test image (BusyboxRef) from a static busybox
// binary (Debian's busybox-static installs one at /bin/busybox): the binary
// at /bin/busybox, a symbolic link for each applet where `busybox
// --list-full` puts it (/bin/sh, /usr/bin/wget...) and in /bin (/bin/wget,
// /bin/nc...), /etc/passwd and /etc/group with root and nobody, and /tmp.
func Busybox(busybox string) (v1.Image, error) {
	if _, err := os.Stat(busybox); err != nil {
		return nil, fmt.Errorf("busybox image: %w (install Debian's busybox-static)", err)
	}
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox image: %s --list-full: %w", busybox, err)
	}
	entries := baseEntries()
	entries = append(entries, Entry{Path: "bin/busybox", Type: tar.TypeReg, Mode: 0o755, Source: busybox})
	dirs := map[string]bool{}
	for _, e := range entries {
		if e.Type == tar.TypeDir {
			dirs[e.Path] = true
		}
	}
	links := map[string]bool{"bin/busybox": true}
	link := func(p string) {
		if links[p] || !fs.ValidPath(p) {
			return
		}
		links[p] = true
		for d := path.Dir(p); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			entries = append(entries, Dir(d, 0o755))
		}
		entries = append(entries, Symlink(p, "/bin/busybox"))
	}
	applets := strings.Fields(string(out))
	for _, applet := range applets {
		link(strings.TrimPrefix(applet, "/"))
	}
	// Every applet in /bin too, so that tests may say /bin/wget or /bin/nc.
	for _, applet := range applets {
		link("bin/" + path.Base(applet))
	}
	sortEntries(entries)
	layer, err := Layer(entries)
	if err != nil {
		return nil, err
	}
	return Image(v1.Config{Cmd: []string{"sh"}, Env: []string{DefaultPath}}, layer)
}

// Server makes the server test image (ServerRef) from a static build of
// test/images/server: the binary at /server, its entrypoint.
func Server(binary string) (v1.Image, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("server image: %w", err)
	}
	entries := append(baseEntries(), Entry{Path: "server", Type: tar.TypeReg, Mode: 0o755, Source: binary})
	sortEntries(entries)
	layer, err := Layer(entries)
	if err != nil {
		return nil, err
	}
	return Image(v1.Config{
		Entrypoint:   []string{"/server"},
		Env:          []string{DefaultPath, "PORT=8080"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		StopSignal:   "SIGTERM",
	}, layer)
}

// baseEntries are the directories and files every test image has.
func baseEntries() []Entry {
	return []Entry{
		Dir("bin", 0o755), Dir("dev", 0o755), Dir("etc", 0o755), Dir("proc", 0o755),
		Dir("root", 0o700), Dir("sys", 0o755), Dir("tmp", 0o1777),
		Dir("usr", 0o755), Dir("usr/bin", 0o755), Dir("usr/sbin", 0o755), Dir("sbin", 0o755),
		File("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
		File("etc/group", 0o644, "root:x:0:\nnobody:x:65534:\n"),
	}
}

func sortEntries(entries []Entry) {
	slices.SortStableFunc(entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
}

// WriteOCIArchive writes img as an OCI image layout in a tar, named ref
// (annotations io.containerd.image.name = ref and
// org.opencontainers.image.ref.name = its tag, as containerd and BuildKit
// write them).
func WriteOCIArchive(w io.Writer, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "imagebuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.WriteImage(img); err != nil {
		return err
	}
	// The descriptor by hand: AppendImage would add an artifactType, which
	// belongs to artifacts, not images.
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	size, err := img.Size()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	err = p.AppendDescriptor(v1.Descriptor{
		MediaType: mt,
		Size:      size,
		Digest:    digest,
		Annotations: map[string]string{
			"io.containerd.image.name":          ref,
			"org.opencontainers.image.ref.name": tag.TagStr(),
		},
	})
	if err != nil {
		return err
	}
	return tarDir(w, dir)
}

// tarDir writes the directories and regular files under dir as a tar with
// sorted names, the Epoch time stamp and root ownership.
func tarDir(w io.Writer, dir string) error {
	var entries []Entry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			entries = append(entries, Dir(rel, 0o755))
		case d.Type().IsRegular():
			entries = append(entries, Entry{Path: rel, Type: tar.TypeReg, Mode: 0o644, Source: p})
		default:
			return fmt.Errorf("%s: not a directory or regular file", p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sortEntries(entries)
	return Tar(w, entries)
}

// WriteDockerArchive writes img as `docker save` does, named ref.
func WriteDockerArchive(w io.Writer, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.Write(tag, img, w)
}

// WriteFile writes an archive to path through a temporary file and a
// rename, so that path never holds half an archive.
func WriteFile(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
