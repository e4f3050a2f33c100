package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/paddock-dev/paddock/core/api"
)

// Config configures a Proxy.
type Config struct {
	// Table is the name of the proxy's nftables table (family ip);
	// DefaultTable when empty.
	Table string
	// ClusterCIDR holds the pods' addresses, e.g. "10.244.0.0/16":
	// node-port traffic from outside it is masqueraded so that the replies
	// come back through this node. Empty: all node-port traffic is.
	ClusterCIDR string
	// DNS, when its ServiceIP is set, sends the cluster DNS service's
	// udp and tcp port 53 to its server.
	DNS DNSConfig
	// NetNS is the path of the network namespace to program (a file
	// under /run/netns or /proc/PID/ns/net); empty means the caller's.
	NetNS string
	// Log receives what the proxy does; nil discards it.
	Log *slog.Logger
}

// DNSConfig is the cluster DNS service, programmed as a fixed rule: its
// address's udp and tcp port 53 are DNATed to Target without masquerade,
// so that the DNS server sees the asking pod's address.
type DNSConfig struct {
	// ServiceIP is the DNS service's cluster IP, e.g. 10.96.0.10.
	ServiceIP string
	// Target is where the server listens, HOST:PORT with an IPv4 HOST
	// that the pods' packets can be routed to (not loopback).
	Target string
}

// Proxy programs one network namespace's nftables for the services it is
// given. Its methods are safe for concurrent use.
type Proxy struct {
	log       *slog.Logger
	table     *nftables.Table
	cidr      netip.Prefix // zero: masquerade all node-port traffic
	dnsIP     netip.Addr   // zero: no DNS rule
	dnsTarget netip.AddrPort

	mu    sync.Mutex
	netns string
	conn  *nftables.Conn
	sets  struct{ ips, nodePorts, hairpin *nftables.Set }
	setID uint32
	// services are the ports programmed per service key.
	services map[string]map[string]*servicePort
	// hairpin counts the service ports that have each endpoint address.
	hairpin map[netip.Addr]int
	// stale holds what an earlier run left in the table and no change of
	// this one has taken over yet: chain names and element keys (as
	// strings) per set. Sync removes what remains.
	stale struct {
		chains map[string]bool
		// ips, nodePorts and pairs map element keys to the chain their
		// verdict goes to ("" in the plain set @hairpin).
		ips, nodePorts, pairs map[string]string
	}
}

// New returns a proxy programming cfg.Table in cfg.NetNS. It creates the
// table's skeleton, or rewrites it in one transaction when an earlier run
// left the table, keeping that run's services answering until Sync.
func New(cfg Config) (*Proxy, error) {
	p := &Proxy{log: cfg.Log, services: map[string]map[string]*servicePort{}, hairpin: map[netip.Addr]int{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	name := cfg.Table
	if name == "" {
		name = DefaultTable
	}
	if len(name) > 64 {
		return nil, fmt.Errorf("proxy: table: %q is longer than 64 characters", name)
	}
	p.table = &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
	if cfg.ClusterCIDR != "" {
		pfx, err := netip.ParsePrefix(cfg.ClusterCIDR)
		if err != nil || !pfx.Addr().Is4() {
			return nil, fmt.Errorf("proxy: cluster CIDR: %q is not an IPv4 prefix such as 10.244.0.0/16", cfg.ClusterCIDR)
		}
		p.cidr = pfx.Masked()
	}
	if cfg.DNS.ServiceIP != "" || cfg.DNS.Target != "" {
		ip, err := netip.ParseAddr(cfg.DNS.ServiceIP)
		if err != nil || !ip.Is4() {
			return nil, fmt.Errorf("proxy: DNS service IP: %q is not an IPv4 address", cfg.DNS.ServiceIP)
		}
		to, err := netip.ParseAddrPort(cfg.DNS.Target)
		if err != nil || !to.Addr().Is4() || to.Port() == 0 || to.Addr().IsLoopback() {
			return nil, fmt.Errorf("proxy: DNS target: %q is not a routable IPv4 HOST:PORT such as 10.244.0.1:53", cfg.DNS.Target)
		}
		p.dnsIP, p.dnsTarget = ip, to
	}
	p.netns = cfg.NetNS
	if err := p.reconnect(); err != nil {
		return nil, err
	}
	if err := p.setup(); err != nil {
		p.conn.CloseLasting()
		return nil, fmt.Errorf("proxy: table %s: %w", name, err)
	}
	return p, nil
}

// reconnect opens the netlink socket, in the configured network
// namespace, closing any earlier one with whatever it had queued.
func (p *Proxy) reconnect() error {
	if p.conn != nil {
		p.conn.CloseLasting()
		p.conn = nil
	}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(largeBuffers)}
	if p.netns != "" {
		ns, err := os.Open(p.netns)
		if err != nil {
			return fmt.Errorf("proxy: network namespace: %w", err)
		}
		defer ns.Close()
		opts = append(opts, nftables.WithNetNSFd(int(ns.Fd())))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("proxy: netlink: %w", err)
	}
	p.conn = conn
	return nil
}

// largeBuffers lets one batch carry thousands of messages: the kernel
// acknowledges each before the first is read.
func largeBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_RCVBUFFORCE, unix.SO_SNDBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, 32<<20); e != nil {
				serr = fmt.Errorf("netlink socket buffer: %w", e)
			}
		}
	})
	return errors.Join(err, serr)
}

