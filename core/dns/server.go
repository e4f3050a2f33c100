// Package dns is Paddock's cluster DNS server, run by the server process.
// It answers, over UDP and TCP on one address:
//
//   - SVC.TENANT.svc.DOMAIN: A (and AAAA) with the Service's cluster IP or,
//     for a headless Service (clusterIP "None"), its ready endpoint IPs;
//     SRV with one record per port; _PORT._PROTO.SVC.TENANT.svc.DOMAIN:
//     SRV for the named port. TTL 5 s; unknown names NXDOMAIN,
//     authoritative.
//   - every other name by forwarding the query to the upstream servers.
//
// The tenant boundary: a query's source address must be the IP of a pod
// (pods reach the server through the cluster DNS service IP, which the
// node's service proxy translates to the server's address, keeping the
// pod's source address). A pod sees only its own tenant's names: a name
// of another tenant gets NXDOMAIN, exactly the answer for a name that does
// not exist. A source that is no pod is REFUSED for names under the
// cluster domain. Forwarding works for any source.
//
// The data comes from a Source (the server process implements one with
// informers). A Server binds its sockets in New and serves them in Run,
// which blocks until its context ends and returns once every query in
// flight has been answered. Close releases the sockets of a Server that is
// never run.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/paddock-dev/paddock/core/api"
)

// Defaults of Config.
const (
	DefaultDomain  = "cluster.local"
	DefaultTimeout = 2 * time.Second
)

// TTL is the time to live of every answer, positive and negative, in
// seconds: short, so that a changed Service is seen within seconds.
const TTL = 5

// shutdownTimeout bounds how long Run waits for queries in flight once
// its context ended.
const shutdownTimeout = 5 * time.Second

// Source is what the server answers from. Its methods are called
// concurrently, once or a few times per query; they must answer from
// memory, without blocking on the network. Callers do not modify the
// objects returned.
type Source interface {
	// Service returns the Service tenant/name.
	Service(tenant, name string) (*api.Service, bool)
	// Endpoints returns the Endpoints tenant/name (those of the Service of
	// that name).
	Endpoints(tenant, name string) (*api.Endpoints, bool)
	// TenantOf returns the tenant of the pod whose IP is ip; false when ip
	// is no pod's (or, while an IP changes hands, is claimed by pods of
	// more than one tenant).
	TenantOf(ip netip.Addr) (tenant string, ok bool)
}

// Config configures a Server.
type Config struct {
	// Listen is the UDP and TCP address, HOST:PORT (port 0: any free port,
	// the same for both).
	Listen string
	// Domain is the cluster domain (default cluster.local).
	Domain string
	// Source answers the names under the domain. Required.
	Source Source
	// Upstreams (IP:PORT) get the queries for other names, tried in order;
	// with none, those queries get SERVFAIL.
	Upstreams []string
	// Timeout bounds each attempt at an upstream (default 2s).
	Timeout time.Duration
	Log     *slog.Logger
}

// Server is a cluster DNS server.
type Server struct {
	pc  net.PacketConn
	ln  net.Listener
	h   *handler
	log *slog.Logger

	closeOnce sync.Once
}

// New checks cfg and binds the server's UDP and TCP sockets.
func New(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, errors.New("dns: Source: required")
	}
	domain, err := CheckDomain(cfg.Domain)
	if err != nil {
		return nil, err
	}
	ups, err := CheckUpstreams(cfg.Upstreams)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("dns: timeout %v: want a positive duration", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pc, ln, err := listen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	return &Server{
		pc:  pc,
		ln:  ln,
		log: log,
		h: &handler{
			zone: newZone(domain, cfg.Source),
			fwd:  &forwarder{upstreams: ups, timeout: cfg.Timeout},
			log:  log,
		},
	}, nil
}

// CheckDomain checks a cluster domain and returns it in canonical form
// (lower case, with the final dot); "" means DefaultDomain.
func CheckDomain(domain string) (string, error) {
	if domain == "" {
		domain = DefaultDomain
	}
	if _, ok := dns.IsDomainName(domain); !ok || strings.Trim(domain, ".") == "" || strings.ContainsAny(domain, `\ `) {
		return "", fmt.Errorf("dns: cluster domain %q: want a domain name such as %s", domain, DefaultDomain)
	}
	return dns.CanonicalName(domain), nil
}

// listen binds UDP and TCP on one address. With port 0 the kernel picks
// the UDP port, and TCP takes the same one (retrying should another
// socket hold it).
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns: listen address %q: want HOST:PORT, e.g. :1053: %w", addr, err)
	}
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen on udp %s: %w", addr, err)
		}
		_, bound, _ := net.SplitHostPort(pc.LocalAddr().String())
		ln, err := net.Listen("tcp", net.JoinHostPort(host, bound))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, fmt.Errorf("dns: listen on tcp %s: %w", addr, lastErr)
}

// Addr returns the address the server listens on (UDP; TCP has the same
// port).
func (s *Server) Addr() net.Addr { return s.pc.LocalAddr() }

// Close releases the sockets. Run calls it; call it when Run is never
// called.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() { err = errors.Join(s.pc.Close(), s.ln.Close()) })
	return err
}

// Run serves queries until ctx ends and returns once the queries in flight
// have been answered (or after five seconds), with the sockets closed. It
// returns an error only when serving failed.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	ctx, cancel := context.WithCancel(ctx) // ends forwarded queries in flight too
	defer cancel()
	handle := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) { s.h.serve(ctx, w, req) })
	servers := []*dns.Server{
		{PacketConn: s.pc, Handler: handle, MsgAcceptFunc: accept},
		{Listener: s.ln, Handler: handle, MsgAcceptFunc: accept},
	}
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Go(func() {
			errs[i] = serveUntil(ctx, srv)
			cancel() // when one fails, the other stops too
		})
	}
	s.log.Info("cluster DNS listening", "address", s.Addr().String(), "domain", s.h.zone.domain, "upstreams", strings.Join(s.h.fwd.upstreams, ","))
	wg.Wait()
	return errors.Join(errs...)
}

// serveUntil serves srv until ctx ends, then shuts it down and waits for
// its queries in flight (at most shutdownTimeout).
func serveUntil(ctx context.Context, srv *dns.Server) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	// Only a started server can be shut down.
	for _, wait := range []<-chan struct{}{started, ctx.Done()} {
		select {
		case err := <-done:
			return fmt.Errorf("dns: serve: %w", err)
		case <-wait:
		}
	}
	shutCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer stop()
	if err := srv.ShutdownContext(shutCtx); err != nil {
		return fmt.Errorf("dns: shut down: %w", err)
	}
	return <-done
}

// accept decides, from a query's header alone, whether the handler sees
// it: responses are dropped, other opcodes than QUERY are answered
// NOTIMP, and a query must ask exactly one question (FORMERR otherwise).
func accept(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 || dh.Ancount > 0 || dh.Nscount > 0 || dh.Arcount > 2 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}
