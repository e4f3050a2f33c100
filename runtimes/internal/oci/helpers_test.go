package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"github.com/paddock-dev/paddock/internal/testlock"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/paddock-dev/paddock/test/images/imagebuild"
)

// inCI reports whether a missing prerequisite must fail the test rather
// than skip it.
func inCI() bool { return os.Getenv("CI") == "true" }

// requireRoot skips (outside CI) or fails (in CI) a test that needs root:
// overlay mounts, whiteout devices, trusted xattrs.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		// Mounts would look like leaks to the conformance suite's
		// tests running in another package.
		testlock.Machine(t)
		return
	}
	if inCI() {
		t.Fatal("this test needs root (overlay mounts, whiteout devices, trusted xattrs), and CI=true")
	}
	t.Skip("skipping: needs root for overlay mounts, whiteout devices and trusted xattrs")
}

const busyboxBinary = "/bin/busybox"

var busyboxLayer = sync.OnceValues(func() (v1.Layer, error) {
	img, err := imagebuild.Busybox(busyboxBinary)
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	return layers[0], nil
})

// requireBusybox returns the layer of the busybox test image, built from
// Debian's busybox-static.
func requireBusybox(t *testing.T) v1.Layer {
	t.Helper()
	if _, err := os.Stat(busyboxBinary); err != nil {
		if inCI() {
			t.Fatalf("%s is missing and CI=true: install Debian's busybox-static (make deps)", busyboxBinary)
		}
		t.Skipf("skipping: %s is missing: install Debian's busybox-static (make deps)", busyboxBinary)
	}
	l, err := busyboxLayer()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// layer makes a layer of entries.
func layer(t *testing.T, entries ...imagebuild.Entry) v1.Layer {
	t.Helper()
	l, err := imagebuild.Layer(entries)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// image makes an image of layers, bottom first.
func image(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := imagebuild.Image(v1.Config{Cmd: []string{"sh"}, Env: []string{imagebuild.DefaultPath}, WorkingDir: "/tmp"}, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// testImage is the busybox image with two more small layers: three layers
// to fetch and unpack.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	return image(t,
		requireBusybox(t),
		layer(t, imagebuild.Dir("etc", 0o755), imagebuild.File("etc/motd", 0o644, "layer two\n")),
		layer(t, imagebuild.Dir("srv", 0o755), imagebuild.File("srv/data", 0o600, strings.Repeat("paddock ", 100000))),
	)
}

// startRegistry serves a registry (go-containerregistry's, in memory) on
// loopback over plain HTTP, wrapped by wrap if not nil, and returns its
// host:port.
func startRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// basicAuth requires HTTP basic authentication as user with password.
func basicAuth(user, password string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="paddock-test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// push writes img to ref on a plain-HTTP registry.
func push(t *testing.T, ref string, img v1.Image, auth authn.Authenticator) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	if err := remote.Write(r, img, remote.WithAuth(auth), remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ociArchive(t *testing.T, ref string, img v1.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := imagebuild.WriteOCIArchive(&buf, ref, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func dockerArchive(t *testing.T, ref string, img v1.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := imagebuild.WriteDockerArchive(&buf, ref, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// importImage imports img as ref through an OCI archive.
func importImage(t *testing.T, s *Store, ref string, img v1.Image) *Image {
	t.Helper()
	images, err := s.Import(t.Context(), bytes.NewReader(ociArchive(t, ref, img)))
	if err != nil {
		t.Fatalf("Import(%s) = %v", ref, err)
	}
	if len(images) != 1 {
		t.Fatalf("Import(%s) gave %d images, want 1", ref, len(images))
	}
	return images[0]
}

// names lists a directory of the store, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func hexes(digests ...string) []string {
	var out []string
	for _, d := range digests {
		out = append(out, strings.TrimPrefix(d, "sha256:"))
	}
	return out
}

// fileDigest is the sha256 digest of a file's content.
func fileDigest(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func digest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func layerDir(s *Store, diffID string) string {
	return filepath.Join(s.Root(), "layers", "sha256", strings.TrimPrefix(diffID, "sha256:"), "rootfs")
}

// rawTar is a tar of the given entries written verbatim.
func rawTar(t *testing.T, entries ...imagebuild.Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := imagebuild.Tar(&buf, entries); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
