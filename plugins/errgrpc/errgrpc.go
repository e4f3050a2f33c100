// Package errgrpc carries Paddock's error classes (core/errdefs) across
// the plugin gRPC boundary: a plugin returns errdefs errors, its server
// interceptors turn them into gRPC status codes, and the host's client
// interceptors turn the codes back into the same classes. It also tells
// "the plugin process went away" (errdefs.ErrUnavailable with
// ErrPluginExited) apart from "the caller gave up" (the context's error).
package errgrpc

import (
	"context"
	"errors"
	"fmt"

	"github.com/paddock-dev/paddock/core/errdefs"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrPluginExited marks errors of calls whose plugin process is gone.
var ErrPluginExited = errors.New("plugin exited")

// classes maps each error class to a gRPC code and a stable reason, which
// travels in an ErrorInfo detail so that the class survives exactly even
// where two classes share a code.
var classes = []struct {
	class  error
	code   codes.Code
	reason string
}{
	{errdefs.ErrNotFound, codes.NotFound, "NOT_FOUND"},
	{errdefs.ErrAlreadyExists, codes.AlreadyExists, "ALREADY_EXISTS"},
	{errdefs.ErrInvalidArgument, codes.InvalidArgument, "INVALID_ARGUMENT"},
	{errdefs.ErrBadRequest, codes.InvalidArgument, "BAD_REQUEST"},
	{errdefs.ErrFailedPrecondition, codes.FailedPrecondition, "FAILED_PRECONDITION"},
	{errdefs.ErrConflict, codes.Aborted, "CONFLICT"},
	{errdefs.ErrResourceExhausted, codes.ResourceExhausted, "RESOURCE_EXHAUSTED"},
	{errdefs.ErrPermissionDenied, codes.PermissionDenied, "PERMISSION_DENIED"},
	{errdefs.ErrUnauthenticated, codes.Unauthenticated, "UNAUTHENTICATED"},
	{errdefs.ErrUnavailable, codes.Unavailable, "UNAVAILABLE"},
	{errdefs.ErrNotImplemented, codes.Unimplemented, "NOT_IMPLEMENTED"},
	{errdefs.ErrGone, codes.NotFound, "GONE"},
	{errdefs.ErrInternal, codes.Internal, "INTERNAL"},
}

const domain = "paddock.dev"

// ToGRPC returns err as a gRPC status error with the code of its class.
// Errors that already are status errors pass unchanged.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	for _, c := range classes {
		if errors.Is(err, c.class) {
			st, derr := status.New(c.code, err.Error()).WithDetails(&errdetails.ErrorInfo{Reason: c.reason, Domain: domain})
			if derr != nil {
				return status.Error(c.code, err.Error())
			}
			return st.Err()
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// FromGRPC returns err with the errdefs class it was sent with, keeping
// the message. A call that failed because the connection to the plugin
// broke (the plugin process died) is errdefs.ErrUnavailable and
// ErrPluginExited.
func FromGRPC(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.Domain != domain {
			continue
		}
		for _, c := range classes {
			if c.reason == info.Reason {
				return &errdefs.Error{Class: c.class, Message: msg}
			}
		}
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", msg, context.DeadlineExceeded)
	case codes.Canceled:
		return fmt.Errorf("%s: %w", msg, context.Canceled)
	case codes.Unavailable:
		// Not sent by the plugin: gRPC's own, the transport broke.
		return fmt.Errorf("%w: %s (%w)", errdefs.ErrUnavailable, msg, ErrPluginExited)
	}
	for _, c := range classes {
		if c.code == st.Code() {
			return &errdefs.Error{Class: c.class, Message: msg}
		}
	}
	return &errdefs.Error{Class: errdefs.ErrInternal, Message: msg}
}

// IsPluginExited reports whether err says the plugin process is gone.
func IsPluginExited(err error) bool { return errors.Is(err, ErrPluginExited) }

// ServerOptions are the interceptors a plugin's gRPC server uses.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			return resp, ToGRPC(err)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return ToGRPC(h(srv, ss))
		}),
	}
}

// DialOptions are the interceptors the host's gRPC client uses.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return FromGRPC(invoker(ctx, method, req, reply, cc, opts...))
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, FromGRPC(err)
			}
			return &clientStream{ClientStream: cs}, nil
		}),
	}
}

// clientStream translates the errors of a client stream.
type clientStream struct{ grpc.ClientStream }

func (s *clientStream) RecvMsg(m any) error { return fromStream(s.ClientStream.RecvMsg(m)) }
func (s *clientStream) SendMsg(m any) error { return fromStream(s.ClientStream.SendMsg(m)) }

// fromStream keeps io.EOF, which ends a stream normally, as it is.
func fromStream(err error) error {
	if _, ok := status.FromError(err); ok && err != nil {
		return FromGRPC(err)
	}
	return err
}
