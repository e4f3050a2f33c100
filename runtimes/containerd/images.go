package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	diffapi "github.com/containerd/containerd/api/services/diff/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/oci"
	"google.golang.org/grpc"
)

// Images live in containerd. PullImage and ImportImage fetch an image
// with the shared image code (runtimes/internal/oci) into a staging store
// in the state directory, hand its manifest, configuration and layers to
// containerd's content store in the image namespace (Config.ImageNamespace)
// under an image record, and drop the staging copy. A container's image is
// copied on first use into its tenant's namespace — content, image record
// and the layers unpacked into the snapshotter by containerd's differ — so
// that tenants share nothing but the daemon's deduplicated blobs.

// GC labels that make containerd keep what an image refers to.
const (
	gcRefContent  = "containerd.io/gc.ref.content."
	gcRefSnapshot = "containerd.io/gc.ref.snapshot."
)

// unpackLocks keeps two unpackings of one layer chain in one namespace
// apart.
var unpackLocks keyedMutex

// imageRecord is an image in a namespace with its manifest and config.
type imageRecord struct {
	name     string
	target   *types.Descriptor
	manifest v1.Manifest
	config   v1.ConfigFile
}

// getImage reads image ref (normalized) of namespace ns.
func (d *daemon) getImage(ctx context.Context, ns, ref string) (*imageRecord, error) {
	name, err := oci.NormalizeReference(ref)
	if err != nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "ref", fmt.Sprintf("%q is not an image reference: %v", ref, err))
	}
	resp, err := d.images.Get(inNamespace(ctx, ns), &imagesapi.GetImageRequest{Name: name})
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("image %q not found", ref))
		}
		return nil, err
	}
	return d.describe(ctx, ns, resp.Image.Name, resp.Image.Target)
}

func (d *daemon) describe(ctx context.Context, ns, name string, target *types.Descriptor) (*imageRecord, error) {
	img := &imageRecord{name: name, target: target}
	if err := d.readJSON(ctx, ns, target.Digest, &img.manifest); err != nil {
		return nil, fmt.Errorf("image %s: manifest: %w", name, err)
	}
	if err := d.readJSON(ctx, ns, img.manifest.Config.Digest.String(), &img.config); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", name, err)
	}
	if len(img.config.RootFS.DiffIDs) != len(img.manifest.Layers) {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("image %s: %d layers but %d diff ids", name, len(img.manifest.Layers), len(img.config.RootFS.DiffIDs)))
	}
	return img, nil
}

// proto returns the image as the contract's message.
func (img *imageRecord) proto() *runtimev1.Image {
	size := img.target.Size + img.manifest.Config.Size
	for _, l := range img.manifest.Layers {
		size += l.Size
	}
	c := img.config.Config
	return &runtimev1.Image{Ref: img.name, Digest: img.target.Digest, Size: size, Entrypoint: c.Entrypoint,
		Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User}
}

