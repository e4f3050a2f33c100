// Package shim is the entry point of the container shim binary
// cmd/paddock-runc-shim, which the runc and runsc plugins start for every
// container. The shim itself, and the records it shares with the plugins,
// are in runtimes/internal/ociruntime/shim.
package shim

import ishim "github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"

// Run runs the shim for the container directory args[0] and returns the
// process's exit code.
func Run(args []string) int { return ishim.Run(args) }
