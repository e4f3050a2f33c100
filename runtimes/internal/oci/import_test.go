package oci

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/test/images/imagebuild"
)

func TestImportArchives(t *testing.T) {
	src := testImage(t)
	s := openStore(t)
	ctx := t.Context()

	oci, err := s.Import(ctx, bytes.NewReader(ociArchive(t, "paddock.dev/test/busybox:latest", src)))
	if err != nil {
		t.Fatalf("Import(OCI layout) = %v", err)
	}
	if len(oci) != 1 || oci[0].Ref != "paddock.dev/test/busybox:latest" || oci[0].Digest != digest(t, src) {
		t.Fatalf("Import(OCI layout) = %+v, want paddock.dev/test/busybox:latest@%s", oci, digest(t, src))
	}

	// docker save names images by RepoTags, short names included.
	docker, err := s.Import(ctx, bytes.NewReader(dockerArchive(t, "busybox:saved", src)))
	if err != nil {
		t.Fatalf("Import(docker save) = %v", err)
	}
	if len(docker) != 1 || docker[0].Ref != "docker.io/library/busybox:saved" {
		t.Fatalf("Import(docker save) = %+v, want docker.io/library/busybox:saved", docker)
	}
	if !slices.Equal(docker[0].Config.Cmd, []string{"sh"}) || len(docker[0].Layers) != 3 {
		t.Errorf("Import(docker save) config %+v, %d layers; want Cmd [sh], 3 layers", docker[0].Config, len(docker[0].Layers))
	}

	// Both formats carry the same layers: each is unpacked once.
	var diffIDs []string
	for i, l := range oci[0].Layers {
		if docker[0].Layers[i].DiffID != l.DiffID {
			t.Errorf("layer %d: docker archive diff ID %s, OCI archive %s", i, docker[0].Layers[i].DiffID, l.DiffID)
		}
		diffIDs = append(diffIDs, hexes(l.DiffID)...)
	}
	slices.Sort(diffIDs)
	if got := names(t, filepath.Join(s.Root(), "layers", "sha256")); !slices.Equal(got, diffIDs) {
		t.Errorf("layers = %v, want %v", got, diffIDs)
	}
	if _, err := os.Stat(filepath.Join(layerDir(s, oci[0].Layers[2].DiffID), "srv", "data")); err != nil {
		t.Errorf("srv/data of layer 3: %v", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 {
		t.Errorf("List() = %v, %v, want two images", list, err)
	}
	if got := names(t, filepath.Join(s.Root(), "tmp")); len(got) != 0 {
		t.Errorf("tmp holds %v after the imports, want nothing", got)
	}
}

// The archives that `make testimages` writes import, whether rebuilt here
// by the same code or found in build/images.
func TestImportTestImages(t *testing.T) {
	img, err := imagebuild.Busybox(busyboxBinary)
	if err != nil {
		requireBusybox(t) // skips or fails with the reason
		t.Fatal(err)
	}
	s := openStore(t)
	got := importImage(t, s, imagebuild.BusyboxRef, img)
	if got.Ref != imagebuild.BusyboxRef || !slices.Equal(got.Config.Cmd, []string{"sh"}) {
		t.Errorf("Import = %+v", got)
	}
	// The layer built for the other tests came from a separate build.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d1, err1 := layers[0].Digest()
	d2, err2 := requireBusybox(t).Digest()
	if err1 != nil || err2 != nil || d1 != d2 {
		t.Errorf("two builds of the busybox layer gave %s and %s (%v, %v): the build is not reproducible", d1, d2, err1, err2)
	}

	for _, file := range []string{"busybox.tar", "server.tar"} {
		path := filepath.Join("..", "..", "..", "build", "images", file)
		t.Run(file, func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				if inCI() {
					t.Fatalf("%v: make test builds the test images first (make testimages), and CI=true", err)
				}
				t.Skipf("skipping: %v (run make testimages)", err)
			}
			defer f.Close()
			images, err := s.Import(t.Context(), f)
			if err != nil || len(images) != 1 {
				t.Fatalf("Import(%s) = %v, %v", path, images, err)
			}
		})
	}
}

func TestImportRejectsBadArchives(t *testing.T) {
	tests := []struct {
		name    string
		archive []byte
	}{
		{"not a tar", []byte("this is not an archive")},
		{"neither format", rawTar(t, imagebuild.File("README", 0o644, "hello"))},
		{"layout with an escaping name", rawTar(t,
			imagebuild.File("oci-layout", 0o644, `{"imageLayoutVersion":"1.0.0"}`),
			imagebuild.File("index.json", 0o644, `{"schemaVersion":2,"manifests":[]}`),
			imagebuild.File("../escape", 0o644, "x"))},
		{"layout with no image name", rawTar(t,
			imagebuild.File("oci-layout", 0o644, `{"imageLayoutVersion":"1.0.0"}`),
			imagebuild.File("index.json", 0o644, `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+
				"0000000000000000000000000000000000000000000000000000000000000000"+`","size":2,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}`))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			_, err := s.Import(t.Context(), bytes.NewReader(tt.archive))
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Import = %v, want ErrInvalidArgument", err)
			}
			if list, _ := s.List(); len(list) != 0 {
				t.Errorf("List() = %v after a refused import", list)
			}
			if got := names(t, filepath.Join(s.Root(), "tmp")); len(got) != 0 {
				t.Errorf("tmp holds %v, want nothing", got)
			}
		})
	}
}
