// Package networkv1 is version 1 of Paddock's network plugin contract: the
// gRPC protocol (network.proto and its generated code), the Go interfaces
// a network plugin implements, and the go-plugin glue.
//
// A plugin's main is one call:
//
//	func main() { networkv1.Serve(mynet.New()) }
//
// where mynet implements Plugin. Methods return errors of the classes in
// core/errdefs (errdefs.New(errdefs.ErrResourceExhausted, "no address
// left in 10.244.0.0/24")); they cross the wire as gRPC status codes and
// come back to the host as the same classes. Detach of a missing
// attachment must succeed.
//
// The host calls, in order: Info and SetConfig (through the plugin host),
// SetupNode with the node's pod range, then Attach and Detach per sandbox,
// SetPolicy whenever NetworkPolicies or pods change, GC after a restart
// with the attachments it still wants, Status and Check at any time.
//
// Plugin authors import only this package (and core/errdefs). It never
// imports the control plane.
package networkv1

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/plugins/errgrpc"
	pluginserve "github.com/paddock-dev/paddock/plugins/internal/serve"
	"google.golang.org/grpc"
)

// APIVersion is the protocol version this package speaks.
const APIVersion = "v1"

// ProtocolVersion is go-plugin's protocol version for APIVersion.
const ProtocolVersion = 1

// PluginName is the name the network service is dispensed under.
const PluginName = "network"

// Handshake is the handshake of network plugins. The cookie keeps a
// network plugin from being started by hand or as another kind of plugin.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "PADDOCK_NETWORK_PLUGIN",
	MagicCookieValue: "4d2e9a71-network-v1-c81b5f06",
}

// Status codes of StatusResponse.code (CNI STATUS's).
const (
	StatusOK             = 0
	StatusIPAMExhausted  = 50
	StatusDaemonDown     = 51
	StatusPluginSpecific = 100
)

// The role interfaces a network plugin implements. Their methods are the
// gRPC services' methods, with the generated message types.

// Identity names the plugin and says what it can do.
type Identity interface {
	Info(context.Context, *InfoRequest) (*InfoResponse, error)
	Capabilities(context.Context, *CapabilitiesRequest) (*CapabilitiesResponse, error)
	SetConfig(context.Context, *SetConfigRequest) (*SetConfigResponse, error)
}

// NodeSetup learns the node's ranges and peers.
type NodeSetup interface {
	SetupNode(context.Context, *SetupNodeRequest) (*SetupNodeResponse, error)
}

// Attacher connects and disconnects sandboxes.
type Attacher interface {
	Attach(context.Context, *AttachRequest) (*AttachResponse, error)
	Detach(context.Context, *DetachRequest) (*DetachResponse, error)
	Check(context.Context, *CheckRequest) (*CheckResponse, error)
	GC(context.Context, *GCRequest) (*GCResponse, error)
}

// StatusReporter says whether the plugin can attach.
type StatusReporter interface {
	Status(context.Context, *StatusRequest) (*StatusResponse, error)
}

// PolicyEnforcer keeps tenants apart and enforces NetworkPolicy.
type PolicyEnforcer interface {
	SetPolicy(context.Context, *SetPolicyRequest) (*SetPolicyResponse, error)
}

// Plugin is a whole network plugin.
type Plugin interface {
	Identity
	NodeSetup
	Attacher
	StatusReporter
	PolicyEnforcer
}

// Serve serves impl as a network plugin on the process's go-plugin
// handshake and returns when the host tells the plugin to exit. Logs go to
// stderr as JSON, which the host re-emits in its own log.
func Serve(impl Plugin) {
	plugin.Serve(ServeConfig(impl, nil))
}

// ServeConfig returns the go-plugin configuration Serve uses; tests use it
// with ServeConfig.Test to run a plugin in-process.
func ServeConfig(impl Plugin, logger hclog.Logger) *plugin.ServeConfig {
	return pluginserve.Config(Handshake, ProtocolVersion, PluginName, &GRPCPlugin{Impl: impl}, logger)
}

// GRPCPlugin is the go-plugin glue of network plugins: Impl on the plugin
// side, a *Client on the host side.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin
}

// GRPCServer registers the plugin's services.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	RegisterIdentityServer(s, p.Impl)
	RegisterNetworkServer(s, p.Impl)
	return nil
}

// GRPCClient returns the host's client of the plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return NewClient(conn), nil
}

// DialOptions are the gRPC options the host dials plugins with (the error
// class translation).
func DialOptions() []grpc.DialOption { return errgrpc.DialOptions() }

// Client is the host's view of a network plugin: both services' clients
// over one connection.
type Client struct {
	IdentityClient
	NetworkClient
	conn *grpc.ClientConn
}

// NewClient returns a Client on conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{IdentityClient: NewIdentityClient(conn), NetworkClient: NewNetworkClient(conn), conn: conn}
}

// Conn returns the client's connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// A Plugin is both generated server interfaces.
var (
	_ IdentityServer = Plugin(nil)
	_ NetworkServer  = Plugin(nil)
)

// CheckSetConfig checks what every plugin checks of a SetConfig request:
// that the negotiated version is APIVersion (or not given) and that the
// state directory is an absolute path, which it returns cleaned. Errors
// name the field.
func CheckSetConfig(r *SetConfigRequest) (stateDir string, err error) {
	return pluginserve.CheckSetConfig(r.GetApiVersion(), APIVersion, r.GetStateDir(), errdefs.ErrFailedPrecondition)
}
