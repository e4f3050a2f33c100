// Package testlock serialises, across test processes, the tests that start
// containers, mount file systems or make cgroups. `go test ./...` runs
// packages in parallel; the conformance suite's leak check would otherwise
// count another package's containers as leaks of its own.
package testlock

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Path is the lock file every such test takes.
var Path = filepath.Join(os.TempDir(), "paddock-machine-tests.lock")

// Acquire takes the machine-wide test lock and returns its release; for a
// TestMain that holds it for a whole test binary.
func Acquire() (release func(), err error) {
	f, err := os.OpenFile(Path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("test lock %s: %w", Path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("test lock %s: %w", Path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Machine takes the machine-wide test lock until tb ends. Not for tests
// whose subtests also take it: the lock does not nest.
func Machine(tb testing.TB) {
	tb.Helper()
	release, err := Acquire()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(release)
}
