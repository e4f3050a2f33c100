package pluginhost

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/go-plugin"
	"github.com/paddock-dev/paddock/core/errdefs"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Kind describes one kind of plugin (runtime, network) to the host: how
// to recognise its binaries, which go-plugin protocol versions and
// contract versions the host speaks, and how to ask a dispensed client for
// its Info and hand it its configuration. A Kind is a plain value; the
// host keeps no registry of kinds.
type Kind struct {
	// Name names the kind in errors and logs ("runtime").
	Name string
	// Handshake is the kind's go-plugin handshake: its magic cookie keeps
	// a plugin of another kind (or no plugin at all) from being started
	// as one of this kind.
	Handshake plugin.HandshakeConfig
	// Plugins are the go-plugin plugin sets by go-plugin protocol version
	// (ClientConfig.VersionedPlugins).
	Plugins map[int]plugin.PluginSet
	// Dispense is the name the kind's client is dispensed under.
	Dispense string
	// APIVersions are the contract versions the host speaks, newest
	// first. The host uses the first of them the plugin also speaks.
	APIVersions []string
	// DialOptions returns the gRPC options plugins are dialled with.
	DialOptions func() []grpc.DialOption
	// Info asks a dispensed client for the plugin's Info.
	Info func(ctx context.Context, client any) (Info, error)
	// SetConfig hands a dispensed client the negotiated API version, its
	// configuration (JSON) and its state directory.
	SetConfig func(ctx context.Context, client any, apiVersion string, config []byte, stateDir string) error
}

// Info is what a plugin says about itself when asked.
type Info struct {
	Name         string
	Version      string
	APIVersions  []string
	ConfigSchema string
}

// RuntimeKind is the kind of runtime plugins (plugins/runtime/v1).
var RuntimeKind = Kind{
	Name:        "runtime",
	Handshake:   runtimev1.Handshake,
	Plugins:     map[int]plugin.PluginSet{runtimev1.ProtocolVersion: {runtimev1.PluginName: &runtimev1.GRPCPlugin{}}},
	Dispense:    runtimev1.PluginName,
	APIVersions: []string{runtimev1.APIVersion},
	DialOptions: runtimev1.DialOptions,
	Info: func(ctx context.Context, client any) (Info, error) {
		return askInfo(ctx, client, "runtime", func(c *runtimev1.Client) (infoResponse, error) {
			return c.Info(ctx, &runtimev1.InfoRequest{})
		})
	},
	SetConfig: func(ctx context.Context, client any, apiVersion string, config []byte, stateDir string) error {
		c, err := clientAs[*runtimev1.Client](client, "runtime")
		if err != nil {
			return err
		}
		_, err = c.SetConfig(ctx, &runtimev1.SetConfigRequest{ApiVersion: apiVersion, Config: config, StateDir: stateDir})
		return err
	},
}

// NetworkKind is the kind of network plugins (plugins/network/v1).
var NetworkKind = Kind{
	Name:        "network",
	Handshake:   networkv1.Handshake,
	Plugins:     map[int]plugin.PluginSet{networkv1.ProtocolVersion: {networkv1.PluginName: &networkv1.GRPCPlugin{}}},
	Dispense:    networkv1.PluginName,
	APIVersions: []string{networkv1.APIVersion},
	DialOptions: networkv1.DialOptions,
	Info: func(ctx context.Context, client any) (Info, error) {
		return askInfo(ctx, client, "network", func(c *networkv1.Client) (infoResponse, error) {
			return c.Info(ctx, &networkv1.InfoRequest{})
		})
	},
	SetConfig: func(ctx context.Context, client any, apiVersion string, config []byte, stateDir string) error {
		c, err := clientAs[*networkv1.Client](client, "network")
		if err != nil {
			return err
		}
		_, err = c.SetConfig(ctx, &networkv1.SetConfigRequest{ApiVersion: apiVersion, Config: config, StateDir: stateDir})
		return err
	},
}

// infoResponse is what every contract's InfoResponse has.
type infoResponse interface {
	GetName() string
	GetVersion() string
	GetApiVersions() []string
	GetConfigSchema() string
}

