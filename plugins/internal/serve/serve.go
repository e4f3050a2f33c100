// Package serve holds the plugin-side go-plugin glue the contract packages
// (plugins/runtime/v1, plugins/network/v1) share: one ServeConfig shape for
// every kind of plugin, so that every plugin logs, handshakes and reports
// errors the same way.
package serve

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
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
