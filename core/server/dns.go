package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/dns"
	"github.com/paddock-dev/paddock/core/store"
)

// DNSConfig configures the cluster DNS server the server process runs.
type DNSConfig struct {
	// Listen is its UDP and TCP address, HOST:PORT; "" or "off" runs none
	// (`paddock server` defaults to ":1053", where each node's service
	// proxy sends the queries for the cluster DNS service IP).
	Listen string
	// Domain is the cluster domain (default cluster.local).
	Domain string
	// Upstreams (IP:PORT) answer the names outside the cluster domain;
	// default: the name servers of ResolvConf.
	Upstreams []string
	// ResolvConf is read for the default upstreams (default
	// /etc/resolv.conf).
	ResolvConf string
	// Ready, when set, is called with the DNS server's address once it
	// listens.
	Ready func(net.Addr)
}

// off reports whether the configuration runs no DNS server.
func (dc DNSConfig) off() bool { return dc.Listen == "" || dc.Listen == "off" }

// check validates the configuration before anything starts; errors name
// the flag.
func (dc DNSConfig) check() error {
	if dc.off() {
		return nil
	}
	if _, _, err := net.SplitHostPort(dc.Listen); err != nil {
		return fmt.Errorf("--dns-listen %q: want HOST:PORT such as :1053, or off", dc.Listen)
	}
	if _, err := dns.CheckDomain(dc.Domain); err != nil {
		return fmt.Errorf("--cluster-domain: %w", err)
	}
	if _, err := dns.CheckUpstreams(dc.Upstreams); err != nil {
		return fmt.Errorf("--dns-upstream: %w", err)
	}
	return nil
}

// DNSConfigPath is where the cluster DNS server's client config (a
// cluster-admin credential the server mints for itself, to watch pods,
// services and endpoints of every tenant) is kept.
func DNSConfigPath(dataDir string) string { return filepath.Join(dataDir, "dns.conf") }

// clusterDNS is the cluster DNS server with its view of the cluster: the
// services and endpoints of every tenant, and the pods by IP, kept by
// informers through the API.
type clusterDNS struct {
	srv                       *dns.Server
	pods, services, endpoints *client.Informer

	mu    sync.RWMutex
	podIP map[string]netip.Addr            // pod key → the IP it holds in byIP
	byIP  map[netip.Addr]map[string]string // IP → pod key → tenant
}

var _ dns.Source = (*clusterDNS)(nil)

// newClusterDNS mints the DNS server's credential when needed and binds
// its sockets; nil when cfg turns DNS off.
func newClusterDNS(ctx context.Context, cfg Config, st *store.Store, server, caPEM string, log *slog.Logger) (*clusterDNS, error) {
	dc := cfg.DNS
	if dc.off() {
		return nil, nil
	}
	if err := dc.check(); err != nil {
		return nil, err
	}
	c, err := adminClient(ctx, st, DNSConfigPath(cfg.DataDir), server, caPEM, "cluster DNS (dns.conf)", log)
	if err != nil {
		return nil, err
	}
	log = log.With("component", "dns")
	inf := func(resource string) *client.Informer {
		return client.NewInformer(c, mustKind(resource), "", client.ListOptions{}, log)
	}
	d := &clusterDNS{
		pods: inf("pods"), services: inf("services"), endpoints: inf("endpoints"),
		podIP: map[string]netip.Addr{},
		byIP:  map[netip.Addr]map[string]string{},
	}
	d.pods.AddHandler(client.Handler{
		OnAdd:    d.indexPod,
		OnUpdate: func(_, obj api.Object) { d.indexPod(obj) },
		OnDelete: func(obj api.Object) { d.unindexPod(client.Key(obj)) },
	})
	upstreams := dc.Upstreams
	if len(upstreams) == 0 {
		resolvConf := dc.ResolvConf
		if resolvConf == "" {
			resolvConf = "/etc/resolv.conf"
		}
		if upstreams, err = dns.DefaultUpstreams(resolvConf, dc.Listen); err != nil {
			log.Warn("no upstream name servers: names outside the cluster domain get SERVFAIL", "error", err)
		} else if len(upstreams) == 0 {
			log.Warn("no upstream name servers: names outside the cluster domain get SERVFAIL", "resolvConf", resolvConf)
		}
	}
	if d.srv, err = dns.New(dns.Config{Listen: dc.Listen, Domain: dc.Domain, Source: d, Upstreams: upstreams, Log: log}); err != nil {
		return nil, fmt.Errorf("--dns-listen: %w", err)
	}
	if dc.Ready != nil {
		dc.Ready(d.srv.Addr())
	}
	return d, nil
}

