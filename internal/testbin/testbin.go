// Package testbin gives tests the module's binaries and test images: the
// ones `make build` and `make testimages` made (found next to
// $PADDOCK_BIN, which `make test` sets), or, outside make, binaries built
// once per test process.
package testbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	built = map[string]string{}
)

// Root is the module's root directory.
func Root(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("testbin: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Binary returns the path of the binary of the module's cmd/NAME.
func Binary(tb testing.TB, name string) string {
	tb.Helper()
	if bin := os.Getenv("PADDOCK_BIN"); bin != "" {
		p := filepath.Join(filepath.Dir(bin), name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	root := Root(tb)
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("paddock-testbin-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(dir, name)
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	cmd := exec.Command(gobin, "build", "-o", tmp, "./cmd/"+name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("testbin: build cmd/%s: %v: %s", name, err, b)
	}
	// A rename, so that test processes building at once never run a
	// half-written binary.
	if err := os.Rename(tmp, out); err != nil {
		tb.Fatal(err)
	}
	built[name] = out
	return out
}

// Image returns build/images/NAME.tar. A missing archive fails the test
// under CI=true (make test builds the images first) and skips it
// otherwise.
func Image(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join(Root(tb), "build", "images", name+".tar")
	if _, err := os.Stat(p); err != nil {
		if !errors.Is(err, os.ErrNotExist) || os.Getenv("CI") == "true" {
			tb.Fatalf("test image %s: %v (make testimages builds it; make test does that first)", p, err)
		}
		tb.Skipf("skipping: test image %s is missing (run make testimages)", p)
	}
	return p
}

// Containers checks that this machine can run the tests' containers —
// root and runc — and returns the busybox test image archive. Without
// them the test is skipped outside CI and fails under CI=true.
func Containers(tb testing.TB) (busybox string) {
	tb.Helper()
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "root"
	case func() bool { _, err := exec.LookPath("runc"); return err != nil }():
		missing = "runc (Debian package runc; make deps)"
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("this test runs containers and needs %s, and CI=true", missing)
		}
		tb.Skipf("skipping: this test runs containers and needs %s", missing)
	}
	return Image(tb, "busybox")
}
