package runtimev1

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/plugins/errgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// stub is a plugin that knows its name and nothing else.
type stub struct {
	UnimplementedIdentityServer
	UnimplementedRuntimeServer
	UnimplementedImagesServer
}

func (stub) Info(context.Context, *InfoRequest) (*InfoResponse, error) {
	return &InfoResponse{Name: "stub", Version: "0.0.1", ApiVersions: []string{APIVersion}}, nil
}

func (stub) InspectContainer(_ context.Context, r *InspectContainerRequest) (*Container, error) {
	return nil, errdefs.New(errdefs.ErrNotFound, "container "+r.Id+" not found")
}

var _ Plugin = stub{}

// serve runs impl behind a real gRPC server on a unix socket with the
// server options Serve uses, and returns a host-side Client.
func serve(t *testing.T, impl Plugin) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "plugin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(errgrpc.ServerOptions()...)
	if err := (&GRPCPlugin{Impl: impl}).GRPCServer(nil, srv); err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := (&GRPCPlugin{}).GRPCClient(t.Context(), nil, conn)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Client)
}

func TestErrorsKeepTheirClass(t *testing.T) {
	c := serve(t, stub{})
	info, err := c.Info(t.Context(), &InfoRequest{})
	if err != nil || info.Name != "stub" {
		t.Fatalf("Info = %v, %v", info, err)
	}
	_, err = c.InspectContainer(t.Context(), &InspectContainerRequest{Id: "x"})
	if !errdefs.IsNotFound(err) || err.Error() != "container x not found" {
		t.Errorf("InspectContainer(missing) = %v, want not found with the plugin's message", err)
	}
	_, err = c.StartContainer(t.Context(), &StartContainerRequest{Id: "x"})
	if !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("an unimplemented method = %v, want not implemented", err)
	}
}