// indexPod files a pod under its IP while it holds one: it has
// status.podIP, is not being deleted and has not finished (a finished
// pod's IP goes back to the pool and may soon be another pod's).
func (d *clusterDNS) indexPod(obj api.Object) {
	p := obj.(*api.Pod)
	key := client.Key(p)
	ip, err := netip.ParseAddr(p.Status.PodIP)
	holds := err == nil && p.Metadata.DeletionTimestamp == nil &&
		p.Status.Phase != api.PodSucceeded && p.Status.Phase != api.PodFailed
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unindexLocked(key)
	if !holds {
		return
	}
	ip = ip.Unmap()
	if d.byIP[ip] == nil {
		d.byIP[ip] = map[string]string{}
	}
	d.byIP[ip][key] = p.Metadata.Tenant
	d.podIP[key] = ip
}

func (d *clusterDNS) unindexPod(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unindexLocked(key)
}

func (d *clusterDNS) unindexLocked(key string) {
	ip, ok := d.podIP[key]
	if !ok {
		return
	}
	delete(d.podIP, key)
	delete(d.byIP[ip], key)
	if len(d.byIP[ip]) == 0 {
		delete(d.byIP, ip)
	}
}

// TenantOf implements dns.Source: the tenant of the pods holding ip, when
// they all are of one tenant.
func (d *clusterDNS) TenantOf(ip netip.Addr) (string, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	tenant := ""
	for _, t := range d.byIP[ip.Unmap()] {
		if tenant != "" && t != tenant {
			return "", false
		}
		tenant = t
	}
	return tenant, tenant != ""
}

// Service implements dns.Source.
func (d *clusterDNS) Service(tenant, name string) (*api.Service, bool) {
	return cached[*api.Service](d.services, tenant, name)
}

// Endpoints implements dns.Source.
func (d *clusterDNS) Endpoints(tenant, name string) (*api.Endpoints, bool) {
	return cached[*api.Endpoints](d.endpoints, tenant, name)
}

// cached returns inf's copy of tenant/name.
func cached[T api.Object](inf *client.Informer, tenant, name string) (T, bool) {
	o, ok := inf.Get(tenant + "/" + name)
	t, isT := o.(T)
	return t, ok && isT
}

// run runs the informers and, once they have listed, serves DNS until ctx
// ends (queries wait in the sockets' buffers until then).
func (d *clusterDNS) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	informers := []*client.Informer{d.pods, d.services, d.endpoints}
	for _, inf := range informers {
		wg.Go(func() { inf.Run(ctx) })
	}
	for _, inf := range informers {
		if err := inf.WaitSynced(ctx); err != nil {
			d.srv.Close()
			return nil // ctx ended
		}
	}
	return d.srv.Run(ctx)
}

// close releases the sockets of a server that never ran.
func (d *clusterDNS) close() {
	if d != nil {
		d.srv.Close()
	}
}

// alongside returns serve running together with the DNS server: both stop
// when ctx ends or either returns; the result is the first error.
func (d *clusterDNS) alongside(serve func(context.Context) error) func(context.Context) error {
	if d == nil {
		return serve
	}
	return func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		dnsDone, serveDone := make(chan error, 1), make(chan error, 1)
		go func() { dnsDone <- d.run(ctx) }()
		go func() { serveDone <- serve(ctx) }()
		select {
		case err := <-serveDone:
			cancel()
			<-dnsDone
			return err
		case err := <-dnsDone:
			cancel()
			serr := <-serveDone
			if err != nil {
				return fmt.Errorf("cluster DNS: %w", err)
			}
			return serr
		}
	}
}