func (p *Proxy) nextSetID() uint32 {
	p.setID++
	return p.setID
}

// setup reads what an earlier run left, then (re)writes the skeleton in
// one transaction.
func (p *Proxy) setup() error {
	p.stale.chains, p.stale.ips, p.stale.nodePorts, p.stale.pairs = map[string]bool{}, map[string]string{}, map[string]string{}, map[string]string{}
	if _, err := p.conn.ListTableOfFamily(p.table.Name, p.table.Family); err == nil {
		if err := p.readLeftovers(); err != nil {
			return err
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("list: %w", err)
	}
	c, t := p.conn, p.table
	c.AddTable(t)
	p.sets.ips = &nftables.Set{Table: t, Name: setServiceIPs, ID: p.nextSetID(), IsMap: true, Concatenation: true, KeyType: serviceIPType, DataType: nftables.TypeVerdict}
	p.sets.nodePorts = &nftables.Set{Table: t, Name: setNodePorts, ID: p.nextSetID(), IsMap: true, Concatenation: true, KeyType: nodePortType, DataType: nftables.TypeVerdict}
	p.sets.hairpin = &nftables.Set{Table: t, Name: setHairpin, ID: p.nextSetID(), Concatenation: true, KeyType: hairpinType}
	for _, s := range []*nftables.Set{p.sets.ips, p.sets.nodePorts, p.sets.hairpin} {
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
	}
	chain := func(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		ch := &nftables.Chain{Name: name, Table: t}
		if hook != nil {
			ch.Type, ch.Hooknum, ch.Priority = nftables.ChainTypeNAT, hook, prio
			policy := nftables.ChainPolicyAccept
			ch.Policy = &policy
		}
		c.AddChain(ch)
		c.FlushChain(ch)
		return ch
	}
	rule := func(ch *nftables.Chain, exprs ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	services := chain(chainServices, nil, nil)
	rule(services,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg9},
		&expr.Payload{DestRegister: reg10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: setServiceIPs, SetID: p.sets.ips.ID, DestRegister: 0, IsDestRegSet: true},
	)
	rule(services,
		&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: nativeUint32(unix.RTN_LOCAL)},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{127}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Payload{DestRegister: reg9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: setNodePorts, SetID: p.sets.nodePorts.ID, DestRegister: 0, IsDestRegSet: true},
	)
	jumpServices := &expr.Verdict{Kind: expr.VerdictJump, Chain: chainServices}
	rule(chain(chainPrerouting, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest), jumpServices)
	rule(chain(chainOutput, nftables.ChainHookOutput, nftables.ChainPriorityNATDest), jumpServices)
	post := chain(chainPostrout, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	// meta mark & 0x4000 != 0 meta mark set meta mark & ~0x4000 masquerade
	rule(post,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: nativeUint32(masqMark), Xor: nativeUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: nativeUint32(0)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: nativeUint32(^uint32(masqMark)), Xor: nativeUint32(0)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
		&expr.Masq{},
	)
	// ct status dnat ip saddr . ip daddr @hairpin masquerade
	rule(post,
		&expr.Ct{Key: expr.CtKeySTATUS, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: nativeUint32(ctStatusDstNAT), Xor: nativeUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: nativeUint32(0)},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: reg9, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: reg1, SetName: setHairpin, SetID: p.sets.hairpin.ID},
		&expr.Masq{},
	)
	if p.dnsIP.IsValid() {
		dns := chain(chainDNS, nil, nil)
		var elems []nftables.SetElement
		for _, proto := range []uint8{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			rule(dns, dnatTo(proto, p.dnsTarget)...)
			key := serviceIPKey(p.dnsIP, proto, 53)
			if chain, ok := p.stale.ips[string(key)]; ok && chain != chainDNS {
				if err := c.SetDeleteElements(p.sets.ips, []nftables.SetElement{{Key: key}}); err != nil {
					return err
				}
			}
			elems = append(elems, nftables.SetElement{Key: key, VerdictData: gotoChain(chainDNS)})
		}
		if err := c.SetAddElements(p.sets.ips, elems); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return err
	}
	if p.dnsIP.IsValid() {
		delete(p.stale.chains, chainDNS)
		for _, proto := range []uint8{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			delete(p.stale.ips, string(serviceIPKey(p.dnsIP, proto, 53)))
		}
	}
	if n := len(p.stale.chains); n > 0 {
		p.log.Info("kept the service rules of an earlier run until the first sync", "table", p.table.Name, "chains", n)
	}
	return nil
}

