package ociruntime

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/oci"
	"google.golang.org/grpc"
)

// storeImages adapts the shared image store to Images.
type storeImages struct{ store *oci.Store }

func imageProto(img *oci.Image) *runtimev1.Image {
	return &runtimev1.Image{
		Ref:        img.Ref,
		Digest:     img.Digest,
		Size:       img.Size,
		Entrypoint: slices.Clone(img.Config.Entrypoint),
		Cmd:        slices.Clone(img.Config.Cmd),
		Env:        slices.Clone(img.Config.Env),
		WorkingDir: img.Config.WorkingDir,
		User:       img.Config.User,
	}
}

func (s storeImages) Resolve(_ context.Context, ref string) (*runtimev1.Image, error) {
	img, err := s.store.Get(ref)
	if err != nil {
		return nil, err
	}
	return imageProto(img), nil
}

// PrepareRootfs mounts the image's overlay at dir/rootfs (with its upper
// and work directories next to it). It is always writable: a read-only
// container root is made by runc (root.readonly), which needs to create
// its mount points first.
func (s storeImages) PrepareRootfs(ctx context.Context, ref, id, dir string) (string, error) {
	img, err := s.store.Get(ref)
	if err != nil {
		return "", err
	}
	rootfs, err := s.store.PrepareRootfs(ctx, img, id, dir, false)
	if err != nil {
		return "", err
	}
	return rootfs.Path, nil
}

func (s storeImages) ReleaseRootfs(_ context.Context, id, _ string) error {
	return s.store.ReleaseRootfs(id)
}

// storeService serves the Images RPCs from the shared image store.
type storeService struct {
	store    *oci.Store
	insecure []string // registry hosts reachable over plain HTTP
	log      *slog.Logger
}

var _ runtimev1.ImageManager = (*storeService)(nil)

// isInsecure reports whether ref's registry is configured as insecure.
func (s *storeService) isInsecure(ref string) bool {
	canon, err := oci.NormalizeReference(ref)
	if err != nil {
		return false
	}
	host, _, _ := strings.Cut(canon, "/")
	return slices.Contains(s.insecure, host)
}

// PullImage pulls an image, streaming each layer's progress; the last
// message is the image.
func (s *storeService) PullImage(r *runtimev1.PullImageRequest, stream grpc.ServerStreamingServer[runtimev1.PullProgress]) error {
	if r.Ref == "" {
		return errdefs.Field(errdefs.ErrInvalidArgument, "ref", "an image reference is required")
	}
	opts := oci.PullOptions{Insecure: s.isInsecure(r.Ref)}
	if r.Auth != nil && (r.Auth.Username != "" || r.Auth.Password != "") {
		opts.Auth = &oci.Auth{Username: r.Auth.Username, Password: r.Auth.Password}
	}
	var sendErr error
	opts.Progress = func(p oci.Progress) {
		if sendErr != nil {
			return
		}
		sendErr = stream.Send(&runtimev1.PullProgress{Layer: p.Layer, Phase: string(p.Phase), DoneBytes: p.Done, TotalBytes: p.Total})
	}
	img, err := s.store.Pull(stream.Context(), r.Ref, opts)
	if err != nil {
		return err
	}
	if sendErr != nil {
		return sendErr
	}
	return stream.Send(&runtimev1.PullProgress{Phase: "done", Finished: true, Image: imageProto(img)})
}

// ImportImage reads an OCI layout or docker save archive sent in chunks.
func (s *storeService) ImportImage(stream grpc.ClientStreamingServer[runtimev1.ImportChunk, runtimev1.ImportImageResponse]) error {
	pr, pw := io.Pipe()
	go func() {
		for {
			chunk, err := stream.Recv()
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
	images, err := s.store.Import(stream.Context(), pr)
	pr.CloseWithError(errors.New("import finished"))
	if err != nil {
		return err
	}
	resp := &runtimev1.ImportImageResponse{}
	for _, img := range images {
		resp.Images = append(resp.Images, imageProto(img))
	}
	return stream.SendAndClose(resp)
}

// ListImages lists the store's images.
func (s *storeService) ListImages(context.Context, *runtimev1.ListImagesRequest) (*runtimev1.ListImagesResponse, error) {
	images, err := s.store.List()
	if err != nil {
		return nil, err
	}
	resp := &runtimev1.ListImagesResponse{}
	for _, img := range images {
		resp.Images = append(resp.Images, imageProto(img))
	}
	return resp, nil
}

// RemoveImage forgets an image and collects the content nothing else
// uses. Removing a missing image succeeds.
func (s *storeService) RemoveImage(ctx context.Context, r *runtimev1.RemoveImageRequest) (*runtimev1.RemoveImageResponse, error) {
	if err := s.store.Remove(ctx, r.Ref); err != nil {
		return nil, err
	}
	if removed, freed, err := s.store.GC(ctx); err != nil {
		s.log.Warn("image garbage collection", "err", err)
	} else if removed > 0 {
		s.log.Info("image garbage collected", "removed", removed, "freedBytes", freed)
	}
	return &runtimev1.RemoveImageResponse{}, nil
}

// ImageStatus returns an image, or NotFound.
func (s *storeService) ImageStatus(_ context.Context, r *runtimev1.ImageStatusRequest) (*runtimev1.Image, error) {
	img, err := s.store.Get(r.Ref)
	if err != nil {
		return nil, err
	}
	return imageProto(img), nil
}
