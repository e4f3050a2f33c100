package oci

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// Annotations that name an image in an OCI image layout's index.json.
const (
	annotationContainerdName = "io.containerd.image.name"          // a full reference
	annotationRefName        = "org.opencontainers.image.ref.name" // a tag, or a full reference
)

// Import stores the images of an archive read from r: an OCI image layout
// in a tar (images named by the io.containerd.image.name annotation, or by a
// full reference in org.opencontainers.image.ref.name) or a `docker save`
// tar (named by RepoTags). It returns one Image per name. An archive that is
// neither, or holds an image with no name, is an ErrInvalidArgument.
func (s *Store) Import(ctx context.Context, r io.Reader) ([]*Image, error) {
	l, err := lockFile(ctx, s.path("gc.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer l.unlock()

	work, err := os.MkdirTemp(s.path("tmp"), "import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	archive := filepath.Join(work, "archive.tar")
	if err := copyToFile(ctx, archive, r); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	names, err := archiveNames(archive)
	if err != nil {
		return nil, err
	}
	switch {
	case names["oci-layout"] && names["index.json"]:
		dir := filepath.Join(work, "layout")
		if err := extractLayout(archive, dir); err != nil {
			return nil, err
		}
		return s.importLayout(ctx, dir)
	case names["manifest.json"]:
		return s.importDocker(ctx, archive)
	}
	return nil, errdefs.New(errdefs.ErrInvalidArgument,
		"import: the archive is neither an OCI image layout (oci-layout, index.json) nor a docker save archive (manifest.json)")
}

func copyToFile(ctx context.Context, path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, &ctxReader{ctx: ctx, r: r}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// archiveNames lists the regular files of a tar, cleaned.
func archiveNames(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("import: the archive is not a valid tar: %v", err))
		}
		if hdr.Typeflag == tar.TypeReg {
			names[filepath.Clean(hdr.Name)] = true
		}
	}
}

// extractLayout writes the regular files of an OCI layout tar under dir.
// Only plain relative names are accepted, and nothing but directories and
// regular files is created, so nothing lands outside dir.
func extractLayout(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("import: the archive is not a valid tar: %v", err))
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		rel, err := entryName(hdr.Name)
		if err != nil || rel == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("import: archive entry %q is not a plain relative name", hdr.Name))
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		if err := copyToFile(context.Background(), dst, tr); err != nil {
			return fmt.Errorf("import: %s: %w", rel, err)
		}
	}
}

func (s *Store) importLayout(ctx context.Context, dir string) ([]*Image, error) {
	index, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, invalidArchive(err)
	}
	manifest, err := index.IndexManifest()
	if err != nil {
		return nil, invalidArchive(err)
	}
	var out []*Image
	for _, desc := range manifest.Manifests {
		refs, err := layoutRefs(desc)
		if err != nil {
			return nil, err
		}
		var img v1.Image
		switch {
		case desc.MediaType.IsImage():
			img, err = index.Image(desc.Digest)
		case desc.MediaType.IsIndex():
			img, err = platformImage(index, desc.Digest)
		default:
			return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("import: %s (%s) is not an image", refs[0], desc.MediaType))
		}
		if err != nil {
			return nil, invalidArchive(err)
		}
		images, err := s.ingest(ctx, img, refs, nil)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", refs[0], err)
		}
		out = append(out, images...)
	}
	return out, nil
}

// layoutRefs returns the canonical references an index.json descriptor
// names.
func layoutRefs(desc v1.Descriptor) ([]string, error) {
	var refs []string
	for _, raw := range []string{desc.Annotations[annotationContainerdName], desc.Annotations[annotationRefName]} {
		if raw == "" || !strings.Contains(raw, "/") { // a bare tag names no repository
			continue
		}
		ref, err := NormalizeReference(raw)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(refs, ref) {
			refs = append(refs, ref)
		}
	}
	if len(refs) == 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(
			"import: image %s in the archive has no name: want a full reference in annotation %s or %s", desc.Digest, annotationContainerdName, annotationRefName))
	}
	return refs, nil
}

// platformImage picks this machine's linux image from a nested index.
func platformImage(parent v1.ImageIndex, digest v1.Hash) (v1.Image, error) {
	index, err := parent.ImageIndex(digest)
	if err != nil {
		return nil, err
	}
	manifest, err := index.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, m := range manifest.Manifests {
		if m.MediaType.IsImage() && m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH {
			return index.Image(m.Digest)
		}
	}
	return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("import: index %s has no image for linux/%s", digest, runtime.GOARCH))
}

func (s *Store) importDocker(ctx context.Context, archive string) ([]*Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(archive) }
	manifest, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, invalidArchive(err)
	}
	var out []*Image
	for i, desc := range manifest {
		if len(desc.RepoTags) == 0 {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("import: image %d of the archive has no name (RepoTags)", i))
		}
		var refs []string
		for _, t := range desc.RepoTags {
			ref, err := NormalizeReference(t)
			if err != nil {
				return nil, err
			}
			refs = append(refs, ref)
		}
		tag, err := name.NewTag(desc.RepoTags[0])
		if err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("import: RepoTag %q: %v", desc.RepoTags[0], err))
		}
		img, err := tarball.Image(opener, &tag)
		if err != nil {
			return nil, invalidArchive(err)
		}
		images, err := s.ingest(ctx, img, refs, nil)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", refs[0], err)
		}
		out = append(out, images...)
	}
	return out, nil
}

func invalidArchive(err error) error {
	if classified(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("import: the archive is not valid: %w: %w", errdefs.ErrInvalidArgument, err)
}
