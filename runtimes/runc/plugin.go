package runc

import (
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime"
)

// Plugin is the runc runtime plugin. Create it with New; it serves
// nothing until SetConfig has named its state directory.
type Plugin = ociruntime.Plugin

// Options are what New needs besides the configuration SetConfig gives
// (their Flavor is ignored: New sets runc).
type Options = ociruntime.Options

// Config is the plugin's configuration, the JSON that SetConfig receives.
type Config = ociruntime.Config

// Images resolves images and prepares root filesystems (Options.Images).
type Images = ociruntime.Images

// ShimBinary is the file name of the container shim binary
// (cmd/paddock-runc-shim), looked up next to the plugin's own executable
// unless the configuration names another.
const ShimBinary = ociruntime.ShimBinary

// New returns a runc plugin with opts.
func New(opts Options) *Plugin {
	opts.Flavor = ociruntime.Runc
	return ociruntime.New(opts)
}

// IsShim reports whether a process with arguments args (os.Args) is to run
// as a container shim; its main then calls RunShim instead of serving the
// plugin.
func IsShim(args []string) bool { return ociruntime.IsShim(args) }

// RunShim runs the shim with os.Args[2:] as args and returns the process's
// exit code. See IsShim.
func RunShim(args []string) int { return ociruntime.RunShim(args) }
