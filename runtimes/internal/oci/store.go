package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// Store is a content-addressed image store in one directory. See the package
// documentation for its layout and concurrency contract.
type Store struct {
	root string
}

// Image is an image in the store.
type Image struct {
	// Ref is the image's canonical reference (NormalizeReference).
	Ref string `json:"ref"`
	// Digest is the manifest digest ("sha256:...").
	Digest string `json:"digest"`
	// ConfigDigest is the digest of the image configuration: the image ID.
	ConfigDigest string `json:"configDigest"`
	// Config holds what the image configuration says about running it.
	Config ImageConfig `json:"config"`
	// Layers lists the layers bottom first.
	Layers []Layer `json:"layers"`
	// Size is the total size of the image's blobs (manifest, configuration
	// and compressed layers) in bytes.
	Size int64 `json:"size"`
}

// ImageConfig is the part of an image configuration that a runtime uses.
type ImageConfig struct {
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty"`
	Env        []string          `json:"env,omitempty"`
	WorkingDir string            `json:"workingDir,omitempty"`
	User       string            `json:"user,omitempty"`
	StopSignal string            `json:"stopSignal,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// Layer is one layer of an image.
type Layer struct {
	// Digest is the digest of the layer blob as stored (usually compressed).
	Digest string `json:"digest"`
	// DiffID is the digest of the uncompressed tar: the unpacked layer's name.
	DiffID    string `json:"diffID"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
}

// index is the content of index.json.
type index struct {
	Version int               `json:"version"`
	Images  map[string]*Image `json:"images"`
}

const indexVersion = 1

// Open opens the store rooted at root, creating its directories if needed.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", root, err)
	}
	s := &Store{root: abs}
	for _, dir := range []string{"", "blobs/sha256", "layers/sha256", "locks", "rootfs", "tmp", "empty"} {
		if err := os.MkdirAll(s.path(dir), 0o700); err != nil {
			return nil, fmt.Errorf("image store %s: %w", abs, err)
		}
	}
	return s, nil
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

// Get returns the image that ref names: a reference (normalized first) or a
// manifest digest ("sha256:..."). It serves the image service's Status verb.
// An image not in the store is an ErrNotFound.
func (s *Store) Get(ref string) (*Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	keys, err := idx.lookup(ref)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("image %q is not in the image store", ref))
	}
	return idx.Images[keys[0]], nil
}

// List returns every image in the store, one per reference, sorted by
// reference.
func (s *Store) List() ([]*Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	images := make([]*Image, 0, len(idx.Images))
	for _, ref := range slices.Sorted(maps.Keys(idx.Images)) {
		images = append(images, idx.Images[ref])
	}
	return images, nil
}

// Remove forgets the image that ref names (a reference, or a manifest digest
// to forget every reference to it). Removing an image that is not there
// succeeds. The content stays until GC finds nothing else uses it.
func (s *Store) Remove(ctx context.Context, ref string) error {
	return s.updateIndex(ctx, func(idx *index) error {
		keys, err := idx.lookup(ref)
		if err != nil {
			return err
		}
		for _, k := range keys {
			delete(idx.Images, k)
		}
		return nil
	})
}

var digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// lookup returns the index keys that ref names, sorted.
func (idx *index) lookup(ref string) ([]string, error) {
	if digestRE.MatchString(ref) {
		var keys []string
		for k, img := range idx.Images {
			if img.Digest == ref {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		return keys, nil
	}
	canon, err := NormalizeReference(ref)
	if err != nil {
		return nil, err
	}
	if _, ok := idx.Images[canon]; ok {
		return []string{canon}, nil
	}
	return nil, nil
}

func (s *Store) readIndex() (*index, error) {
	idx := &index{Version: indexVersion, Images: map[string]*Image{}}
	data, err := os.ReadFile(s.path("index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	if err := json.Unmarshal(data, idx); err != nil {
		return nil, fmt.Errorf("read image index %s: %w", s.path("index.json"), err)
	}
	if idx.Version != indexVersion {
		return nil, fmt.Errorf("image index %s has version %d, this program reads version %d", s.path("index.json"), idx.Version, indexVersion)
	}
	if idx.Images == nil {
		idx.Images = map[string]*Image{}
	}
	return idx, nil
}

// updateIndex applies fn to the index under index.lock and replaces
// index.json atomically. When fn fails, nothing is written.
func (s *Store) updateIndex(ctx context.Context, fn func(*index) error) error {
	l, err := lockFile(ctx, s.path("index.lock"), unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer l.unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := fn(idx); err != nil {
		return err
	}
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("encode image index: %w", err)
	}
	return s.writeFileAtomic("index.json", data)
}

// writeFileAtomic writes data to the file rel (relative to the root) through
// a synced temporary file and a rename.
func (s *Store) writeFileAtomic(rel string, data []byte) error {
	return s.publishFile(rel, data, os.Rename)
}

// createFileAtomic is writeFileAtomic for a file that must not exist yet:
// it fails with fs.ErrExist if it does.
func (s *Store) createFileAtomic(rel string, data []byte) error {
	return s.publishFile(rel, data, os.Link)
}

func (s *Store) publishFile(rel string, data []byte, publish func(tmp, dst string) error) error {
	f, err := os.CreateTemp(s.path("tmp"), "file-")
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	dst := s.path(rel)
	if err := publish(tmp, dst); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	return syncDir(filepath.Dir(dst))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// hexOf returns the hex part of a "sha256:<hex>" digest, or an
// ErrInvalidArgument if digest is not one.
func hexOf(digest string) (string, error) {
	if !digestRE.MatchString(digest) {
		return "", errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("digest %q is not supported: want sha256:<64 lower-case hex digits>", digest))
	}
	return strings.TrimPrefix(digest, "sha256:"), nil
}

func (s *Store) blobPath(hex string) string  { return s.path("blobs", "sha256", hex) }
func (s *Store) layerPath(hex string) string { return s.path("layers", "sha256", hex) }