func nativeUint32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// ctStatusDstNAT is the conntrack status bit of a destination-NATed
// connection (IPS_DST_NAT).
const ctStatusDstNAT = 1 << 5

// readLeftovers records the chains and elements an earlier run left.
func (p *Proxy) readLeftovers() error {
	chains, err := p.conn.ListChainsOfTableFamily(p.table.Family)
	if err != nil {
		return fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == p.table.Name && (!staticChains[ch.Name] || ch.Name == chainDNS) {
			p.stale.chains[ch.Name] = true
		}
	}
	for name, into := range map[string]map[string]string{setServiceIPs: p.stale.ips, setNodePorts: p.stale.nodePorts, setHairpin: p.stale.pairs} {
		s, err := p.conn.GetSetByName(p.table, name)
		if err != nil {
			continue // made below
		}
		elems, err := p.conn.GetSetElements(s)
		if err != nil {
			return fmt.Errorf("list set %s: %w", name, err)
		}
		for _, e := range elems {
			into[string(e.Key)] = verdictChain(e.Val)
		}
	}
	return nil
}

// verdictChain returns the chain of a verdict as an element lists it
// (nested NFTA_VERDICT_CODE and NFTA_VERDICT_CHAIN), or "".
func verdictChain(b []byte) string {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == unix.NFTA_VERDICT_CHAIN {
			return ad.String()
		}
	}
	return ""
}

// Close removes the proxy's table, and with it every service rule, and
// releases its netlink socket. Stop Run (or stop calling Update) rather
// than Close across an agent restart: the rules keep working meanwhile.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return nil
	}
	p.conn.DelTable(p.table)
	err := p.conn.Flush()
	if errors.Is(err, unix.ENOENT) {
		err = nil
	}
	p.conn.CloseLasting()
	p.conn = nil
	if err != nil {
		return fmt.Errorf("proxy: remove table %s: %w", p.table.Name, err)
	}
	return nil
}

// Update programs svc with the ready endpoints of ep (nil: none), in one
// transaction that touches only svc's objects. It is level-triggered:
// calling it again with the same objects changes nothing.
func (p *Proxy) Update(svc *api.Service, ep *api.Endpoints) error {
	if svc == nil {
		return errors.New("proxy: update: the service is missing (use Delete to remove one)")
	}
	want, err := desiredPorts(svc, ep)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	return p.apply([]change{{key: serviceKey(svc.Metadata.Tenant, svc.Metadata.Name), want: want}})
}

// Delete removes the rules of service tenant/name; a service the proxy
// does not know is not an error.
func (p *Proxy) Delete(tenant, name string) error {
	return p.apply([]change{{key: serviceKey(tenant, name)}})
}

