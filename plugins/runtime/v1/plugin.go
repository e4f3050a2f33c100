// Package runtimev1 is version 1 of Paddock's runtime plugin contract:
// the gRPC protocol (runtime.proto and its generated code), the Go
// interfaces a runtime plugin implements, and the go-plugin glue.
//
// A plugin's main is one call:
//
//	func main() { runtimev1.Serve(myruntime.New()) }
//
// where myruntime implements Plugin. Methods return errors of the classes
// in core/errdefs (errdefs.New(errdefs.ErrNotFound, "container x not
// found")); they cross the wire as gRPC status codes and come back to the
// host as the same classes. Stop and remove of a missing object must
// succeed.
//
// Plugin authors import only this package (and core/errdefs). It never
// imports the control plane.
package runtimev1

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

// PluginName is the name the runtime service is dispensed under.
const PluginName = "runtime"

// Handshake is the handshake of runtime plugins. The cookie keeps a
// runtime plugin from being started by hand or as another kind of plugin.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "PADDOCK_RUNTIME_PLUGIN",
	MagicCookieValue: "8b5c0f0e-runtime-v1-3f6a1c2d",
}

// The role interfaces a runtime plugin implements. Their methods are the
// gRPC services' methods, with the generated message types.

// Identity names the plugin and says what it can do.
type Identity interface {
	Info(context.Context, *InfoRequest) (*InfoResponse, error)
	Capabilities(context.Context, *CapabilitiesRequest) (*CapabilitiesResponse, error)
	SetConfig(context.Context, *SetConfigRequest) (*SetConfigResponse, error)
	// Health sends HealthEvents until the stream's context ends.
	Health(*HealthRequest, grpc.ServerStreamingServer[HealthEvent]) error
}

// SandboxManager runs sandboxes: one per pod.
type SandboxManager interface {
	CreateSandbox(context.Context, *CreateSandboxRequest) (*CreateSandboxResponse, error)
	StopSandbox(context.Context, *StopSandboxRequest) (*StopSandboxResponse, error)
	RemoveSandbox(context.Context, *RemoveSandboxRequest) (*RemoveSandboxResponse, error)
	InspectSandbox(context.Context, *InspectSandboxRequest) (*Sandbox, error)
	ListSandboxes(context.Context, *ListSandboxesRequest) (*ListSandboxesResponse, error)
	Recover(context.Context, *RecoverRequest) (*RecoverResponse, error)
}

// ContainerManager runs containers inside sandboxes.
type ContainerManager interface {
	CreateContainer(context.Context, *CreateContainerRequest) (*CreateContainerResponse, error)
	StartContainer(context.Context, *StartContainerRequest) (*StartContainerResponse, error)
	StopContainer(context.Context, *StopContainerRequest) (*StopContainerResponse, error)
	RemoveContainer(context.Context, *RemoveContainerRequest) (*RemoveContainerResponse, error)
	InspectContainer(context.Context, *InspectContainerRequest) (*Container, error)
	ListContainers(context.Context, *ListContainersRequest) (*ListContainersResponse, error)
	WaitContainer(context.Context, *WaitContainerRequest) (*ExitStatus, error)
	SignalContainer(context.Context, *SignalContainerRequest) (*SignalContainerResponse, error)
	UpdateResources(context.Context, *UpdateResourcesRequest) (*UpdateResourcesResponse, error)
	Stats(context.Context, *StatsRequest) (*ContainerStats, error)
}

// StreamingManager runs commands in containers and serves their logs.
type StreamingManager interface {
	ExecSync(context.Context, *ExecSyncRequest) (*ExecSyncResponse, error)
	Exec(grpc.BidiStreamingServer[ExecInput, ExecOutput]) error
	Logs(*LogsRequest, grpc.ServerStreamingServer[LogLine]) error
}

// ImageManager keeps the images containers run from.
type ImageManager interface {
	PullImage(*PullImageRequest, grpc.ServerStreamingServer[PullProgress]) error
	ImportImage(grpc.ClientStreamingServer[ImportChunk, ImportImageResponse]) error
	ListImages(context.Context, *ListImagesRequest) (*ListImagesResponse, error)
	RemoveImage(context.Context, *RemoveImageRequest) (*RemoveImageResponse, error)
	ImageStatus(context.Context, *ImageStatusRequest) (*Image, error)
}

// Plugin is a whole runtime plugin.
type Plugin interface {
	Identity
	SandboxManager
	ContainerManager
	StreamingManager
	ImageManager
}

// Serve serves impl as a runtime plugin on the process's go-plugin
// handshake and returns when the host tells the plugin to exit. Logs go
// to stderr as JSON, which the host re-emits in its own log.
func Serve(impl Plugin) {
	plugin.Serve(ServeConfig(impl, nil))
}

// ServeConfig returns the go-plugin configuration Serve uses; tests use it
// with ServeConfig.Test to run a plugin in-process.
func ServeConfig(impl Plugin, logger hclog.Logger) *plugin.ServeConfig {
	return pluginserve.Config(Handshake, ProtocolVersion, PluginName, &GRPCPlugin{Impl: impl}, logger)
}

// GRPCPlugin is the go-plugin glue of runtime plugins: Impl on the plugin
// side, a *Client on the host side.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin
}

// GRPCServer registers the plugin's services.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	RegisterIdentityServer(s, p.Impl)
	RegisterRuntimeServer(s, p.Impl)
	RegisterImagesServer(s, p.Impl)
	return nil
}

// GRPCClient returns the host's client of the plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return NewClient(conn), nil
}

// DialOptions are the gRPC options the host dials plugins with (the error
// class translation).
func DialOptions() []grpc.DialOption { return errgrpc.DialOptions() }

// Client is the host's view of a runtime plugin: the three services'
// clients over one connection.
type Client struct {
	IdentityClient
	RuntimeClient
	ImagesClient
	conn *grpc.ClientConn
}

// NewClient returns a Client on conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{
		IdentityClient: NewIdentityClient(conn),
		RuntimeClient:  NewRuntimeClient(conn),
		ImagesClient:   NewImagesClient(conn),
		conn:           conn,
	}
}

// Conn returns the client's connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// A Plugin is all three generated server interfaces.
var (
	_ IdentityServer = Plugin(nil)
	_ RuntimeServer  = Plugin(nil)
	_ ImagesServer   = Plugin(nil)
)

// CheckSetConfig checks what every plugin checks of a SetConfig request:
// that the negotiated version is APIVersion (or not given) and that the
// state directory is an absolute path, which it returns cleaned. Errors
// name the field.
func CheckSetConfig(r *SetConfigRequest) (stateDir string, err error) {
	return pluginserve.CheckSetConfig(r.GetApiVersion(), APIVersion, r.GetStateDir(), errdefs.ErrInvalidArgument)
}
