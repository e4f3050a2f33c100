package proxy

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// A txn collects the netlink messages of one transaction and the state
// the proxy will be in once the kernel has taken it. The caller holds
// p.mu.
type txn struct {
	p    *Proxy
	msgs int
	// services are the new ports of the services queued.
	services map[string]map[string]*servicePort
	// hairpin holds the changed reference counts.
	hairpin map[netip.Addr]int
	// claimed are the earlier run's chains and elements this transaction
	// takes over.
	claimedChains, claimedIPs, claimedNodePorts, claimedPairs []string
	// err is the first error queueing a message (marshalling).
	err error
}

func (t *txn) check(err error) {
	if t.err == nil {
		t.err = err
	}
}

func (p *Proxy) newTxn() *txn {
	return &txn{p: p, services: map[string]map[string]*servicePort{}, hairpin: map[netip.Addr]int{}}
}

// current returns the ports service key has once the queued changes are
// taken.
func (t *txn) current(key string) map[string]*servicePort {
	if s, ok := t.services[key]; ok {
		return s
	}
	return t.p.services[key]
}

func (t *txn) hairpinRefs(ip netip.Addr) int {
	if n, ok := t.hairpin[ip]; ok {
		return n
	}
	return t.p.hairpin[ip]
}

// queue adds the messages that turn service c.key's ports into c.want.
// Order matters inside a transaction: a chain can be removed only after
// every element and rule that refers to it is.
func (t *txn) queue(c change) {
	p, conn := t.p, t.p.conn
	have := t.current(c.key)
	var delIPs, delNodePorts []nftables.SetElement
	var delChains []string
	for id, old := range have {
		nw := c.want[id]
		if nw == nil || nw.clusterIP != old.clusterIP || nw.port != old.port {
			delIPs = append(delIPs, nftables.SetElement{Key: serviceIPKey(old.clusterIP, old.proto, old.port)})
		}
		if old.nodePort != 0 && (nw == nil || nw.nodePort != old.nodePort) {
			delNodePorts = append(delNodePorts, nftables.SetElement{Key: nodePortKey(old.proto, old.nodePort)})
			delChains = append(delChains, old.extChain())
		}
		if nw == nil {
			delChains = append(delChains, old.svcChain())
		}
	}
	t.deleteElements(t.p.sets.ips, delIPs)
	t.deleteElements(t.p.sets.nodePorts, delNodePorts)
	for _, name := range delChains { // ext chains come first: they go to svc chains
		ch := &nftables.Chain{Name: name, Table: p.table}
		conn.FlushChain(ch)
		conn.DelChain(ch)
		t.msgs += 2
	}

	for id, sp := range c.want {
		old := have[id]
		if old != nil && old.equal(sp) {
			continue
		}
		svc := t.chain(sp.svcChain(), old == nil)
		if old == nil || !slices.Equal(old.endpoints, sp.endpoints) {
			if old != nil {
				conn.FlushChain(svc)
				t.msgs++
			}
			t.serviceRule(svc, sp)
		}
		if old == nil || old.clusterIP != sp.clusterIP || old.port != sp.port {
			t.addElement(t.p.sets.ips, &t.claimedIPs, t.p.stale.ips, serviceIPKey(sp.clusterIP, sp.proto, sp.port), svc.Name)
		}
		if sp.nodePort != 0 && (old == nil || old.nodePort != sp.nodePort) {
			ext := t.chain(sp.extChain(), true)
			if p.cidr.IsValid() {
				t.rule(ext, append(sourceNotIn(p.cidr), setMasqMark()...)...)
			} else {
				t.rule(ext, setMasqMark()...)
			}
			t.rule(ext, gotoChain(svc.Name))
			t.addElement(t.p.sets.nodePorts, &t.claimedNodePorts, t.p.stale.nodePorts, nodePortKey(sp.proto, sp.nodePort), ext.Name)
		}
	}

	// Hairpin pairs: each service counts once per endpoint address.
	haveIPs, wantIPs := hairpinAddrs(have), hairpinAddrs(c.want)
	for _, ip := range haveIPs {
		if _, ok := slices.BinarySearchFunc(wantIPs, ip, netip.Addr.Compare); ok {
			continue
		}
		n := t.hairpinRefs(ip) - 1
		t.hairpin[ip] = n
		if n == 0 {
			t.deleteElements(t.p.sets.hairpin, []nftables.SetElement{{Key: hairpinKey(ip)}})
		}
	}
	for _, ip := range wantIPs {
		if _, ok := slices.BinarySearchFunc(haveIPs, ip, netip.Addr.Compare); ok {
			continue
		}
		n := t.hairpinRefs(ip) + 1
		t.hairpin[ip] = n
		if n == 1 {
			t.addElement(t.p.sets.hairpin, &t.claimedPairs, t.p.stale.pairs, hairpinKey(ip), "")
		}
	}
	t.services[c.key] = c.want
}