// chainIDs are the snapshot names of an image's layers stacked: the
// OCI ChainID of each prefix of its diff ids.
func (img *imageRecord) chainIDs() []string {
	ids := make([]string, len(img.config.RootFS.DiffIDs))
	for i, diff := range img.config.RootFS.DiffIDs {
		if i == 0 {
			ids[i] = diff.String()
			continue
		}
		sum := sha256.Sum256([]byte(ids[i-1] + " " + diff.String()))
		ids[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return ids
}

// manifestLabels make containerd's GC keep a manifest's config and layers.
func (img *imageRecord) manifestLabels() map[string]string {
	labels := map[string]string{gcRefContent + "config": img.manifest.Config.Digest.String()}
	for i, l := range img.manifest.Layers {
		labels[fmt.Sprintf("%sl.%d", gcRefContent, i)] = l.Digest.String()
	}
	return labels
}

// putImage creates or updates the image record name → target in ns.
func (d *daemon) putImage(ctx context.Context, ns, name string, target *types.Descriptor) error {
	ctx = inNamespace(ctx, ns)
	rec := &imagesapi.Image{Name: name, Target: target}
	_, err := d.images.Create(ctx, &imagesapi.CreateImageRequest{Image: rec})
	if errdefs.IsAlreadyExists(err) {
		_, err = d.images.Update(ctx, &imagesapi.UpdateImageRequest{Image: rec})
	}
	return err
}

// imageFor makes image ref ready in namespace ns (ctx carries a lease
// there): its content and record copied from the image namespace and its
// layers unpacked. It returns the image and the snapshot to start from.
func (p *Plugin) imageFor(ctx context.Context, d *daemon, cfg *Config, ns, ref string) (*runtimev1.Image, string, error) {
	img, err := d.getImage(ctx, cfg.ImageNamespace, ref)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, "", errdefs.Field(errdefs.ErrNotFound, "config.image", fmt.Sprintf("image %q not found: pull or import it first", ref))
		}
		return nil, "", fmt.Errorf("image %q: %w", ref, err)
	}
	chain := img.chainIDs()
	if len(chain) == 0 {
		return nil, "", errdefs.Field(errdefs.ErrInvalidArgument, "config.image", fmt.Sprintf("image %q has no layers", ref))
	}
	copyFrom := func(digest string) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(d.copyBlob(ctx, cfg.ImageNamespace, digest, pw)) }()
			return pr, nil
		}
	}
	unlock := unpackLocks.lock(ns + "/" + chain[len(chain)-1])
	defer unlock()
	for i, l := range img.manifest.Layers {
		if _, err := d.snapshots.Stat(inNamespace(ctx, ns), &snapshotsapi.StatSnapshotRequest{Snapshotter: cfg.Snapshotter, Key: chain[i]}); err == nil {
			continue
		} else if !errdefs.IsNotFound(err) {
			return nil, "", err
		}
		if err := d.writeBlob(ctx, ns, blob{l.Digest.String(), l.Size}, nil, copyFrom(l.Digest.String())); err != nil {
			return nil, "", fmt.Errorf("image %q: copy layer %s: %w", ref, l.Digest, err)
		}
		parent := ""
		if i > 0 {
			parent = chain[i-1]
		}
		if err := d.unpackLayer(ctx, ns, cfg.Snapshotter, l, parent, chain[i]); err != nil {
			return nil, "", fmt.Errorf("image %q: unpack layer %s: %w", ref, l.Digest, err)
		}
	}
	// The image's record in the tenant's namespace keeps its snapshots
	// from the garbage collector (config → top snapshot).
	configBlob := blob{img.manifest.Config.Digest.String(), img.manifest.Config.Size}
	if err := d.writeBlob(ctx, ns, configBlob, map[string]string{gcRefSnapshot + cfg.Snapshotter: chain[len(chain)-1]}, copyFrom(configBlob.digest)); err != nil {
		return nil, "", err
	}
	if err := d.writeBlob(ctx, ns, blob{img.target.Digest, img.target.Size}, img.manifestLabels(), copyFrom(img.target.Digest)); err != nil {
		return nil, "", err
	}
	if err := d.putImage(ctx, ns, img.name, img.target); err != nil {
		return nil, "", err
	}
	return img.proto(), chain[len(chain)-1], nil
}

// unpackLayer applies layer l on parent into the committed snapshot
// name, with containerd's differ.
func (d *daemon) unpackLayer(ctx context.Context, ns, snapshotter string, l v1.Descriptor, parent, name string) error {
	ctx = inNamespace(ctx, ns)
	key := "paddock-extract-" + newID() + " " + name
	prep, err := d.snapshots.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Snapshotter: snapshotter, Key: key, Parent: parent})
	if err != nil {
		return err
	}
	remove := func() {
		d.snapshots.Remove(context.WithoutCancel(ctx), &snapshotsapi.RemoveSnapshotRequest{Snapshotter: snapshotter, Key: key})
	}
	desc := &types.Descriptor{MediaType: string(l.MediaType), Digest: l.Digest.String(), Size: l.Size}
	if _, err := d.diff.Apply(ctx, &diffapi.ApplyRequest{Diff: desc, Mounts: prep.Mounts}); err != nil {
		remove()
		return err
	}
	if _, err := d.snapshots.Commit(ctx, &snapshotsapi.CommitSnapshotRequest{Snapshotter: snapshotter, Name: name, Key: key}); err != nil {
		remove()
		if errdefs.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	return nil
}

