//go:build tools

// Package gvisor only records the gVisor commands this module builds, so
// that go mod tidy keeps their dependencies: runsc, and (in ./shim) its
// containerd shim.
package gvisor

import (
	_ "gvisor.dev/gvisor/runsc"
)
