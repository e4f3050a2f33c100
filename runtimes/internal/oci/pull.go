package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sys/unix"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// PullOptions tune one Pull.
type PullOptions struct {
	// Auth is the registry credential; nil pulls anonymously.
	Auth *Auth
	// Insecure lets the pull use plain HTTP to the image's registry. Set it
	// only for registries the plugin is configured to treat as insecure;
	// otherwise Pull speaks only HTTPS, with certificates verified.
	Insecure bool
	// Progress, if not nil, is told how each layer advances. Calls are
	// serialized; see Progress for their order.
	Progress func(Progress)
}

// Auth is a registry credential (HTTP basic, or a registry's token exchange
// that starts from a user name and password).
type Auth struct {
	Username string
	Password string
}

// Phase is a step of fetching one layer.
type Phase string

// The phases, in the order a layer goes through them.
const (
	PhaseDownloading Phase = "downloading"
	PhaseExtracting  Phase = "extracting"
	PhaseDone        Phase = "done"
)

// Progress reports one layer's advance. For each layer, Pull reports zero or
// more PhaseDownloading events (none when the store already holds the blob),
// then zero or more PhaseExtracting events (none when the layer is already
// unpacked), then exactly one PhaseDone. Done counts the bytes of the
// compressed blob downloaded or read for unpacking so far; it grows to Total
// within a phase.
type Progress struct {
	Layer string // the layer's blob digest
	Phase Phase
	Done  int64
	Total int64
}

// progressStep is how many bytes pass between two progress events of a
// phase (the last event of a phase is always sent).
const progressStep = 256 << 10

// Pull fetches the image ref names from its registry, stores it and unpacks
// its layers. A multi-platform image resolves to its linux image for this
// machine's architecture. Content already in the store is verified and
// reused, so pulling again is cheap and repairs damaged blobs.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	r, err := parseReference(ref, opts.Insecure)
	if err != nil {
		return nil, err
	}
	canon := canonical(r)
	l, err := lockFile(ctx, s.path("gc.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer l.unlock()

	registry := r.Context().RegistryStr()
	var auth authn.Authenticator = authn.Anonymous
	if opts.Auth != nil {
		auth = &authn.Basic{Username: opts.Auth.Username, Password: opts.Auth.Password}
	}
	img, err := remote.Image(r,
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithTransport(&schemeGuard{next: remote.DefaultTransport, insecureHost: insecureHost(r, opts.Insecure)}),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithUserAgent("paddock"),
	)
	if err != nil {
		return nil, registryError(ctx, canon, registry, err)
	}
	images, err := s.ingest(ctx, img, []string{canon}, opts.Progress)
	if err != nil {
		return nil, registryError(ctx, canon, registry, err)
	}
	return images[0], nil
}

func insecureHost(r name.Reference, insecure bool) string {
	if !insecure {
		return ""
	}
	return r.Context().RegistryStr()
}

// errPlainHTTP is what schemeGuard answers instead of sending a plain HTTP
// request.
var errPlainHTTP = errors.New("plain HTTP refused")

// schemeGuard refuses plain HTTP except to insecureHost. go-containerregistry
// falls back to HTTP by itself for loopback and private addresses; a runtime
// plugin must not, unless the registry is configured as insecure.
type schemeGuard struct {
	next         http.RoundTripper
	insecureHost string
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && (g.insecureHost == "" || req.URL.Host != g.insecureHost) {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), errPlainHTTP)
	}
	return g.next.RoundTrip(req)
}

// registryError gives an error from talking to a registry its class.
func registryError(ctx context.Context, ref, registry string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("pull %s: %w", ref, ctx.Err())
	}
	if classified(err) {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return permissionDenied(ref, registry, terr.StatusCode, err)
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return notFound(ref, registry, err)
			}
		}
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			return permissionDenied(ref, registry, terr.StatusCode, err)
		case terr.StatusCode == http.StatusNotFound:
			return notFound(ref, registry, err)
		case terr.StatusCode == http.StatusTooManyRequests || terr.StatusCode >= 500:
			return fmt.Errorf("pull %s: registry %s answered HTTP %d: %w: %w", ref, registry, terr.StatusCode, errdefs.ErrUnavailable, err)
		}
		return fmt.Errorf("pull %s: registry %s: %w", ref, registry, err)
	}
	// A registry that cannot be reached at all is unavailable, even when
	// go-containerregistry also tried (and we refused) plain HTTP.
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("pull %s: registry %s cannot be reached: %w: %w", ref, registry, errdefs.ErrUnavailable, err)
	}
	if errors.Is(err, errPlainHTTP) {
		return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf(
			"pull %s: registry %s does not speak HTTPS, and plain HTTP is allowed only to registries configured as insecure: %v", ref, registry, err))
	}
	return fmt.Errorf("pull %s: %w", ref, err)
}

func permissionDenied(ref, registry string, status int, err error) error {
	return fmt.Errorf("pull %s: registry %s refused access (HTTP %d); check the pull credentials: %w: %w", ref, registry, status, errdefs.ErrPermissionDenied, err)
}

func notFound(ref, registry string, err error) error {
	return fmt.Errorf("pull %s: registry %s has no such image: %w: %w", ref, registry, errdefs.ErrNotFound, err)
}

// classified reports whether err already carries one of the classes this
// package uses.
func classified(err error) bool {
	for _, class := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrPermissionDenied,
		errdefs.ErrUnavailable, errdefs.ErrFailedPrecondition, errdefs.ErrAlreadyExists} {
		if errors.Is(err, class) {
			return true
		}
	}
	return false
}