// imageService returns the configuration, the daemon and the staging
// store, or FailedPrecondition before SetConfig.
func (p *Plugin) imageService() (*Config, *daemon, *oci.Store, error) {
	cfg, d, err := p.configured()
	if err != nil {
		return nil, nil, nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return cfg, d, p.staging, nil
}

// hand passes a staged image to containerd's image namespace and drops
// the staging copy.
func (p *Plugin) hand(ctx context.Context, d *daemon, cfg *Config, staging *oci.Store, img *oci.Image) (*runtimev1.Image, error) {
	defer func() {
		ctx := context.WithoutCancel(ctx)
		if err := staging.Remove(ctx, img.Ref); err != nil {
			p.log.Warn("drop a staged image", "image", img.Ref, "err", err)
		} else if _, _, err := staging.GC(ctx); err != nil {
			p.log.Warn("staging store garbage collection", "err", err)
		}
	}()
	lctx, release, err := d.withLease(ctx, cfg.ImageNamespace)
	if err != nil {
		return nil, err
	}
	defer release()
	fromFile := func(digest string) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) {
			return os.Open(filepath.Join(staging.Root(), "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
		}
	}
	manifestBytes, err := os.ReadFile(filepath.Join(staging.Root(), "blobs", "sha256", strings.TrimPrefix(img.Digest, "sha256:")))
	if err != nil {
		return nil, fmt.Errorf("staged image %s: %w", img.Ref, err)
	}
	rec := &imageRecord{name: img.Ref}
	m, err := v1.ParseManifest(strings.NewReader(string(manifestBytes)))
	if err != nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("image %s: manifest: %v", img.Ref, err))
	}
	rec.manifest = *m
	mediaType := string(m.MediaType)
	if mediaType == "" {
		mediaType = "application/vnd.oci.image.manifest.v1+json"
	}
	rec.target = &types.Descriptor{MediaType: mediaType, Digest: img.Digest, Size: int64(len(manifestBytes))}
	for _, l := range m.Layers {
		if err := d.writeBlob(lctx, cfg.ImageNamespace, blob{l.Digest.String(), l.Size}, nil, fromFile(l.Digest.String())); err != nil {
			return nil, fmt.Errorf("image %s: layer %s: %w", img.Ref, l.Digest, err)
		}
	}
	if err := d.writeBlob(lctx, cfg.ImageNamespace, blob{m.Config.Digest.String(), m.Config.Size}, nil, fromFile(m.Config.Digest.String())); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", img.Ref, err)
	}
	if err := d.writeBlob(lctx, cfg.ImageNamespace, blob{img.Digest, rec.target.Size}, rec.manifestLabels(), fromFile(img.Digest)); err != nil {
		return nil, fmt.Errorf("image %s: manifest: %w", img.Ref, err)
	}
	if err := d.putImage(lctx, cfg.ImageNamespace, img.Ref, rec.target); err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Ref, err)
	}
	described, err := d.getImage(ctx, cfg.ImageNamespace, img.Ref)
	if err != nil {
		return nil, err
	}
	return described.proto(), nil
}

// PullImage pulls an image from its registry (HTTPS, or plain HTTP for an
// insecure registry of the configuration) into containerd, streaming each
// layer's progress; the last message is the image.
func (p *Plugin) PullImage(r *runtimev1.PullImageRequest, s grpc.ServerStreamingServer[runtimev1.PullProgress]) error {
	cfg, d, staging, err := p.imageService()
	if err != nil {
		return err
	}
	if r.Ref == "" {
		return errdefs.Field(errdefs.ErrInvalidArgument, "ref", "an image reference is required")
	}
	canon, err := oci.NormalizeReference(r.Ref)
	if err != nil {
		return errdefs.Field(errdefs.ErrInvalidArgument, "ref", fmt.Sprintf("%q is not an image reference: %v", r.Ref, err))
	}
	host, _, _ := strings.Cut(canon, "/")
	opts := oci.PullOptions{Insecure: slices.Contains(cfg.InsecureRegistries, host)}
	if a := r.Auth; a != nil && (a.Username != "" || a.Password != "") {
		opts.Auth = &oci.Auth{Username: a.Username, Password: a.Password}
	}
	var sendErr error
	opts.Progress = func(pr oci.Progress) {
		if sendErr == nil {
			sendErr = s.Send(&runtimev1.PullProgress{Layer: pr.Layer, Phase: string(pr.Phase), DoneBytes: pr.Done, TotalBytes: pr.Total})
		}
	}
	staged, err := staging.Pull(s.Context(), r.Ref, opts)
	if err != nil {
		return err
	}
	if sendErr != nil {
		return sendErr
	}
	img, err := p.hand(s.Context(), d, cfg, staging, staged)
	if err != nil {
		return err
	}
	return s.Send(&runtimev1.PullProgress{Phase: "done", Finished: true, Image: img})
}

