package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// parallelLayers is how many layers one ingest fetches and unpacks at once.
const parallelLayers = 3

// ingest stores img (its blobs, verified, and its layers, unpacked) and
// records it under each of refs (canonical references). The caller holds
// gc.lock shared. report may be nil.
func (s *Store) ingest(ctx context.Context, img v1.Image, refs []string, report func(Progress)) ([]*Image, error) {
	image, rawManifest, rawConfig, err := describe(img)
	if err != nil {
		return nil, err
	}

	var mu sync.Mutex
	emit := func(p Progress) {
		if report != nil {
			mu.Lock()
			defer mu.Unlock()
			report(p)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, parallelLayers)
	errs := make([]error, len(image.Layers))
	var wg sync.WaitGroup
	for i, layer := range image.Layers {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			if err := s.fetchLayer(ctx, img, layer, emit); err != nil {
				errs[i] = err
				cancel()
			}
		})
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		return nil, err
	}

	for _, b := range []struct {
		digest string
		data   []byte
	}{{image.ConfigDigest, rawConfig}, {image.Digest, rawManifest}} {
		open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b.data)), nil }
		if _, err := s.ensureBlob(ctx, b.digest, int64(len(b.data)), open, nil); err != nil {
			return nil, err
		}
	}

	images := make([]*Image, 0, len(refs))
	for _, ref := range refs {
		im := *image
		im.Ref = ref
		images = append(images, &im)
	}
	err = s.updateIndex(ctx, func(idx *index) error {
		for _, im := range images {
			idx.Images[im.Ref] = im
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return images, nil
}

// firstError returns the first error that is not a cancellation caused by
// another error, or the first error.
func firstError(errs []error) error {
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if !errors.Is(err, context.Canceled) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// describe checks img's manifest and configuration and returns the Image
// they describe (without Ref) and their raw bytes.
func describe(img v1.Image) (*Image, []byte, []byte, error) {
	mt, err := img.MediaType()
	if err != nil {
		return nil, nil, nil, invalidImage(err)
	}
	if mt != types.OCIManifestSchema1 && mt != types.DockerManifestSchema2 {
		return nil, nil, nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("image manifest has media type %q: want an OCI or Docker v2 image manifest", mt))
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, nil, nil, invalidImage(err)
	}
	manifest, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, nil, nil, invalidImage(err)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return nil, nil, nil, invalidImage(err)
	}
	if got := digestOf(rawConfig); got != manifest.Config.Digest.String() {
		return nil, nil, nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("image configuration has digest %s, the manifest says %s", got, manifest.Config.Digest))
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, nil, nil, invalidImage(err)
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return nil, nil, nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("image is for %s: want linux", cfg.OS))
	}
	if len(cfg.RootFS.DiffIDs) != len(manifest.Layers) {
		return nil, nil, nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("image manifest lists %d layers, its configuration %d", len(manifest.Layers), len(cfg.RootFS.DiffIDs)))
	}
	image := &Image{
		Digest:       digestOf(rawManifest),
		ConfigDigest: manifest.Config.Digest.String(),
		Config: ImageConfig{
			Entrypoint: cfg.Config.Entrypoint,
			Cmd:        cfg.Config.Cmd,
			Env:        cfg.Config.Env,
			WorkingDir: cfg.Config.WorkingDir,
			User:       cfg.Config.User,
			StopSignal: cfg.Config.StopSignal,
			Labels:     cfg.Config.Labels,
		},
		Size: int64(len(rawManifest) + len(rawConfig)),
	}
	for i, desc := range manifest.Layers {
		switch desc.MediaType {
		case types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer, types.DockerLayer, types.DockerUncompressedLayer:
		default:
			return nil, nil, nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("image layer %d has media type %q, which this store does not fetch", i, desc.MediaType))
		}
		layer := Layer{Digest: desc.Digest.String(), DiffID: cfg.RootFS.DiffIDs[i].String(), Size: desc.Size, MediaType: string(desc.MediaType)}
		for _, d := range []string{layer.Digest, layer.DiffID} {
			if _, err := hexOf(d); err != nil {
				return nil, nil, nil, err
			}
		}
		image.Layers = append(image.Layers, layer)
		image.Size += desc.Size
	}
	return image, rawManifest, rawConfig, nil
}

