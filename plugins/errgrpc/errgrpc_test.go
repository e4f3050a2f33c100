package errgrpc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range classes {
		t.Run(c.reason, func(t *testing.T) {
			sent := fmt.Errorf("container %q: %w", "web", errdefs.New(c.class, "details"))
			wire := ToGRPC(sent)
			if st, _ := status.FromError(wire); st.Code() != c.code {
				t.Errorf("ToGRPC(%v) code = %v, want %v", sent, st.Code(), c.code)
			}
			back := FromGRPC(wire)
			if !errors.Is(back, c.class) || back.Error() != sent.Error() {
				t.Errorf("FromGRPC(ToGRPC(%v)) = %v, want class %v and the same message", sent, back, c.class)
			}
			if IsPluginExited(back) {
				t.Errorf("a plugin's own %v reads as the plugin exiting", c.class)
			}
		})
	}
}

func TestTransportAndContext(t *testing.T) {
	broken := FromGRPC(status.Error(codes.Unavailable, "connection error: EOF"))
	if !errors.Is(broken, errdefs.ErrUnavailable) || !IsPluginExited(broken) {
		t.Errorf("transport failure = %v, want unavailable and plugin exited", broken)
	}
	if err := FromGRPC(ToGRPC(context.DeadlineExceeded)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline = %v", err)
	}
	if err := FromGRPC(status.Error(codes.Unknown, "boom")); !errors.Is(err, errdefs.ErrInternal) {
		t.Errorf("unknown = %v, want internal", err)
	}
	if ToGRPC(nil) != nil || FromGRPC(nil) != nil {
		t.Error("nil is not nil")
	}
}