// ImportImage reads an OCI image layout or docker save archive sent in
// chunks into containerd.
func (p *Plugin) ImportImage(s grpc.ClientStreamingServer[runtimev1.ImportChunk, runtimev1.ImportImageResponse]) error {
	cfg, d, staging, err := p.imageService()
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		for {
			chunk, err := s.Recv()
			if errors.Is(err, io.EOF) {
				pw.Close()
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := pw.Write(chunk.Data); err != nil {
				return // the import failed and closed the reader
			}
		}
	}()
	staged, err := staging.Import(s.Context(), pr)
	pr.CloseWithError(errors.New("import finished"))
	if err != nil {
		return err
	}
	resp := &runtimev1.ImportImageResponse{}
	for _, st := range staged {
		img, err := p.hand(s.Context(), d, cfg, staging, st)
		if err != nil {
			return err
		}
		resp.Images = append(resp.Images, img)
	}
	return s.SendAndClose(resp)
}

// ListImages lists the image namespace's images.
func (p *Plugin) ListImages(ctx context.Context, _ *runtimev1.ListImagesRequest) (*runtimev1.ListImagesResponse, error) {
	cfg, d, _, err := p.imageService()
	if err != nil {
		return nil, err
	}
	list, err := d.images.List(inNamespace(ctx, cfg.ImageNamespace), &imagesapi.ListImagesRequest{})
	if err != nil {
		return nil, err
	}
	resp := &runtimev1.ListImagesResponse{}
	for _, rec := range list.Images {
		img, err := d.describe(ctx, cfg.ImageNamespace, rec.Name, rec.Target)
		if err != nil {
			p.log.Warn("image unreadable", "image", rec.Name, "err", err)
			continue
		}
		resp.Images = append(resp.Images, img.proto())
	}
	slices.SortFunc(resp.Images, func(a, b *runtimev1.Image) int { return strings.Compare(a.Ref, b.Ref) })
	return resp, nil
}

// RemoveImage removes an image from the image namespace and from every
// tenant namespace; containers made from it keep their snapshots, and
// containerd collects the rest. Removing a missing image succeeds.
func (p *Plugin) RemoveImage(ctx context.Context, r *runtimev1.RemoveImageRequest) (*runtimev1.RemoveImageResponse, error) {
	cfg, d, _, err := p.imageService()
	if err != nil {
		return nil, err
	}
	name, err := oci.NormalizeReference(r.Ref)
	if err != nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "ref", fmt.Sprintf("%q is not an image reference: %v", r.Ref, err))
	}
	nss, err := d.namespaces.List(ctx, &namespacesapi.ListNamespacesRequest{})
	if err != nil {
		return nil, err
	}
	for _, ns := range nss.Namespaces {
		if ns.Name != cfg.ImageNamespace && !strings.HasPrefix(ns.Name, cfg.NamespacePrefix) {
			continue
		}
		if _, err := d.images.Delete(inNamespace(ctx, ns.Name), &imagesapi.DeleteImageRequest{Name: name}); ignoreNotFound(err) != nil {
			return nil, fmt.Errorf("remove image %s from namespace %s: %w", name, ns.Name, err)
		}
	}
	return &runtimev1.RemoveImageResponse{}, nil
}

// ImageStatus returns an image of the image namespace, or NotFound.
func (p *Plugin) ImageStatus(ctx context.Context, r *runtimev1.ImageStatusRequest) (*runtimev1.Image, error) {
	cfg, d, _, err := p.imageService()
	if err != nil {
		return nil, err
	}
	img, err := d.getImage(ctx, cfg.ImageNamespace, r.Ref)
	if err != nil {
		return nil, err
	}
	return img.proto(), nil
}
