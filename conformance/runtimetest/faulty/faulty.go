// Package faulty is a deliberately broken runtime plugin for testing the
// conformance suite: it launches a real runtime plugin, forwards every call
// to it unchanged at the gRPC level, and injects the faults it is told to.
// A suite that passes the real plugin must fail the faulty one in exactly
// the cases each fault breaks — that is how the suite proves it can fail.
//
// It is black-box like the suite: it knows the real plugin only through
// its binary and the runtime protocol.
package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/paddock-dev/paddock/plugins/errgrpc"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The faults, and the conformance cases each must make fail.
const (
	// StopMissingFails makes stop and remove of a missing object fail
	// with NotFound instead of succeeding (breaks RT-ID-001).
	StopMissingFails = "stop-missing-fails"
	// ExitCodeOffByOne reports every exit code one too high (breaks
	// RT-CT-003).
	ExitCodeOffByOne = "exit-code-off-by-one"
	// NoLogTimestamps drops the timestamps of log lines (breaks RT-EX-006).
	NoLogTimestamps = "no-log-timestamps"
	// LeakProcess starts a stray host process with every sandbox and never
	// stops it (breaks RT-SB-001 through the leak check).
	LeakProcess = "leak-process"
	// TTYIgnoreResize drops the Resize messages of streaming execs
	// (breaks RT-EX-004, which runs only for a target with exec_tty).
	TTYIgnoreResize = "tty-ignore-resize"
	// MountIgnoreReadOnly mounts every volume read-write (breaks
	// RT-CT-008).
	MountIgnoreReadOnly = "mount-ignore-readonly"
	// StdoutNoise writes a line to stdout after the handshake, through
	// go-plugin's stdio stream and straight to the handshake pipe (breaks
	// RT-HS-007).
	StdoutNoise = "stdout-noise"
	// HealthNoConditions strips the conditions from health events (breaks
	// RT-CAP-003).
	HealthNoConditions = "health-no-conditions"
)

// Environment of the faulty plugin process.
const (
	EnvTarget = "PADDOCK_FAULTY_TARGET" // path of the real plugin
	EnvFaults = "PADDOCK_FAULTY_FAULTS" // comma-separated faults
	EnvState  = "PADDOCK_FAULTY_STATE"  // state directory for the inner host (short path)
)

// Main is the faulty plugin's main: it launches the target named by the
// environment and serves the proxy.
func Main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		fmt.Fprintln(os.Stderr, "faulty plugin:", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	target, state := os.Getenv(EnvTarget), os.Getenv(EnvState)
	if target == "" || state == "" {
		return fmt.Errorf("set %s (the real plugin's path) and %s (a state directory)", EnvTarget, EnvState)
	}
	var faults []string
	if f := os.Getenv(EnvFaults); f != "" {
		faults = strings.Split(f, ",")
	}
	host, err := pluginhost.New(pluginhost.Config{StateDir: state, Logger: log})
	if err != nil {
		return err
	}
	ctx := context.Background()
	inst, err := host.Launch(ctx, pluginhost.RuntimeKind, "target", target, []byte("{}"))
	if err != nil {
		return err
	}
	defer inst.Kill(context.WithoutCancel(ctx))
	p := &proxy{inst: inst, faults: faults, stateDir: state + "/plugins/target"}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  runtimev1.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{runtimev1.ProtocolVersion: {runtimev1.PluginName: &proxyPlugin{}}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(p.handle))...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true}),
	})
	return nil
}

// proxyPlugin registers nothing: every call reaches the unknown-service
// handler, which forwards it.
type proxyPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (proxyPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (proxyPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("the faulty plugin has no client side")
}

// frame is one undecoded gRPC message.
type frame struct{ b []byte }

// rawCodec passes frames through untouched and marshals real messages (of
// go-plugin's own services) as protobuf.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	if f, ok := v.(*frame); ok {
		return f.b, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	if f, ok := v.(*frame); ok {
		f.b = append(f.b[:0], data...)
		return nil
	}
	return proto.Unmarshal(data, v.(proto.Message))
}

type proxy struct {
	inst     *pluginhost.Instance
	faults   []string
	stateDir string
	noise    sync.Once
}

func (p *proxy) has(fault string) bool { return slices.Contains(p.faults, fault) }

