package containerd

import (
	"context"
	"errors"
	"fmt"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	diffapi "github.com/containerd/containerd/api/services/diff/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/paddock-dev/paddock/core/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// daemon is a connection to the containerd daemon and its services. Every
// call needs a namespace in its context (inNamespace).
type daemon struct {
	conn       *grpc.ClientConn
	containers containersapi.ContainersClient
	content    contentapi.ContentClient
	diff       diffapi.DiffClient
	images     imagesapi.ImagesClient
	leases     leasesapi.LeasesClient
	namespaces namespacesapi.NamespacesClient
	snapshots  snapshotsapi.SnapshotsClient
	tasks      tasksapi.TasksClient
	version    versionapi.VersionClient
}

// dial connects to the daemon's socket. It does not wait for the daemon:
// calls fail with ErrUnavailable while it is down.
func dial(address string) (*daemon, error) {
	conn, err := grpc.NewClient("unix://"+address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return fromDaemon(invoker(ctx, method, req, reply, cc, opts...))
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, fromDaemon(err)
			}
			return daemonStream{s}, nil
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", address, err)
	}
	return &daemon{
		conn:       conn,
		containers: containersapi.NewContainersClient(conn),
		content:    contentapi.NewContentClient(conn),
		diff:       diffapi.NewDiffClient(conn),
		images:     imagesapi.NewImagesClient(conn),
		leases:     leasesapi.NewLeasesClient(conn),
		namespaces: namespacesapi.NewNamespacesClient(conn),
		snapshots:  snapshotsapi.NewSnapshotsClient(conn),
		tasks:      tasksapi.NewTasksClient(conn),
		version:    versionapi.NewVersionClient(conn),
	}, nil
}

func (d *daemon) close() error { return d.conn.Close() }

// daemonStream translates the errors of a stream's messages.
type daemonStream struct{ grpc.ClientStream }

func (s daemonStream) RecvMsg(m any) error { return fromDaemon(s.ClientStream.RecvMsg(m)) }
func (s daemonStream) SendMsg(m any) error { return fromDaemon(s.ClientStream.SendMsg(m)) }

// fromDaemon gives a containerd error the class of its gRPC code. The
// message says that containerd answered it.
func fromDaemon(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := "containerd: " + st.Message()
	switch st.Code() {
	case codes.NotFound:
		return errdefs.New(errdefs.ErrNotFound, msg)
	case codes.AlreadyExists:
		return errdefs.New(errdefs.ErrAlreadyExists, msg)
	case codes.InvalidArgument:
		return errdefs.New(errdefs.ErrInvalidArgument, msg)
	case codes.FailedPrecondition:
		return errdefs.New(errdefs.ErrFailedPrecondition, msg)
	case codes.Unavailable:
		return errdefs.New(errdefs.ErrUnavailable, msg)
	case codes.Unimplemented:
		return errdefs.New(errdefs.ErrNotImplemented, msg)
	case codes.ResourceExhausted:
		return errdefs.New(errdefs.ErrResourceExhausted, msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", msg, context.DeadlineExceeded)
	case codes.Canceled:
		return fmt.Errorf("%s: %w", msg, context.Canceled)
	}
	return errdefs.New(errdefs.ErrInternal, msg)
}

// namespaceHeader and leaseHeader are the gRPC metadata keys containerd
// reads the namespace and the lease of a call from.
const (
	namespaceHeader = "containerd-namespace"
	leaseHeader     = "containerd-lease"
)

// inNamespace returns ctx for calls in containerd namespace ns.
func inNamespace(ctx context.Context, ns string) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set(namespaceHeader, ns)
	return metadata.NewOutgoingContext(ctx, md)
}

// withLease makes a lease in ns that keeps what the calls made under it
// (content, snapshots) from containerd's garbage collector, and returns
// ctx carrying it and the lease's release. The lease expires by itself
// after an hour should the plugin die before releasing it.
func (d *daemon) withLease(ctx context.Context, ns string) (context.Context, func(), error) {
	ctx = inNamespace(ctx, ns)
	resp, err := d.leases.Create(ctx, &leasesapi.CreateRequest{
		ID:     "paddock-" + newID(),
		Labels: map[string]string{"containerd.io/gc.expire": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("lease: %w", err)
	}
	id := resp.Lease.ID
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set(leaseHeader, id)
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		d.leases.Delete(rctx, &leasesapi.DeleteRequest{ID: id})
	}
	return metadata.NewOutgoingContext(ctx, md), release, nil
}

// serverVersion returns the daemon's version.
func (d *daemon) serverVersion(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := d.version.Version(ctx, &emptypb.Empty{})
	if err != nil {
		return "", err
	}
	return v.Version, nil
}

// ignoreNotFound returns nil for a NotFound error.
func ignoreNotFound(err error) error {
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	return err
}
