// Package serve holds the plugin-side go-plugin glue the contract packages
// (plugins/runtime/v1, plugins/network/v1) share: one ServeConfig shape for
// every kind of plugin, so that every plugin logs, handshakes and reports
// errors the same way.
package serve

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/plugins/errgrpc"
	"google.golang.org/grpc"
)

// Config returns the go-plugin configuration that serves p under name on
// the given handshake and protocol version. A nil logger logs JSON to
// stderr, which the host re-emits in its own log. The gRPC server carries
// the error class translation of errgrpc.
func Config(handshake plugin.HandshakeConfig, version int, name string, p plugin.Plugin, logger hclog.Logger) *plugin.ServeConfig {
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Info})
	}
	return &plugin.ServeConfig{
		HandshakeConfig:  handshake,
		VersionedPlugins: map[int]plugin.PluginSet{version: {name: p}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, errgrpc.ServerOptions()...)...)
		},
		Logger: logger,
	}
}

// CheckSetConfig checks the parts of a SetConfig request every plugin
// checks alike: the negotiated version must be one the plugin speaks
// (empty: the host did not negotiate; the plugin's own version holds),
// else an error of class versionClass; and the state directory must be an
// absolute path. It returns the cleaned state directory.
func CheckSetConfig(apiVersion, speaks, stateDir string, versionClass error) (string, error) {
	if apiVersion != "" && apiVersion != speaks {
		return "", errdefs.Field(versionClass, "api_version", fmt.Sprintf("%q is not spoken by this plugin (it speaks %s)", apiVersion, speaks))
	}
	if stateDir == "" || !filepath.IsAbs(stateDir) {
		return "", errdefs.Field(errdefs.ErrInvalidArgument, "state_dir", fmt.Sprintf("%q must be an absolute path", stateDir))
	}
	return filepath.Clean(stateDir), nil
}
