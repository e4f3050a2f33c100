package svcbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/machine"
	"github.com/paddock-dev/paddock/bench/internal/mdreport"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/proxy"
	"github.com/paddock-dev/paddock/core/proxy/proxytest"
	"github.com/paddock-dev/paddock/internal/testlock"
)

// SectionName is the benchmark's section of docs/benchmarks.md.
const SectionName = "B6"

// Config configures a run. DefaultConfig returns B6's.
type Config struct {
	// Sizes are the numbers of services the table is ramped to, in turn.
	Sizes []int
	// Endpoints is the number of endpoints of every service.
	Endpoints int
	// Changes is the number of timed endpoint changes at each size, and
	// of timed floor inserts.
	Changes int
	// FirstPackets is the number of timed connections to the
	// last-defined service at each size, and straight to an endpoint.
	FirstPackets int
	// API also measures the changes through an API server and informers.
	API bool
	// DataDir is where the API server's temporary directory is made; ""
	// means the system's.
	DataDir string
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Write, when set, is a Markdown file (docs/benchmarks.md) in which
	// the run's B6 section is replaced, or appended when missing.
	Write string
	// Command is the command line recorded with the results.
	Command string
	// Out receives the report; nil means os.Stdout.
	Out io.Writer
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// DefaultConfig returns B6's configuration.
func DefaultConfig() Config {
	return Config{
		Sizes:        []int{1000, 10_000},
		Endpoints:    10,
		Changes:      200,
		FirstPackets: 500,
		API:          true,
		Timeout:      30 * time.Minute,
	}
}

// check validates cfg; errors name the field.
func (cfg *Config) check() error {
	if len(cfg.Sizes) == 0 {
		return errors.New("sizes: at least one is required")
	}
	for _, n := range cfg.Sizes {
		if n < 2 || n > maxServices {
			return fmt.Errorf("sizes: %d is not between 2 and %d", n, maxServices)
		}
	}
	switch {
	case cfg.Endpoints < 1 || cfg.Endpoints > podAddrs/2:
		return fmt.Errorf("endpoints: %d is not between 1 and %d", cfg.Endpoints, podAddrs/2)
	case cfg.Changes < 1 || cfg.Changes > 100_000:
		return fmt.Errorf("changes: %d is not between 1 and 100000", cfg.Changes)
	case cfg.FirstPackets < 1 || cfg.FirstPackets > 100_000:
		return fmt.Errorf("first packets: %d is not between 1 and 100000", cfg.FirstPackets)
	case cfg.Timeout <= 0:
		return fmt.Errorf("timeout: %v is not positive", cfg.Timeout)
	}
	return nil
}

// The run's addresses and names.
const (
	// maxServices bounds a size: cluster IPs are 10.96.0.1 on, and the
	// never-dialled endpoints 10.(200+j).(i/256).(i%256).
	maxServices = 50_000
	// podAddrs is the number of addresses of the pod that listens.
	podAddrs   = 20
	openPort   = 8080
	closedPort = 8081
	tenant     = "b6"
	table      = "paddock-b6"
	floorTable = "paddock-b6-floor"
)

var (
	// floorVIP is the address the floor's rule DNATs; the pod owns it
	// too, with nothing listening on port 80, so that connections are
	// refused until the rule is in.
	floorVIP = netip.AddrPortFrom(netip.MustParseAddr("10.97.0.1"), 80)
	// podBase is the first of the listening pod's extra addresses.
	podBase = netip.MustParseAddr("10.245.0.1")
)

func clusterIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 96 + byte((i+1)>>16), byte((i + 1) >> 8), byte(i + 1)})
}

func serviceName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// measured is the index of the service whose endpoints the changes
// change: one in the middle of the table.
func measured(n int) int { return n / 2 }