// askInfo asks a dispensed client of type C for its Info.
func askInfo[C any, R infoResponse](ctx context.Context, client any, kind string, ask func(C) (R, error)) (Info, error) {
	c, err := clientAs[C](client, kind)
	if err != nil {
		return Info{}, err
	}
	resp, err := ask(c)
	if err != nil {
		return Info{}, err
	}
	return Info{Name: resp.GetName(), Version: resp.GetVersion(), APIVersions: resp.GetApiVersions(), ConfigSchema: resp.GetConfigSchema()}, nil
}

// clientAs returns a dispensed client as the kind's client type C.
func clientAs[C any](client any, kind string) (C, error) {
	c, ok := client.(C)
	if !ok {
		var want C
		return c, errdefs.New(errdefs.ErrInternal, fmt.Sprintf("dispensed client is a %T, want the %s client %T", client, kind, want))
	}
	return c, nil
}

// validate reports what is missing from k.
func (k Kind) validate() error {
	switch {
	case k.Name == "":
		return errdefs.Field(errdefs.ErrInvalidArgument, "kind.Name", "is empty")
	case k.Handshake.MagicCookieKey == "" || k.Handshake.MagicCookieValue == "":
		return errdefs.Field(errdefs.ErrInvalidArgument, "kind.Handshake", "the "+k.Name+" kind has no magic cookie")
	case len(k.Plugins) == 0:
		return errdefs.Field(errdefs.ErrInvalidArgument, "kind.Plugins", "the "+k.Name+" kind has no plugin sets")
	case k.Dispense == "":
		return errdefs.Field(errdefs.ErrInvalidArgument, "kind.Dispense", "is empty")
	case len(k.APIVersions) == 0:
		return errdefs.Field(errdefs.ErrInvalidArgument, "kind.APIVersions", "the "+k.Name+" kind speaks no API version")
	case k.Info == nil || k.SetConfig == nil:
		return errdefs.Field(errdefs.ErrInvalidArgument, "kind.Info", "the "+k.Name+" kind needs Info and SetConfig")
	}
	return nil
}

// pluginSets returns a copy of k.Plugins: go-plugin may write into the
// map it is given.
func (k Kind) pluginSets() map[int]plugin.PluginSet {
	return maps.Clone(k.Plugins)
}

// dialOptions returns the kind's gRPC dial options.
func (k Kind) dialOptions() []grpc.DialOption {
	var opts []grpc.DialOption
	if k.DialOptions != nil {
		opts = k.DialOptions()
	}
	return append(opts, closedConnOptions()...)
}

// negotiate returns the first of the host's versions (newest first) that
// the plugin also speaks.
func negotiate(host, plugin []string) (string, bool) {
	for _, v := range host {
		if slices.Contains(plugin, v) {
			return v, true
		}
	}
	return "", false
}

// closedConnOptions make a call on a connection the host has closed (the
// process exited and the host cleaned up, or the host detached) fail as
// the plugin being gone, not as a canceled call: gRPC reports a closed
// connection with the code of a caller giving up. They go inside the
// kind's own interceptors, which translate codes into error classes.
func closedConnOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return closedConnError(ctx, invoker(ctx, method, req, reply, cc, opts...))
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, closedConnError(ctx, err)
			}
			return &closedConnStream{ClientStream: cs, ctx: ctx}, nil
		}),
	}
}

func closedConnError(ctx context.Context, err error) error {
	if status.Code(err) == codes.Canceled && ctx.Err() == nil {
		return status.Error(codes.Unavailable, "the host's connection to the plugin is closed: the plugin process exited or the host let go of it")
	}
	return err
}

type closedConnStream struct {
	grpc.ClientStream
	ctx context.Context
}

func (s *closedConnStream) RecvMsg(m any) error {
	return closedConnError(s.ctx, s.ClientStream.RecvMsg(m))
}

func (s *closedConnStream) SendMsg(m any) error {
	return closedConnError(s.ctx, s.ClientStream.SendMsg(m))
}