// Sync makes the table hold exactly the given services: it programs each
// (with the endpoints of the same tenant and name), removes the services
// it programmed that are not among them, and removes what an earlier run
// left that none of them took over. Changes go in batches of many
// services per transaction. A service whose objects are invalid is
// skipped and named in the error; the others are programmed.
func (p *Proxy) Sync(services []*api.Service, endpoints []*api.Endpoints) error {
	eps := make(map[string]*api.Endpoints, len(endpoints))
	for _, e := range endpoints {
		if e == nil {
			continue
		}
		eps[serviceKey(e.Metadata.Tenant, e.Metadata.Name)] = e
	}
	var errs []error
	changes := make([]change, 0, len(services))
	seen := map[string]bool{}
	for _, svc := range services {
		if svc == nil {
			continue
		}
		key := serviceKey(svc.Metadata.Tenant, svc.Metadata.Name)
		want, err := desiredPorts(svc, eps[key])
		if err != nil {
			errs = append(errs, err)
			seen[key] = true // keep what it has
			continue
		}
		seen[key] = true
		changes = append(changes, change{key: key, want: want})
	}
	p.mu.Lock()
	for key := range p.services {
		if !seen[key] {
			changes = append(changes, change{key: key})
		}
	}
	p.mu.Unlock()
	if err := p.apply(changes); err != nil {
		errs = append(errs, err)
	}
	if err := p.prune(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("proxy: sync: %w", errors.Join(errs...))
	}
	return nil
}

// A change makes service key's ports want (nil: none).
type change struct {
	key  string
	want map[string]*servicePort
}

// maxBatch bounds the netlink messages of one transaction.
const maxBatch = 4000

// apply applies changes in as few transactions as maxBatch allows. When
// a transaction fails, its changes are retried one at a time so that one
// bad service does not hold back the others.
func (p *Proxy) apply(changes []change) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return errors.New("proxy: closed")
	}
	var errs []error
	for len(changes) > 0 {
		t := p.newTxn()
		n := 0
		for n < len(changes) && (n == 0 || t.msgs < maxBatch) {
			t.queue(changes[n])
			n++
		}
		if err := t.commit(); err != nil {
			if n == 1 {
				errs = append(errs, fmt.Errorf("service %s: %w", changes[0].key, err))
			} else {
				for _, c := range changes[:n] {
					t := p.newTxn()
					t.queue(c)
					if err := t.commit(); err != nil {
						errs = append(errs, fmt.Errorf("service %s: %w", c.key, err))
					}
				}
			}
		}
		changes = changes[n:]
	}
	if len(errs) > 0 {
		return fmt.Errorf("proxy: %w", errors.Join(errs...))
	}
	return nil
}

// prune removes what an earlier run left and no change took over: map
// elements first, then the chains' rules (which drops their references
// to each other), then the chains. It sends at most maxBatch messages a
// transaction.
func (p *Proxy) prune() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return errors.New("proxy: closed")
	}
	c := p.conn
	chains := slices.Sorted(maps.Keys(p.stale.chains))
	steps := []struct {
		what string
		keys []string
		op   func(key string) error
	}{
		{"elements", slices.Collect(maps.Keys(p.stale.ips)), p.deleteElement(p.sets.ips)},
		{"elements", slices.Collect(maps.Keys(p.stale.nodePorts)), p.deleteElement(p.sets.nodePorts)},
		{"elements", slices.Collect(maps.Keys(p.stale.pairs)), p.deleteElement(p.sets.hairpin)},
		{"chains' rules", chains, func(name string) error { c.FlushChain(&nftables.Chain{Name: name, Table: p.table}); return nil }},
		{"chains", chains, func(name string) error { c.DelChain(&nftables.Chain{Name: name, Table: p.table}); return nil }},
	}
	for _, st := range steps {
		for part := range slices.Chunk(st.keys, maxBatch) {
			for _, key := range part {
				if err := st.op(key); err != nil {
					return err
				}
			}
			if err := c.Flush(); err != nil {
				return fmt.Errorf("proxy: remove an earlier run's %s: %w", st.what, err)
			}
		}
	}
	if n := len(chains); n > 0 {
		p.log.Info("removed an earlier run's leftover service rules", "table", p.table.Name, "chains", n)
	}
	clear(p.stale.chains)
	clear(p.stale.ips)
	clear(p.stale.nodePorts)
	clear(p.stale.pairs)
	return nil
}

func (p *Proxy) deleteElement(s *nftables.Set) func(key string) error {
	return func(key string) error {
		return p.conn.SetDeleteElements(s, []nftables.SetElement{{Key: []byte(key)}})
	}
}

// Services returns the keys ("tenant/name") of the services programmed
// with at least one port, sorted.
func (p *Proxy) Services() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.services))
}