// chain queues the creation of a chain, or, for a chain an earlier run
// left, takes it over emptied. fresh says the proxy has not made it yet.
func (t *txn) chain(name string, fresh bool) *nftables.Chain {
	ch := &nftables.Chain{Name: name, Table: t.p.table}
	if !fresh {
		return ch
	}
	t.p.conn.AddChain(ch)
	t.msgs++
	if t.p.stale.chains[name] {
		t.p.conn.FlushChain(ch)
		t.msgs++
		t.claimedChains = append(t.claimedChains, name)
	}
	return ch
}

func (t *txn) rule(ch *nftables.Chain, exprs ...expr.Any) {
	t.p.conn.AddRule(&nftables.Rule{Table: t.p.table, Chain: ch, Exprs: exprs})
	t.msgs++
}

// serviceRule queues the rules of a service port's chain: a random DNAT
// to one of its endpoints (and a fallback), or a reject when it has none.
func (t *txn) serviceRule(ch *nftables.Chain, sp *servicePort) {
	if len(sp.endpoints) == 0 {
		t.rule(ch, rejectRule(sp.proto)...)
		return
	}
	m := &nftables.Set{Table: t.p.table, Name: "__map%d", ID: t.p.nextSetID(), Anonymous: true, Constant: true, IsMap: true,
		KeyType: nftables.TypeInteger, DataType: endpointType}
	elems := make([]nftables.SetElement, len(sp.endpoints))
	for i, e := range sp.endpoints {
		a := e.Addr().As4()
		elems[i] = nftables.SetElement{Key: binary.NativeEndian.AppendUint32(nil, uint32(i)), Val: append(a[:], padded(port16(e.Port())...)...)}
	}
	// A netlink attribute holds at most 64 KiB: add the elements in
	// parts, all before the rule binds the map.
	first := min(len(elems), elementsPerMessage)
	t.check(t.p.conn.AddSet(m, elems[:first]))
	t.msgs += 2
	for rest := elems[first:]; len(rest) > 0; {
		n := min(len(rest), elementsPerMessage)
		t.check(t.p.conn.SetAddElements(m, rest[:n]))
		t.msgs++
		rest = rest[n:]
	}
	t.rule(ch, append(matchL4Proto(sp.proto),
		&expr.Numgen{Register: reg1, Modulus: uint32(len(sp.endpoints)), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: m.Name, SetID: m.ID},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg9, Specified: true},
	)...)
	// The DNAT above ends the chain. A packet gets here only when the map
	// lookup missed: a packet that entered this rule before the
	// transaction replacing it committed, but looked up after it, finds
	// the old map's elements already inactive. Rather than leaving it
	// unNATed (unroutable), send it to the first endpoint.
	t.rule(ch, dnatTo(sp.proto, sp.endpoints[0])...)
}

// elementsPerMessage keeps a message's elements well under the 64 KiB
// of one netlink attribute (an endpoint element takes about 50 bytes).
const elementsPerMessage = 500

// addElement queues an element (a goto to chain, or a plain key when
// chain is empty). An earlier run's element of that key is kept when it
// is the same, and replaced when it names another chain.
func (t *txn) addElement(s *nftables.Set, claimed *[]string, stale map[string]string, key []byte, chain string) {
	if old, ok := stale[string(key)]; ok {
		*claimed = append(*claimed, string(key))
		if old == chain {
			return
		}
		t.deleteElements(s, []nftables.SetElement{{Key: key}})
	}
	e := nftables.SetElement{Key: key}
	if chain != "" {
		e.VerdictData = gotoChain(chain)
	}
	t.check(t.p.conn.SetAddElements(s, []nftables.SetElement{e}))
	t.msgs++
}

func (t *txn) deleteElements(s *nftables.Set, elems []nftables.SetElement) {
	if len(elems) == 0 {
		return
	}
	t.check(t.p.conn.SetDeleteElements(s, elems))
	t.msgs++
}

// commit sends the transaction; once the kernel has taken it, the proxy's
// state follows.
func (t *txn) commit() error {
	if t.err != nil {
		// The queued messages are incomplete: drop them with the socket.
		return errors.Join(t.err, t.p.reconnect())
	}
	if t.msgs > 0 {
		if err := t.p.conn.Flush(); err != nil {
			return err
		}
	}
	p := t.p
	for key, ports := range t.services {
		if len(ports) == 0 {
			delete(p.services, key)
		} else {
			p.services[key] = ports
		}
	}
	for ip, n := range t.hairpin {
		if n <= 0 {
			delete(p.hairpin, ip)
		} else {
			p.hairpin[ip] = n
		}
	}
	for _, name := range t.claimedChains {
		delete(p.stale.chains, name)
	}
	for _, k := range t.claimedIPs {
		delete(p.stale.ips, k)
	}
	for _, k := range t.claimedNodePorts {
		delete(p.stale.nodePorts, k)
	}
	for _, k := range t.claimedPairs {
		delete(p.stale.pairs, k)
	}
	return nil
}