// handle forwards one call, any shape of streaming, to the target.
func (p *proxy) handle(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	ctx := ss.Context()
	c, err := p.inst.Runtime()
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	name := method[strings.LastIndex(method, "/")+1:]
	if p.has(StdoutNoise) {
		p.noise.Do(func() {
			// os.Stdout is go-plugin's stdio stream by now; file
			// descriptor 1 is still the pipe the handshake went through.
			fmt.Println("faulty plugin: noise on stdout")
			_, _ = os.NewFile(1, "stdout").WriteString("faulty plugin: noise on the handshake pipe\n")
		})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := c.Conn().NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return errgrpc.ToGRPC(err)
	}
	// An error on the request side (an injected fault, or the caller
	// going away) ends the call with that error.
	var reqErr error
	reqDone := make(chan struct{})
	// Requests: client → target.
	go func() {
		defer close(reqDone)
		for {
			// A fresh frame each time: gRPC may still be sending the
			// previous one.
			in := &frame{}
			if err := ss.RecvMsg(in); err != nil {
				if err == io.EOF {
					_ = cs.CloseSend()
					return
				}
				reqErr = err
				cancel()
				return
			}
			out, err := p.request(ctx, c, name, in)
			if err == nil && out != nil {
				err = cs.SendMsg(out)
			}
			if err != nil {
				reqErr = err
				cancel()
				return
			}
		}
	}()
	// Responses: target → client.
	for {
		resp := &frame{}
		if err := cs.RecvMsg(resp); err != nil {
			if err == io.EOF {
				return nil
			}
			if ctx.Err() != nil {
				<-reqDone
				if reqErr != nil {
					return reqErr
				}
			}
			// The inner host's client turned the status into an error
			// class; send the class on unchanged.
			return errgrpc.ToGRPC(err)
		}
		resp, err := p.response(name, resp)
		if err != nil {
			return err
		}
		if err := ss.SendMsg(resp); err != nil {
			return err
		}
	}
}

// request applies faults to a request before it is forwarded; a nil
// frame is dropped.
func (p *proxy) request(ctx context.Context, c *runtimev1.Client, method string, in *frame) (*frame, error) {
	switch {
	case method == "SetConfig":
		// The target keeps the state directory the inner host gave it.
		var r runtimev1.SetConfigRequest
		if err := proto.Unmarshal(in.b, &r); err != nil {
			return nil, err
		}
		r.StateDir = p.stateDir
		return marshal(&r)
	case p.has(StopMissingFails) && (method == "StopContainer" || method == "RemoveContainer"):
		var r runtimev1.StopContainerRequest // the id is field 1 in both
		if err := proto.Unmarshal(in.b, &r); err == nil {
			if _, err := c.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: r.Id}); err != nil {
				return nil, status.Error(codes.NotFound, "container "+r.Id+" not found (fault "+StopMissingFails+")")
			}
		}
	case p.has(StopMissingFails) && (method == "StopSandbox" || method == "RemoveSandbox"):
		var r runtimev1.StopSandboxRequest
		if err := proto.Unmarshal(in.b, &r); err == nil {
			if _, err := c.InspectSandbox(ctx, &runtimev1.InspectSandboxRequest{Id: r.Id}); err != nil {
				return nil, status.Error(codes.NotFound, "sandbox "+r.Id+" not found (fault "+StopMissingFails+")")
			}
		}
	case p.has(TTYIgnoreResize) && method == "Exec":
		var r runtimev1.ExecInput
		if err := proto.Unmarshal(in.b, &r); err == nil && r.GetResize() != nil {
			return nil, nil
		}
	case p.has(MountIgnoreReadOnly) && method == "CreateContainer":
		var r runtimev1.CreateContainerRequest
		if err := proto.Unmarshal(in.b, &r); err != nil {
			return nil, err
		}
		for _, m := range r.GetConfig().GetMounts() {
			m.ReadOnly = false
		}
		return marshal(&r)
	case p.has(LeakProcess) && method == "CreateSandbox":
		cmd := exec.Command("sleep", "3600")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err == nil {
			go cmd.Wait() //nolint:errcheck // reaped, never stopped: that is the fault
		}
	}
	return in, nil
}

// response applies faults to a response before it is returned.
func (p *proxy) response(method string, f *frame) (*frame, error) {
	switch {
	case p.has(ExitCodeOffByOne) && method == "WaitContainer":
		var st runtimev1.ExitStatus
		if err := proto.Unmarshal(f.b, &st); err != nil {
			return nil, err
		}
		st.ExitCode++
		return marshal(&st)
	case p.has(HealthNoConditions) && method == "Health":
		var ev runtimev1.HealthEvent
		if err := proto.Unmarshal(f.b, &ev); err != nil {
			return nil, err
		}
		ev.Conditions = nil
		return marshal(&ev)
	case p.has(NoLogTimestamps) && method == "Logs":
		var l runtimev1.LogLine
		if err := proto.Unmarshal(f.b, &l); err != nil {
			return nil, err
		}
		l.Timestamp = 0
		return marshal(&l)
	}
	return f, nil
}

func marshal(m proto.Message) (*frame, error) {
	b, err := proto.Marshal(m)
	return &frame{b: b}, err
}
