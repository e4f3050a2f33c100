package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/grpc"
)

// image is an imported image: its description and its layers flattened
// into one tar (images/DIGEST.tar), which each container unpacks into a
// root filesystem of its own. A real plugin keeps layers content-addressed
// and gives containers an overlay mount instead of a copy.
type image struct {
	meta      *runtimev1.Image
	rootfsTar string
}

// ImportImage reads an OCI archive (an OCI image layout in a tar, as
// `make testimages` or `skopeo copy ... oci-archive:` write) and keeps
// each image in it under the name in its io.containerd.image.name or
// org.opencontainers.image.ref.name annotation. References are used as
// they are written, without normalisation.
func (r *Runtime) ImportImage(s grpc.ClientStreamingServer[runtimev1.ImportChunk, runtimev1.ImportImageResponse]) error {
	root, err := r.configured()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Join(root, "images"), "import-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := receiveArchive(s, filepath.Join(tmp, "archive.tar")); err != nil {
		return err
	}
	if err := unpack(filepath.Join(tmp, "archive.tar"), filepath.Join(tmp, "layout")); err != nil {
		return invalid("archive", "not a readable tar: "+err.Error())
	}
	index, err := layout.ImageIndexFromPath(filepath.Join(tmp, "layout"))
	if err != nil {
		return invalid("archive", "not an OCI archive (no OCI image layout inside): "+err.Error())
	}
	manifest, err := index.IndexManifest()
	if err != nil {
		return invalid("archive", err.Error())
	}
	resp := &runtimev1.ImportImageResponse{}
	for _, desc := range manifest.Manifests {
		ref := desc.Annotations["io.containerd.image.name"]
		if ref == "" {
			ref = desc.Annotations["org.opencontainers.image.ref.name"]
		}
		if ref == "" || !desc.MediaType.IsImage() {
			return invalid("archive", fmt.Sprintf("%s: want a single-platform image with a name annotation", desc.Digest))
		}
		img, err := index.Image(desc.Digest)
		if err != nil {
			return invalid("archive", err.Error())
		}
		meta, err := r.storeImage(root, ref, img)
		if err != nil {
			return fmt.Errorf("import %s: %w", ref, err)
		}
		resp.Images = append(resp.Images, meta)
	}
	return s.SendAndClose(resp)
}

// receiveArchive writes the client's chunks to file.
func receiveArchive(s grpc.ClientStreamingServer[runtimev1.ImportChunk, runtimev1.ImportImageResponse], file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return f.Close()
		}
		if err != nil {
			return err
		}
		if _, err := f.Write(chunk.Data); err != nil {
			return err
		}
	}
}

// storeImage flattens img's layers (applying whiteouts) into
// images/DIGEST.tar and records it under ref.
func (r *Runtime) storeImage(root, ref string, img v1.Image) (*runtimev1.Image, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	file := filepath.Join(root, "images", digest.Hex+".tar")
	size, err := writeFlattened(img, file)
	if err != nil {
		return nil, err
	}
	c := cfg.Config
	meta := &runtimev1.Image{Ref: ref, Digest: digest.String(), Size: size, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User}
	r.mu.Lock()
	r.images[ref] = &image{meta: meta, rootfsTar: file}
	r.mu.Unlock()
	return meta, nil
}

func writeFlattened(img v1.Image, file string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".flatten-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	rc := mutate.Extract(img)
	defer rc.Close()
	n, err := io.Copy(tmp, rc)
	if err == nil {
		err = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	return n, err
}

// ListImages lists the imported images by reference.
func (r *Runtime) ListImages(context.Context, *runtimev1.ListImagesRequest) (*runtimev1.ListImagesResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	resp := &runtimev1.ListImagesResponse{}
	for _, ref := range slices.Sorted(maps.Keys(r.images)) {
		resp.Images = append(resp.Images, r.images[ref].meta)
	}
	return resp, nil
}

// ImageStatus returns an image, or NotFound.
func (r *Runtime) ImageStatus(_ context.Context, req *runtimev1.ImageStatusRequest) (*runtimev1.Image, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if img, ok := r.images[req.Ref]; ok {
		return img.meta, nil
	}
	return nil, notFound("image", req.Ref)
}

// RemoveImage forgets a reference, and deletes the flattened tar when no
// other reference names it. Containers keep their own copies. Removing a
// missing image succeeds, like every remove of the contract.
func (r *Runtime) RemoveImage(_ context.Context, req *runtimev1.RemoveImageRequest) (*runtimev1.RemoveImageResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	img, ok := r.images[req.Ref]
	if !ok {
		return &runtimev1.RemoveImageResponse{}, nil
	}
	delete(r.images, req.Ref)
	for _, o := range r.images {
		if o.rootfsTar == img.rootfsTar {
			return &runtimev1.RemoveImageResponse{}, nil
		}
	}
	if err := os.Remove(img.rootfsTar); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return &runtimev1.RemoveImageResponse{}, nil
}

// prepareRootfs unpacks an image's flattened tar into dir and writes the
// sandbox's DNS configuration, if any, to its /etc/resolv.conf.
func prepareRootfs(dir, rootfsTar string, dns *runtimev1.DNSConfig) error {
	if err := unpack(rootfsTar, dir); err != nil {
		return err
	}
	if len(dns.GetServers()) == 0 && len(dns.GetSearches()) == 0 && len(dns.GetOptions()) == 0 {
		return nil
	}
	var b strings.Builder
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	for _, s := range dns.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll("etc", 0o755); err != nil {
		return err
	}
	return root.WriteFile("etc/resolv.conf", []byte(b.String()), 0o644)
}

// unpack extracts the tar file archive into dir (made if missing).
//
// Archives are untrusted: an entry named ../../etc/cron.d/x, or one that
// writes through a symbolic link the archive made earlier, must not land
// outside dir. os.Root resolves every name inside dir and refuses any that
// would leave it, so no check here can be forgotten. Ownership and modes
// (set-id bits included) are kept: the plugin runs as root. Device nodes
// and fifos are skipped; a real plugin gives containers a /dev of their
// own.
func unpack(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimLeft(h.Name, "/"))
		if name == "." {
			continue
		}
		if err := unpackEntry(root, name, h, tr); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
}

func unpackEntry(root *os.Root, name string, h *tar.Header, r io.Reader) error {
	if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := root.MkdirAll(name, 0o755); err != nil {
			return err
		}
	case tar.TypeReg:
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		return errors.Join(root.Symlink(h.Linkname, name), root.Lchown(name, h.Uid, h.Gid))
	case tar.TypeLink: // a hard link: both names inside root
		return root.Link(path.Clean(strings.TrimLeft(h.Linkname, "/")), name)
	default:
		return nil
	}
	// Owner first: chown clears set-id bits, chmod then sets them.
	if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
		return err
	}
	return root.Chmod(name, h.FileInfo().Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
}
