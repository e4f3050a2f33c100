package oci

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/test/images/imagebuild"
)

func TestNormalizeReference(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"library/busybox", "docker.io/library/busybox:latest"},
		{"docker.io/busybox", "docker.io/library/busybox:latest"},
		{"index.docker.io/library/busybox:latest", "docker.io/library/busybox:latest"},
		{"someone/app:v2", "docker.io/someone/app:v2"},
		{"paddock.dev/test/busybox:latest", "paddock.dev/test/busybox:latest"},
		{"paddock.dev/test/busybox", "paddock.dev/test/busybox:latest"},
		{"localhost:5000/app", "localhost:5000/app:latest"},
		{"127.0.0.1:5000/a/b/c:tag", "127.0.0.1:5000/a/b/c:tag"},
		{"busybox@sha256:" + strings.Repeat("ab", 32), "docker.io/library/busybox@sha256:" + strings.Repeat("ab", 32)},
	}
	for _, tt := range tests {
		got, err := NormalizeReference(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeReference(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "UPPER/case", "a b", "busybox:", "busybox@sha256:short"} {
		_, err := NormalizeReference(bad)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || (bad != "" && !strings.Contains(err.Error(), bad)) {
			t.Errorf("NormalizeReference(%q) = %v, want ErrInvalidArgument naming it", bad, err)
		}
	}
}

// checkProgress checks the progress events of a pull of img: per layer, the
// phases in order and ending in exactly one done; byte counts that grow to
// the layer's size. With fresh, every layer was downloaded and unpacked, and
// the downloaded bytes add up to the image's layer sizes.
func checkProgress(t *testing.T, img *Image, events []Progress, fresh bool) {
	t.Helper()
	rank := map[Phase]int{PhaseDownloading: 0, PhaseExtracting: 1, PhaseDone: 2}
	byLayer := map[string][]Progress{}
	for _, e := range events {
		byLayer[e.Layer] = append(byLayer[e.Layer], e)
	}
	if len(byLayer) != len(img.Layers) {
		t.Errorf("progress events name %d layers, the image has %d", len(byLayer), len(img.Layers))
	}
	var downloaded, want int64
	for _, l := range img.Layers {
		want += l.Size
		evs := byLayer[l.Digest]
		if len(evs) == 0 || evs[len(evs)-1].Phase != PhaseDone {
			t.Errorf("layer %s: events %v do not end with done", l.Digest, evs)
			continue
		}
		last := map[Phase]int64{}
		for i, e := range evs {
			if e.Total != l.Size {
				t.Errorf("layer %s: event %v has Total %d, want %d", l.Digest, e, e.Total, l.Size)
			}
			if i > 0 && rank[e.Phase] < rank[evs[i-1].Phase] {
				t.Errorf("layer %s: phase %s after %s", l.Digest, e.Phase, evs[i-1].Phase)
			}
			if e.Phase == PhaseDone && i != len(evs)-1 {
				t.Errorf("layer %s: done before the last event", l.Digest)
			}
			if e.Done < last[e.Phase] || e.Done > e.Total {
				t.Errorf("layer %s: %s Done %d after %d (Total %d)", l.Digest, e.Phase, e.Done, last[e.Phase], e.Total)
			}
			last[e.Phase] = e.Done
		}
		_, sawDownload := last[PhaseDownloading]
		_, sawExtract := last[PhaseExtracting]
		if fresh {
			if !sawDownload || last[PhaseDownloading] != l.Size {
				t.Errorf("layer %s: downloaded %d bytes (reported: %v), want %d", l.Digest, last[PhaseDownloading], sawDownload, l.Size)
			}
			if !sawExtract || last[PhaseExtracting] != l.Size {
				t.Errorf("layer %s: extracting reached %d bytes (reported: %v), want %d", l.Digest, last[PhaseExtracting], sawExtract, l.Size)
			}
		} else if sawDownload || sawExtract {
			t.Errorf("layer %s: downloaded or unpacked again: %v", l.Digest, evs)
		}
		downloaded += last[PhaseDownloading]
	}
	if fresh && downloaded != want {
		t.Errorf("downloaded %d bytes in all, the layers hold %d", downloaded, want)
	}
}

func TestPullFromInsecureRegistry(t *testing.T) {
	src := testImage(t)
	host := startRegistry(t, nil)
	ref := host + "/test/busybox:latest"
	push(t, ref, src, nil)
	s := openStore(t)
	ctx := t.Context()

	// Plain HTTP is refused unless the registry is declared insecure, even
	// on loopback (where go-containerregistry would fall back to it).
	_, err := s.Pull(ctx, ref, PullOptions{})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "insecure") {
		t.Fatalf("Pull(%s) without Insecure = %v, want ErrFailedPrecondition about insecure registries", ref, err)
	}
	if images, _ := s.List(); len(images) != 0 {
		t.Fatalf("List() after a refused pull = %v, want nothing", images)
	}

	var events []Progress
	img, err := s.Pull(ctx, ref, PullOptions{Insecure: true, Progress: func(p Progress) { events = append(events, p) }})
	if err != nil {
		t.Fatalf("Pull(%s, Insecure) = %v", ref, err)
	}
	if img.Ref != ref || img.Digest != digest(t, src) {
		t.Errorf("Pull = %s@%s, want %s@%s", img.Ref, img.Digest, ref, digest(t, src))
	}
	if !slices.Equal(img.Config.Cmd, []string{"sh"}) || img.Config.WorkingDir != "/tmp" || len(img.Config.Env) != 1 {
		t.Errorf("Pull config = %+v, want Cmd [sh], WorkingDir /tmp and PATH", img.Config)
	}
	manifest, err := src.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != len(manifest.Layers) {
		t.Fatalf("Pull has %d layers, want %d", len(img.Layers), len(manifest.Layers))
	}
	checkProgress(t, img, events, true)

	// Every blob is stored under its digest and verifies.
	blobs := []string{img.Digest, img.ConfigDigest}
	var size int64
	for i, l := range img.Layers {
		if l.Digest != manifest.Layers[i].Digest.String() || l.Size != manifest.Layers[i].Size {
			t.Errorf("layer %d = %s (%d bytes), want %s (%d bytes)", i, l.Digest, l.Size, manifest.Layers[i].Digest, manifest.Layers[i].Size)
		}
		blobs = append(blobs, l.Digest)
		size += l.Size
	}
	for _, d := range blobs {
		if got := fileDigest(t, filepath.Join(s.Root(), "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))); got != d {
			t.Errorf("blob %s holds content with digest %s", d, got)
		}
	}
	if img.Size <= size {
		t.Errorf("Size = %d, want the layers' %d plus manifest and config", img.Size, size)
	}

	// The busybox layer is unpacked: the binary and its applets.
	bb := layerDir(s, img.Layers[0].DiffID)
	if fi, err := os.Stat(filepath.Join(bb, "bin", "busybox")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/busybox in the unpacked layer: %v, %v", fi, err)
	}
	for _, applet := range []string{"bin/sh", "bin/sleep", "usr/bin/wget", "usr/bin/nc"} {
		if target, err := os.Readlink(filepath.Join(bb, applet)); err != nil || target != "/bin/busybox" {
			t.Errorf("%s in the unpacked layer -> %q, %v, want -> /bin/busybox", applet, target, err)
		}
	}

	got, err := s.Get(ref)
	if err != nil || got.Digest != img.Digest {
		t.Errorf("Get(%s) = %v, %v", ref, got, err)
	}
	if got, err := s.Get(img.Digest); err != nil || got.Ref != ref {
		t.Errorf("Get(%s) = %v, %v, want %s", img.Digest, got, err, ref)
	}

	// Pulling again verifies what is there and fetches nothing.
	events = nil
	if _, err := s.Pull(ctx, ref, PullOptions{Insecure: true, Progress: func(p Progress) { events = append(events, p) }}); err != nil {
		t.Fatalf("second Pull = %v", err)
	}
	checkProgress(t, img, events, false)
}

func TestPullAuthentication(t *testing.T) {
	src := image(t, layer(t, imagebuild.File("hello", 0o644, "world")))
	host := startRegistry(t, basicAuth("paddock", "s3cret"))
	ref := host + "/private/app:v1"
	push(t, ref, src, &authn.Basic{Username: "paddock", Password: "s3cret"})

	forbidden := startRegistry(t, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				return // the ping: no authentication asked
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`))
		})
	})

	tests := []struct {
		name string
		ref  string
		auth *Auth
		want error // nil: success
	}{
		{"anonymous", ref, nil, errdefs.ErrPermissionDenied},
		{"wrong password", ref, &Auth{Username: "paddock", Password: "wrong"}, errdefs.ErrPermissionDenied},
		{"forbidden", forbidden + "/private/app:v1", &Auth{Username: "paddock", Password: "s3cret"}, errdefs.ErrPermissionDenied},
		{"credentials", ref, &Auth{Username: "paddock", Password: "s3cret"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			img, err := s.Pull(t.Context(), tt.ref, PullOptions{Insecure: true, Auth: tt.auth})
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Pull(%s) = %v, want %v", tt.ref, err, tt.want)
				}
				if images, _ := s.List(); len(images) != 0 {
					t.Errorf("List() after a refused pull = %v", images)
				}
				return
			}
			if err != nil || img.Digest != digest(t, src) {
				t.Fatalf("Pull(%s) = %v, %v, want %s", tt.ref, img, err, digest(t, src))
			}
		})
	}
}

func TestPullErrors(t *testing.T) {
	host := startRegistry(t, nil)
	push(t, host+"/test/app:v1", image(t, layer(t, imagebuild.File("a", 0o644, "b"))), nil)

	// An address where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name     string
		ref      string
		insecure bool
		want     error
	}{
		{"unknown repository", host + "/test/nothing:v1", true, errdefs.ErrNotFound},
		{"unknown tag", host + "/test/app:v2", true, errdefs.ErrNotFound},
		{"unknown digest", host + "/test/app@sha256:" + strings.Repeat("0", 64), true, errdefs.ErrNotFound},
		{"unreachable insecure", closed + "/test/app:v1", true, errdefs.ErrUnavailable},
		{"unreachable", closed + "/test/app:v1", false, errdefs.ErrUnavailable},
		{"bad reference", "Not A/Reference", false, errdefs.ErrInvalidArgument},
	}
	s := openStore(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Pull(t.Context(), tt.ref, PullOptions{Insecure: tt.insecure})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Pull(%s) = %v, want %v", tt.ref, err, tt.want)
			}
			if tt.want == errdefs.ErrInvalidArgument && !strings.Contains(err.Error(), tt.ref) {
				t.Errorf("Pull(%s) = %v, want the error to name the reference", tt.ref, err)
			}
		})
	}
	if _, err := s.Get("test/nothing"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
}

// Two Stores on one directory stand for two plugin processes: pulling the
// same image from both at once downloads and unpacks each layer once, and
// leaves one copy of everything.
func TestConcurrentPullsShareTheStore(t *testing.T) {
	src := testImage(t)
	host := startRegistry(t, nil)
	ref := host + "/test/busybox:latest"
	push(t, ref, src, nil)

	root := t.TempDir()
	var stores []*Store
	for range 2 {
		s, err := Open(root)
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	const pulls = 4
	events := make([][]Progress, pulls)
	images := make([]*Image, pulls)
	errs := make([]error, pulls)
	var wg sync.WaitGroup
	for i := range pulls {
		wg.Go(func() {
			images[i], errs[i] = stores[i%2].Pull(t.Context(), ref, PullOptions{
				Insecure: true,
				Progress: func(p Progress) { events[i] = append(events[i], p) },
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
		if images[i].Digest != digest(t, src) {
			t.Errorf("pull %d gave %s, want %s", i, images[i].Digest, digest(t, src))
		}
	}
	img := images[0]

	// Each layer was downloaded by one pull and unpacked by one pull.
	for _, l := range img.Layers {
		downloads, unpacks := 0, 0
		for i := range pulls {
			d, u := false, false
			for _, e := range events[i] {
				d = d || (e.Layer == l.Digest && e.Phase == PhaseDownloading)
				u = u || (e.Layer == l.Digest && e.Phase == PhaseExtracting)
			}
			if d {
				downloads++
			}
			if u {
				unpacks++
			}
		}
		if downloads != 1 || unpacks != 1 {
			t.Errorf("layer %s: downloaded by %d pulls and unpacked by %d, want 1 and 1", l.Digest, downloads, unpacks)
		}
	}

	wantBlobs := hexes(img.Digest, img.ConfigDigest)
	var wantLayers []string
	for _, l := range img.Layers {
		wantBlobs = append(wantBlobs, hexes(l.Digest)...)
		wantLayers = append(wantLayers, hexes(l.DiffID)...)
	}
	slices.Sort(wantBlobs)
	slices.Sort(wantLayers)
	if got := names(t, filepath.Join(root, "blobs", "sha256")); !slices.Equal(got, wantBlobs) {
		t.Errorf("blobs = %v, want %v", got, wantBlobs)
	}
	if got := names(t, filepath.Join(root, "layers", "sha256")); !slices.Equal(got, wantLayers) {
		t.Errorf("layers = %v, want %v", got, wantLayers)
	}
	if got := names(t, filepath.Join(root, "tmp")); len(got) != 0 {
		t.Errorf("tmp holds %v, want nothing", got)
	}
	for _, s := range stores {
		if list, err := s.List(); err != nil || len(list) != 1 {
			t.Errorf("List() = %v, %v, want one image", list, err)
		}
	}
}

// A blob damaged on disk (a crash, a disk error) fails verification on the
// next pull and is fetched again.
func TestDamagedBlobIsFetchedAgain(t *testing.T) {
	src := testImage(t)
	host := startRegistry(t, nil)
	ref := host + "/test/busybox:latest"
	push(t, ref, src, nil)
	s := openStore(t)
	img, err := s.Pull(t.Context(), ref, PullOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}

	truncated, flipped := img.Layers[0], img.Layers[2]
	blobPath := func(d string) string {
		return filepath.Join(s.Root(), "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
	}
	if err := os.Truncate(blobPath(truncated.Digest), truncated.Size/2); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(blobPath(flipped.Digest))
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(blobPath(flipped.Digest), data, 0o600); err != nil {
		t.Fatal(err)
	}

	var events []Progress
	if _, err := s.Pull(t.Context(), ref, PullOptions{Insecure: true, Progress: func(p Progress) { events = append(events, p) }}); err != nil {
		t.Fatalf("Pull after damage = %v", err)
	}
	refetched := map[string]int64{}
	for _, e := range events {
		if e.Phase == PhaseDownloading {
			refetched[e.Layer] = e.Done
		}
	}
	want := map[string]int64{truncated.Digest: truncated.Size, flipped.Digest: flipped.Size}
	if len(refetched) != len(want) || refetched[truncated.Digest] != truncated.Size || refetched[flipped.Digest] != flipped.Size {
		t.Errorf("fetched again (layer: bytes) %v, want %v", refetched, want)
	}
	for _, l := range img.Layers {
		if got := fileDigest(t, blobPath(l.Digest)); got != l.Digest {
			t.Errorf("blob %s holds %s after the pull", l.Digest, got)
		}
	}
}