// Run runs the benchmark and reports it to cfg.Out (and cfg.Write). It
// returns when the run is over or ctx ends, after everything it made is
// gone.
func Run(ctx context.Context, cfg Config) (err error) {
	if err := cfg.check(); err != nil {
		return fmt.Errorf("svcbench: %w", err)
	}
	if os.Geteuid() != 0 {
		return errors.New("svcbench: needs root (network namespaces and nftables)")
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	release, err := testlock.Acquire()
	if err != nil {
		return fmt.Errorf("svcbench: %w", err)
	}
	defer release()

	res := &results{cfg: cfg, machine: machine.Describe(ctx), started: time.Now(), nftVersion: machine.ModuleVersion("github.com/google/nftables")}
	for _, n := range cfg.Sizes {
		sz, err := runSize(ctx, cfg, n)
		if err != nil {
			return fmt.Errorf("svcbench: %d services: %w", n, err)
		}
		res.sizes = append(res.sizes, sz)
	}
	res.finished = time.Now()
	res.machine.LoadAfter = machine.LoadAvg()
	return mdreport.Publish(cfg.Out, cfg.Write, SectionName, res.markdown())
}

// sizeResult is what one size measured.
type sizeResult struct {
	services int
	ramp     time.Duration
	// changes: Update call → first connection; applied: the Update call
	// alone (the netlink transaction).
	changes, applied []time.Duration
	// apiChanges: Endpoints update through the API → first connection.
	apiChanges []time.Duration
	apiRamp    time.Duration
	floor      []time.Duration
	// firstPacket to the last-defined service, and direct to an endpoint.
	firstPacket, direct []time.Duration
}

// bed is one size's namespaces and proxy.
type bed struct {
	cfg   Config
	topo  *proxytest.Topology
	pod   *proxytest.Pod
	probe *prober
	live  []netip.Addr // the listening pod's extra addresses
}

func runSize(ctx context.Context, cfg Config, n int) (_ *sizeResult, err error) {
	b, err := newBed()
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, b.close()) }()
	res := &sizeResult{services: n}

	cfg.Log.Info("ramping the proxy's table", "services", n, "endpoints", cfg.Endpoints)
	p, err := proxy.New(proxy.Config{Table: table, NetNS: b.topo.Node, ClusterCIDR: proxytest.ClusterCIDR, Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	svcs, eps := b.services(n, cfg.Endpoints)
	start := time.Now()
	if err := p.Sync(svcs, eps); err != nil {
		p.Close()
		return nil, err
	}
	res.ramp = time.Since(start)
	err = b.measure(ctx, cfg, n, res, func(svc *api.Service, ep *api.Endpoints) error { return p.Update(svc, ep) }, &res.changes, &res.applied)
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if cfg.API {
		if err := b.measureAPI(ctx, cfg, n, res); err != nil {
			return nil, fmt.Errorf("through the API: %w", err)
		}
	}
	cfg.Log.Info("floor: single-rule netlink DNAT inserts", "changes", cfg.Changes)
	if res.floor, err = b.floor(ctx, cfg.Changes); err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	return res, nil
}

func newBed() (_ *bed, err error) {
	topo, err := proxytest.New(1)
	if err != nil {
		return nil, err
	}
	b := &bed{topo: topo, pod: topo.Pods[0]}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.close())
		}
	}()
	ip := podBase
	for range podAddrs {
		if err := topo.AddAddress(b.pod, ip); err != nil {
			return nil, err
		}
		b.live = append(b.live, ip)
		ip = ip.Next()
	}
	if err := topo.AddAddress(b.pod, floorVIP.Addr()); err != nil {
		return nil, err
	}
	if err := topo.Serve(b.pod.NetNS, b.pod.Name, openPort); err != nil {
		return nil, err
	}
	if b.probe, err = newProber(topo.Client); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *bed) close() error {
	if b.probe != nil {
		b.probe.close()
	}
	return b.topo.Close()
}

