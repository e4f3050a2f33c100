package ociruntime

import (
	"context"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/grpc"
)

// Images is what the plugin needs of an image store to run containers:
// an image's configuration and a root filesystem made from it. It is
// defined here, by its consumer; the shared image store
// (runtimes/internal/oci) is adapted to it, and tests use a directory.
type Images interface {
	// Resolve returns the configuration of image ref (entrypoint, cmd,
	// env, working dir, user, digest). An unknown ref is ErrNotFound.
	Resolve(ctx context.Context, ref string) (*runtimev1.Image, error)
	// PrepareRootfs makes a writable root filesystem of image ref for
	// container id inside dir (an existing directory that belongs to the
	// container) and returns its path.
	PrepareRootfs(ctx context.Context, ref, id, dir string) (string, error)
	// ReleaseRootfs undoes PrepareRootfs for container id and dir. It is
	// idempotent and must work in a later process than PrepareRootfs ran
	// in (after a plugin restart). The plugin removes dir afterwards.
	ReleaseRootfs(ctx context.Context, id, dir string) error
}

// The Images service of the contract is delegated to the image store (or
// Options.ImageService); without one it answers ErrNotImplemented.

func (p *Plugin) imageService() (runtimev1.ImageManager, error) {
	if _, err := p.configured(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.imageSvc == nil {
		return nil, errdefs.New(errdefs.ErrNotImplemented, "the runc plugin has no image service configured")
	}
	return p.imageSvc, nil
}

// imageStore returns the Images in use (nil before SetConfig).
func (p *Plugin) imageStore() Images {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.images
}

// PullImage pulls an image through the image service.
func (p *Plugin) PullImage(r *runtimev1.PullImageRequest, s grpc.ServerStreamingServer[runtimev1.PullProgress]) error {
	svc, err := p.imageService()
	if err != nil {
		return err
	}
	return svc.PullImage(r, s)
}

// ImportImage imports an archive through the image service.
func (p *Plugin) ImportImage(s grpc.ClientStreamingServer[runtimev1.ImportChunk, runtimev1.ImportImageResponse]) error {
	svc, err := p.imageService()
	if err != nil {
		return err
	}
	return svc.ImportImage(s)
}

// ListImages lists the images of the image service.
func (p *Plugin) ListImages(ctx context.Context, r *runtimev1.ListImagesRequest) (*runtimev1.ListImagesResponse, error) {
	svc, err := p.imageService()
	if err != nil {
		return nil, err
	}
	return svc.ListImages(ctx, r)
}

// RemoveImage removes an image from the image service.
func (p *Plugin) RemoveImage(ctx context.Context, r *runtimev1.RemoveImageRequest) (*runtimev1.RemoveImageResponse, error) {
	svc, err := p.imageService()
	if err != nil {
		return nil, err
	}
	return svc.RemoveImage(ctx, r)
}

// ImageStatus returns an image of the image service.
func (p *Plugin) ImageStatus(ctx context.Context, r *runtimev1.ImageStatusRequest) (*runtimev1.Image, error) {
	svc, err := p.imageService()
	if err != nil {
		return nil, err
	}
	return svc.ImageStatus(ctx, r)
}
