package streams

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/pki"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// DefaultPort is the port the stream endpoint listens on unless the agent
// is told otherwise.
const DefaultPort = 10250

// The files the server keeps in its data directory.
const (
	CertFile = "streams.crt"
	KeyFile  = "streams.key"
)

// Target is a container as a runtime plugin knows it.
type Target struct {
	Runtime     *runtimev1.Client
	ContainerID string
}

// Resolver finds the container a request names. An empty container means
// the pod's only container; a pod with several fails with
// errdefs.ErrBadRequest listing their names. Errors are errdefs classes:
// ErrNotFound for an unknown pod or container, ErrFailedPrecondition for
// one that is not running ("container web is not running"), and so on.
type Resolver interface {
	Resolve(ctx context.Context, tenant, pod, container string) (Target, error)
}

// PreviousResolver is implemented by Resolvers that keep the last exited
// instance of a restarted container, for logs with previous=true.
type PreviousResolver interface {
	ResolvePrevious(ctx context.Context, tenant, pod, container string) (Target, error)
}

// Config configures a Server.
type Config struct {
	// DataDir keeps the serving certificate and key (CertFile, KeyFile).
	DataDir string
	// ClientCA is the PEM of the cluster CA, which signs the API server's
	// client certificate (the agent's client.Config.CertificateAuthority).
	ClientCA []byte
	Resolver Resolver
	Log      *slog.Logger
}

// Server is the stream endpoint. It is safe for concurrent use.
type Server struct {
	resolver    Resolver
	log         *slog.Logger
	tls         *tls.Config
	fingerprint string
	handler     http.Handler
	active      sync.WaitGroup // requests in flight, hijacked ones included
}

// New loads or creates the serving certificate in cfg.DataDir and returns
// a server.
func New(cfg Config) (*Server, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("streams: a Resolver is required")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("streams: a data directory is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("streams: data directory: %w", err)
	}
	cert, err := pki.EnsureSelfSigned(filepath.Join(cfg.DataDir, CertFile), filepath.Join(cfg.DataDir, KeyFile), "paddock-agent")
	if err != nil {
		return nil, fmt.Errorf("streams: serving certificate: %w", err)
	}
	tc, err := pki.PeerServerTLS(cert, cfg.ClientCA, pki.APIServerClientName)
	if err != nil {
		return nil, fmt.Errorf("streams: client CA: %w", err)
	}
	tc.NextProtos = []string{"http/1.1"} // WebSocket upgrades need HTTP/1.1
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{resolver: cfg.Resolver, log: cfg.Log, tls: tc, fingerprint: pki.Fingerprint(cert.Certificate[0])}
	mux := http.NewServeMux()
	for _, p := range []string{"/logs/{tenant}/{pod}", "/logs/{tenant}/{pod}/{container}"} {
		mux.HandleFunc("GET "+p, s.serveLogs)
	}
	for _, p := range []string{"/exec/{tenant}/{pod}", "/exec/{tenant}/{pod}/{container}"} {
		mux.HandleFunc("GET "+p, s.serveExec)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("no such path %q: want /logs/TENANT/POD/CONTAINER or /exec/TENANT/POD/CONTAINER", r.URL.Path)))
	})
	s.handler = mux
	return s, nil
}

// Fingerprint returns the serving certificate's SHA-256, as the agent
// publishes it in Node.status.daemonEndpoint.certSHA256.
func (s *Server) Fingerprint() string { return s.fingerprint }

// Endpoint returns what the agent publishes for a server listening on ln.
func (s *Server) Endpoint(ln net.Listener) api.NodeDaemonEndpoint {
	var port int32
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		port = int32(a.Port)
	}
	return api.NodeDaemonEndpoint{Port: port, CertSHA256: s.fingerprint}
}

// Run serves HTTPS on ln until ctx ends, then closes the listener, ends
// the requests in flight (their contexts are cancelled) and returns once
// they have all returned.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.active.Add(1)
			defer s.active.Done()
			s.handler.ServeHTTP(w, r)
		}),
		TLSConfig:         s.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("streams: serve: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			_ = srv.Close()
		}
		<-errc
	}
	s.active.Wait()
	return err
}

// resolve finds the container of a request.
func (s *Server) resolve(r *http.Request, previous bool) (Target, error) {
	tenant, pod, container := r.PathValue("tenant"), r.PathValue("pod"), r.PathValue("container")
	var t Target
	var err error
	if previous {
		pr, ok := s.resolver.(PreviousResolver)
		if !ok {
			return Target{}, errdefs.Field(errdefs.ErrNotImplemented, "previous", "this node keeps no logs of earlier container instances")
		}
		t, err = pr.ResolvePrevious(r.Context(), tenant, pod, container)
	} else {
		t, err = s.resolver.Resolve(r.Context(), tenant, pod, container)
	}
	if err != nil {
		return Target{}, err
	}
	if t.Runtime == nil || t.ContainerID == "" {
		return Target{}, fmt.Errorf("%w: the resolver returned no runtime or container for pod %q in tenant %q", errdefs.ErrInternal, pod, tenant)
	}
	return t, nil
}

// writeError answers err as the API server's JSON Status.
func writeError(w http.ResponseWriter, err error) {
	code, reason := errdefs.HTTPStatus(err)
	b, _ := json.Marshal(&api.Status{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Status"},
		Code:     code, Reason: reason, Message: err.Error(), Field: errdefs.FieldOf(err),
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