// services returns the ramp's n services of tenant b6 with their
// endpoints: the last-defined one's are live, the measured one's refuse
// (the first change's dead set), the others' are never dialled. (A
// connection to an address that does not answer would leave a conntrack
// entry that a later connection from the same source port follows.)
func (b *bed) services(n, endpoints int) ([]*api.Service, []*api.Endpoints) {
	svcs := make([]*api.Service, n)
	eps := make([]*api.Endpoints, n)
	for i := range n {
		svcs[i] = &api.Service{
			Metadata: api.ObjectMeta{Tenant: tenant, Name: serviceName(i)},
			Spec: api.ServiceSpec{Type: api.ServiceClusterIP, ClusterIP: clusterIP(i).String(),
				Selector: map[string]string{"app": serviceName(i)},
				Ports:    []api.ServicePort{{Protocol: api.ProtocolTCP, Port: 80, TargetPort: openPort}}},
		}
		if i == measured(n) {
			dead, _ := b.flipSets(0, endpoints)
			eps[i] = endpointsOf(i, dead, closedPort)
			continue
		}
		addrs := make([]netip.Addr, endpoints)
		for j := range addrs {
			if i == n-1 {
				addrs[j] = b.live[j]
			} else {
				addrs[j] = netip.AddrFrom4([4]byte{10, byte(200 + j), byte(i >> 8), byte(i)})
			}
		}
		eps[i] = endpointsOf(i, addrs, openPort)
	}
	return svcs, eps
}

func endpointsOf(i int, addrs []netip.Addr, port int32) *api.Endpoints {
	ea := make([]api.EndpointAddress, len(addrs))
	for j, a := range addrs {
		ea[j] = api.EndpointAddress{IP: a.String()}
	}
	return &api.Endpoints{
		Metadata: api.ObjectMeta{Tenant: tenant, Name: serviceName(i)},
		Subsets:  []api.EndpointSubset{{Addresses: ea, Ports: []api.EndpointPort{{Protocol: api.ProtocolTCP, Port: port}}}},
	}
}

// flipSets returns change c's endpoint sets of the measured service:
// refused (the closed port) and then live (the open port, other
// addresses).
func (b *bed) flipSets(c, endpoints int) (dead, live []netip.Addr) {
	for j := range endpoints {
		dead = append(dead, b.live[(2*c+j)%podAddrs])
		live = append(live, b.live[(2*c+endpoints/2+1+j)%podAddrs])
	}
	return dead, live
}

// measure times cfg.Changes endpoint changes of the service in the middle
// of the table, made by apply, and the first packets to the last-defined
// service. applied, when set, receives the duration of apply itself.
func (b *bed) measure(ctx context.Context, cfg Config, n int, res *sizeResult,
	apply func(*api.Service, *api.Endpoints) error, changes, applied *[]time.Duration) error {
	target := measured(n)
	svc := &api.Service{
		Metadata: api.ObjectMeta{Tenant: tenant, Name: serviceName(target)},
		Spec: api.ServiceSpec{Type: api.ServiceClusterIP, ClusterIP: clusterIP(target).String(),
			Selector: map[string]string{"app": serviceName(target)},
			Ports:    []api.ServicePort{{Protocol: api.ProtocolTCP, Port: 80, TargetPort: openPort}}},
	}
	vip := netip.AddrPortFrom(clusterIP(target), 80)
	cfg.Log.Info("timing endpoint changes", "services", n, "changes", cfg.Changes)
	for c := range cfg.Changes {
		if err := ctx.Err(); err != nil {
			return err
		}
		dead, live := b.flipSets(c, cfg.Endpoints)
		if err := apply(svc, endpointsOf(target, dead, closedPort)); err != nil {
			return err
		}
		if err := b.probe.untilRefused(vip, probeTimeout); err != nil {
			return fmt.Errorf("change %d: before it: %w", c, err)
		}
		start := time.Now()
		if err := apply(svc, endpointsOf(target, live, openPort)); err != nil {
			return err
		}
		done := time.Now()
		ok, err := b.probe.untilConnected(vip, probeTimeout)
		if err != nil {
			return fmt.Errorf("change %d: %w", c, err)
		}
		*changes = append(*changes, ok.Sub(start))
		if applied != nil {
			*applied = append(*applied, done.Sub(start))
		}
	}
	if applied == nil {
		return nil // the first packets are measured once per size
	}
	cfg.Log.Info("timing first packets", "services", n, "connections", cfg.FirstPackets)
	last := netip.AddrPortFrom(clusterIP(n-1), 80)
	times, err := b.probe.connectTimes([]netip.AddrPort{last, netip.AddrPortFrom(b.live[0], openPort)}, cfg.FirstPackets)
	if err != nil {
		return fmt.Errorf("first packets to the last-defined service and straight to an endpoint: %w", err)
	}
	res.firstPacket, res.direct = times[0], times[1]
	return nil
}