func invalidImage(err error) error {
	if classified(err) {
		return err
	}
	return fmt.Errorf("image is not valid: %w: %w", errdefs.ErrInvalidArgument, err)
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// fetchLayer makes sure the store holds layer's blob and its unpacked form.
func (s *Store) fetchLayer(ctx context.Context, img v1.Image, layer Layer, emit func(Progress)) error {
	h, err := v1.NewHash(layer.Digest)
	if err != nil {
		return err
	}
	open := func() (io.ReadCloser, error) {
		l, err := img.LayerByDigest(h)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	}
	downloading := throttled(emit, layer, PhaseDownloading)
	if _, err := s.ensureBlob(ctx, layer.Digest, layer.Size, open, downloading); err != nil {
		return err
	}
	if err := s.ensureLayer(ctx, layer, throttled(emit, layer, PhaseExtracting)); err != nil {
		return err
	}
	emit(Progress{Layer: layer.Digest, Phase: PhaseDone, Done: layer.Size, Total: layer.Size})
	return nil
}

// throttled returns a byte counter that reports phase for layer every
// progressStep bytes and when it reaches the layer's size.
func throttled(emit func(Progress), layer Layer, phase Phase) func(int64) {
	last := int64(-1)
	return func(done int64) {
		if done == layer.Size || last < 0 || done-last >= progressStep {
			last = done
			emit(Progress{Layer: layer.Digest, Phase: phase, Done: done, Total: layer.Size})
		}
	}
}

// ensureLayer unpacks layer's stored blob into layers/sha256/<diffid>
// unless it is there already. One caller at a time, across processes,
// checks or unpacks a given layer; the others wait and reuse it. The layer
// is unpacked under tmp/ and renamed into place, so it is either whole or
// absent. count, if not nil, is told the blob bytes read so far.
func (s *Store) ensureLayer(ctx context.Context, layer Layer, count func(int64)) error {
	hx, err := hexOf(layer.DiffID)
	if err != nil {
		return err
	}
	l, err := lockFile(ctx, s.path("locks", "layer-"+hx+".lock"), unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer l.unlock()
	final := s.layerPath(hx)
	if _, err := os.Lstat(final); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	blobHex, _ := hexOf(layer.Digest)
	f, err := os.Open(s.blobPath(blobHex))
	if err != nil {
		return fmt.Errorf("layer %s: %w", layer.Digest, err)
	}
	defer f.Close()
	tmp, err := os.MkdirTemp(s.path("tmp"), "layer-"+hx[:12]+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // nothing left to remove once renamed
	rootfs := tmp + "/rootfs"
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return err
	}

	var src io.Reader = f
	if count != nil {
		src = &countingReader{r: f, report: count}
	}
	cl, err := partial.CompressedToLayer(&blobLayer{r: src, layer: layer})
	if err != nil {
		return err
	}
	rc, err := cl.Uncompressed() // gzip, zstd or plain, by the content's magic bytes
	if err != nil {
		return invalidLayer(layer, err)
	}
	defer rc.Close()
	h := sha256.New()
	tee := io.TeeReader(rc, h)
	if err := unpackLayer(ctx, tee, rootfs); err != nil {
		return fmt.Errorf("unpack layer %s: %w", layer.Digest, err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // the tar's padding, and the compressed stream's checksum
		return invalidLayer(layer, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != layer.DiffID {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("layer %s unpacks to content with digest %s, the image configuration says %s", layer.Digest, got, layer.DiffID))
	}

	d, err := os.Open(rootfs)
	if err != nil {
		return err
	}
	err = unix.Syncfs(int(d.Fd()))
	d.Close()
	if err != nil {
		return fmt.Errorf("sync layer %s: %w", layer.DiffID, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("layer %s: %w", layer.DiffID, err)
	}
	return syncDir(s.path("layers", "sha256"))
}

func invalidLayer(layer Layer, err error) error {
	return fmt.Errorf("layer %s cannot be decompressed: %w: %w", layer.Digest, errdefs.ErrInvalidArgument, err)
}

// blobLayer is a stored layer blob as go-containerregistry sees one, for its
// decompression.
type blobLayer struct {
	r     io.Reader
	layer Layer
}

func (b *blobLayer) Digest() (v1.Hash, error)           { return v1.NewHash(b.layer.Digest) }
func (b *blobLayer) Compressed() (io.ReadCloser, error) { return io.NopCloser(b.r), nil }
func (b *blobLayer) Size() (int64, error)               { return b.layer.Size, nil }
func (b *blobLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(b.layer.MediaType), nil
}
