// Package apiserver serves Paddock's HTTPS + JSON API: resources stored
// through core/store, authenticated by bearer tokens, authorized by role
// and tenant, admitted through validation, defaulting, tenant policy and
// quota, and recorded in an audit log.
//
// A Server is built with New and serves with Run, which blocks until its
// context ends and then shuts down gracefully. Handler returns the
// http.Handler for tests that bring their own listener.
package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/store"
	"github.com/prometheus/client_golang/prometheus"
)

// MaxBodyBytes bounds a request body; larger ones get 413.
const MaxBodyBytes = 3 << 20

// Config configures a Server.
type Config struct {
	Store *store.Store
	// TLS is the serving configuration; nil serves plain HTTP (tests only).
	TLS *tls.Config
	Log *slog.Logger
	// Audit receives one JSON line per request; nil discards.
	Audit io.Writer
	// Version is reported by /version.
	Version string
	// AgentClientCert is the client certificate presented to node agents'
	// stream endpoints for pods/log and pods/exec (issued by the cluster
	// CA to pki.APIServerClientName). Without it those answer 503.
	AgentClientCert *tls.Certificate
	// Network is the cluster's network layout: cluster IPs come from its
	// service CIDR, node ports from its node port range. Empty fields take
	// the defaults (api.NetworkConfig.WithDefaults).
	Network api.NetworkConfig
}

// Server is the API server.
type Server struct {
	cfg     Config
	store   *store.Store
	log     *slog.Logger
	authn   *authenticator
	audit   *auditLog
	metrics *metrics
	alloc   *allocator
	handler http.Handler

	// quotaLocks serialises quota-counted writes per tenant inside this
	// process so that concurrent pod creates do not fight over the
	// tenant's compare-and-swap; correctness across processes comes from
	// the compare-and-swap itself.
	quotaMu    sync.Mutex
	quotaLocks map[string]*sync.Mutex
}

// New returns a server for cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:        cfg,
		store:      cfg.Store,
		log:        cfg.Log,
		authn:      newAuthenticator(cfg.Store, cfg.Log),
		audit:      newAuditLog(cfg.Audit),
		metrics:    newMetrics(),
		alloc:      newAllocator(cfg.Store, cfg.Network),
		quotaLocks: map[string]*sync.Mutex{},
	}
	s.handler = s.routes()
	return s
}

// Handler returns the server's HTTP handler. Its token cache is filled by
// Run or, in tests, by RunCaches.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the Prometheus registry behind /metrics, so that other
// components of the process can add their metrics.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.registry }

// RunCaches keeps the server's in-memory caches current until ctx ends.
func (s *Server) RunCaches(ctx context.Context) { s.authn.run(ctx) }

// Run serves on ln until ctx ends, then stops accepting, waits up to ten
// seconds for requests in flight (watches are cut) and returns.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.cfg.TLS,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	cacheCtx, stopCaches := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.RunCaches(cacheCtx)
	}()
	defer func() {
		stopCaches()
		wg.Wait()
	}()

	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLS != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if err2 := <-errc; !errors.Is(err2, http.ErrServerClosed) && err == nil {
		err = err2
	}
	s.audit.close()
	if errors.Is(err, context.DeadlineExceeded) {
		_ = srv.Close()
		return nil
	}
	return err
}

func (s *Server) tenantLock(tenant string) *sync.Mutex {
	s.quotaMu.Lock()
	defer s.quotaMu.Unlock()
	m, ok := s.quotaLocks[tenant]
	if !ok {
		m = &sync.Mutex{}
		s.quotaLocks[tenant] = m
	}
	return m
}
