package bridge

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/paddock-dev/paddock/netplugins/internal/nft"
)

// Chain and set names inside the plugin's tables.
const (
	chainForward     = "forward"
	chainPodIngress  = "pod-ingress"
	chainPolicy      = "policy"
	chainPostrouting = "postrouting"
	chainPrerouting  = "prerouting"
	chainFromPod     = "from-pod"
	chainTenant      = "tenant-" // + tenant id: the pods a tenant's traffic may reach

	setPods       = "pods"      // inet: local pod addresses
	setTenantOf   = "tenant_of" // inet: verdict map pod address → goto tenant-ID (local and remote pods)
	setTenantPods = "pods-"     // inet: + tenant id: the tenant's local pod addresses
	setPorts      = "ports"     // bridge: host sides of the pods
	setPortMAC    = "port_mac"  // bridge: host side . the pod's MAC
	setPortIP     = "port_ip"   // bridge: host side . the pod's address
)

// tables is the nftables layout of one plugin instance: a table of
// family inet (tenant isolation, NetworkPolicy, masquerade) and one of
// family bridge (anti-spoofing on the bridge ports), both named after the
// configuration's table. Every tenant with pods here or in the policy's
// remote endpoints has a set pods-ID and a chain tenant-ID.
type tables struct {
	inet, br                          *nftables.Table
	pods, tenantOf                    *nftables.Set
	ports, portMAC, portIP            *nftables.Set
	forward, podIngress, policy, post *nftables.Chain
	prerouting, fromPod               *nftables.Chain
}

func newTables(name string) *tables {
	inet := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	br := &nftables.Table{Name: name, Family: nftables.TableFamilyBridge}
	accept := nftables.ChainPolicyAccept
	return &tables{
		inet: inet, br: br,
		pods:     &nftables.Set{Table: inet, Name: setPods, KeyType: nftables.TypeIPAddr},
		tenantOf: &nftables.Set{Table: inet, Name: setTenantOf, KeyType: nftables.TypeIPAddr, IsMap: true, DataType: nftables.TypeVerdict},
		// Host byte order, as nft keeps strings: it then prints the names.
		ports:   &nftables.Set{Table: br, Name: setPorts, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian},
		portMAC: &nftables.Set{Table: br, Name: setPortMAC, KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr), Concatenation: true},
		portIP:  &nftables.Set{Table: br, Name: setPortIP, KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr), Concatenation: true},
		forward: &nftables.Chain{Table: inet, Name: chainForward, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept},
		podIngress: &nftables.Chain{Table: inet, Name: chainPodIngress},
		policy:     &nftables.Chain{Table: inet, Name: chainPolicy},
		post: &nftables.Chain{Table: inet, Name: chainPostrouting, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept},
		prerouting: &nftables.Chain{Table: br, Name: chainPrerouting, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-200), Policy: &accept},
		fromPod: &nftables.Chain{Table: br, Name: chainFromPod},
	}
}

func (t *tables) sets() []*nftables.Set {
	return []*nftables.Set{t.pods, t.tenantOf, t.ports, t.portMAC, t.portIP}
}

// outdated returns the tables that exist, when they hold sets of another
// layout than this plugin's (a set of the same name with another key or
// data type, or a set this layout does not have); else nil.
func (t *tables) outdated(c *nftables.Conn) []*nftables.Table {
	var exist []*nftables.Table
	stale := false
	for _, table := range []*nftables.Table{t.inet, t.br} {
		have, err := c.GetSets(table)
		if err != nil {
			continue // no such table
		}
		exist = append(exist, table)
		for _, h := range have {
			if strings.HasPrefix(h.Name, setTenantPods) && table == t.inet {
				continue
			}
			i := slices.IndexFunc(t.sets(), func(s *nftables.Set) bool { return s.Name == h.Name && s.Table.Family == table.Family })
			if i < 0 {
				stale = true
				continue
			}
			if !sameType(h, t.sets()[i]) {
				stale = true
			}
		}
	}
	if !stale {
		return nil
	}
	return exist
}

// sameType reports whether the set h read from the kernel has want's key
// and data types.
func sameType(h, want *nftables.Set) bool {
	if h.IsMap != want.IsMap {
		return false
	}
	if want.IsMap && want.DataType.Name == nftables.TypeVerdict.Name {
		// google/nftables reads a verdict map's data type into KeyType.
		return h.KeyType.Name == nftables.TypeVerdict.Name || h.DataType.Name == nftables.TypeVerdict.Name
	}
	return h.KeyType.Name == want.KeyType.Name && (!want.IsMap || h.DataType.Name == want.DataType.Name)
}

// tenantSet and tenantChain are tenant id's set and chain.
func (t *tables) tenantSet(id uint32) *nftables.Set {
	return &nftables.Set{Table: t.inet, Name: setTenantPods + strconv.FormatUint(uint64(id), 10), KeyType: nftables.TypeIPAddr}
}

func (t *tables) tenantChain(id uint32) *nftables.Chain {
	return &nftables.Chain{Table: t.inet, Name: chainTenant + strconv.FormatUint(uint64(id), 10)}
}

// tenantVerdict is where tenant_of sends the traffic of a tenant's pods.
func tenantVerdict(id uint32) *expr.Verdict {
	return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainTenant + strconv.FormatUint(uint64(id), 10)}
}

// staticRules are the rules of every chain but the policy and tenant
// chains, for the node n.
func (t *tables) staticRules(n *nodeState, s settings) map[*nftables.Chain][]*nftables.Rule {
	inet, br := t.inet, t.br
	rules := map[*nftables.Chain][]*nftables.Rule{
		// Replies and related traffic of allowed connections pass; new
		// traffic to a local pod is judged in pod-ingress.
		t.forward: {
			nft.Rule(inet, t.forward, nft.CtState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), nft.One(nft.Accept())),
			nft.Rule(inet, t.forward, nft.IPv4Only(), nft.One(nft.IPDaddr(nft.Reg), nft.Lookup(t.pods, nft.Reg, false), nft.Jump(chainPodIngress))),
		},
		// Traffic from outside the cluster's pod range (the node's own
		// addresses, clients of node ports) and from the node on the
		// bridge passes; pod traffic goes to its tenant's chain, and a
		// source of no known tenant is dropped.
		t.podIngress: {
			nft.Rule(inet, t.podIngress, nft.IPv4Only(), nft.InPrefix(nft.IPSaddr(nft.Reg), n.ClusterCIDR, true), nft.One(nft.Accept())),
			nft.Rule(inet, t.podIngress, nft.IPv4Only(), nft.One(nft.IPSaddr(nft.Reg), nft.Eq(nft.Reg, nft.IPv4(n.Gateway())), nft.Accept())),
			nft.Rule(inet, t.podIngress, nft.IPv4Only(), nft.One(nft.IPSaddr(nft.Reg), nft.VerdictMap(t.tenantOf, nft.Reg))),
			nft.Rule(inet, t.podIngress, nft.One(nft.Drop())),
		},
		// A pod's frames must carry its own MAC and address (ARP's sender
		// fields too), and only IPv4 and ARP.
		t.prerouting: {
			nft.Rule(br, t.prerouting, nft.One(nft.Meta(expr.MetaKeyIIFNAME, nft.Reg), nft.Lookup(t.ports, nft.Reg, false), nft.Jump(chainFromPod))),
		},
		t.fromPod: {
			nft.Rule(br, t.fromPod, nft.One(nft.Meta(expr.MetaKeyIIFNAME, nft.Concat), nft.EtherSaddr(nft.Concat+4), nft.Lookup(t.portMAC, nft.Concat, true), nft.Drop())),
			nft.Rule(br, t.fromPod, nft.EtherType(nft.EtherTypeIPv4, false),
				nft.One(nft.Meta(expr.MetaKeyIIFNAME, nft.Concat), nft.IPSaddr(nft.Concat+4), nft.Lookup(t.portIP, nft.Concat, true), nft.Drop())),
			nft.Rule(br, t.fromPod, nft.EtherType(nft.EtherTypeARP, false),
				nft.One(nft.Meta(expr.MetaKeyIIFNAME, nft.Concat), nft.ARPSenderMAC(nft.Concat+4), nft.Lookup(t.portMAC, nft.Concat, true), nft.Drop())),
			nft.Rule(br, t.fromPod, nft.EtherType(nft.EtherTypeARP, false),
				nft.One(nft.Meta(expr.MetaKeyIIFNAME, nft.Concat), nft.ARPSenderIP(nft.Concat+4), nft.Lookup(t.portIP, nft.Concat, true), nft.Drop())),
			nft.Rule(br, t.fromPod, nft.EtherType(nft.EtherTypeIPv4, true), nft.EtherType(nft.EtherTypeARP, true), nft.One(nft.Drop())),
		},
		t.post: nil,
	}
	if s.Masquerade {
		groups := [][]expr.Any{
			nft.IPv4Only(),
			nft.InPrefix(nft.IPSaddr(nft.Reg), n.PodCIDR, false),
			nft.InPrefix(nft.IPDaddr(nft.Reg), n.ClusterCIDR, true),
		}
		if n.ServiceCIDR.IsValid() {
			groups = append(groups, nft.InPrefix(nft.IPDaddr(nft.Reg), n.ServiceCIDR, true))
		}
		groups = append(groups, nft.One(nft.Meta(expr.MetaKeyOIFNAME, nft.Reg), nft.Neq(nft.Reg, nft.Ifname(s.Bridge)), &expr.Masq{}))
		rules[t.post] = []*nftables.Rule{nft.Rule(inet, t.post, groups...)}
	}
	return rules
}

// setup adds, to c's batch, the tables, sets and chains (kept when they
// exist, with their elements) and replaces the rules of the static
// chains.
func (t *tables) setup(c *nftables.Conn, n *nodeState, s settings) error {
	c.AddTable(t.inet)
	c.AddTable(t.br)
	for _, set := range t.sets() {
		if err := c.AddSet(set, nil); err != nil {
			return fmt.Errorf("nftables set %s: %w", set.Name, err)
		}
	}
	for _, ch := range []*nftables.Chain{t.podIngress, t.policy, t.forward, t.post, t.fromPod, t.prerouting} {
		c.AddChain(ch)
		c.FlushChain(ch)
	}
	for _, rules := range t.staticRules(n, s) {
		for _, r := range rules {
			c.AddRule(r)
		}
	}
	return nil
}

// dataplane is what the sets and the policy chain should hold.
type dataplane struct {
	local  []*record
	remote []remoteEndpoint
	policy map[string][]ingressRule // sandbox id → rules
}

// tenants returns the ids of the tenants with local or remote pods.
func (d *dataplane) tenants() []uint32 {
	var ids []uint32
	for _, r := range d.local {
		ids = append(ids, r.TenantID)
	}
	for _, e := range d.remote {
		ids = append(ids, e.TenantID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// elements returns the elements each set should hold.
func (t *tables) elements(d *dataplane) map[string][]nftables.SetElement {
	out := map[string][]nftables.SetElement{}
	add := func(set *nftables.Set, e nftables.SetElement) { out[set.Name] = append(out[set.Name], e) }
	local := map[netip.Addr]bool{}
	for _, id := range d.tenants() {
		out[t.tenantSet(id).Name] = nil
	}
	for _, r := range d.local {
		ip := r.Address.Addr()
		local[ip] = true
		port := nft.Ifname(r.HostVeth)
		add(t.pods, nftables.SetElement{Key: nft.IPv4(ip)})
		add(t.tenantOf, nftables.SetElement{Key: nft.IPv4(ip), VerdictData: tenantVerdict(r.TenantID)})
		add(t.tenantSet(r.TenantID), nftables.SetElement{Key: nft.IPv4(ip)})
		add(t.ports, nftables.SetElement{Key: port})
		add(t.portMAC, nftables.SetElement{Key: nft.Key(port, r.mac())})
		add(t.portIP, nftables.SetElement{Key: nft.Key(port, nft.IPv4(ip))})
	}
	for _, e := range d.remote {
		if !local[e.IP] {
			local[e.IP] = true
			add(t.tenantOf, nftables.SetElement{Key: nft.IPv4(e.IP), VerdictData: tenantVerdict(e.TenantID)})
		}
	}
	return out
}

// sync adds, to c's batch, what makes the kernel match d: the tenants'
// sets and chains (made or removed), the element changes of every set
// (reading what they hold now) and the policy chain, rebuilt.
func (t *tables) sync(c *nftables.Conn, d *dataplane) error {
	existing, err := c.GetSets(t.inet)
	if err != nil {
		return fmt.Errorf("nftables: sets of table inet %s: %w", t.inet.Name, err)
	}
	want := t.elements(d)
	needed := d.tenants()
	sets := t.sets()
	for _, id := range needed {
		set, ch := t.tenantSet(id), t.tenantChain(id)
		var initial []nftables.SetElement
		if slices.ContainsFunc(existing, func(s *nftables.Set) bool { return s.Name == set.Name }) {
			sets = append(sets, set)
		} else {
			initial = want[set.Name]
		}
		if err := c.AddSet(set, initial); err != nil {
			return err
		}
		c.AddChain(ch)
		c.FlushChain(ch)
		c.AddRule(nft.Rule(t.inet, ch, nft.IPv4Only(), nft.One(nft.IPDaddr(nft.Reg), nft.Lookup(set, nft.Reg, false), nft.Goto(chainPolicy))))
		c.AddRule(nft.Rule(t.inet, ch, nft.One(nft.Drop())))
	}
	for _, set := range sets {
		if err := t.syncSet(c, set, want[set.Name]); err != nil {
			return err
		}
	}
	// Tenants with no pods left lose their set and chain, after the
	// elements of tenant_of that pointed to them.
	for _, s := range existing {
		id, err := strconv.ParseUint(strings.TrimPrefix(s.Name, setTenantPods), 10, 32)
		if !strings.HasPrefix(s.Name, setTenantPods) || err != nil || slices.Contains(needed, uint32(id)) {
			continue
		}
		ch := t.tenantChain(uint32(id))
		c.FlushChain(ch)
		c.DelChain(ch)
		c.DelSet(s)
	}
	c.FlushChain(t.policy)
	t.addPolicyRules(c, d)
	return nil
}

// syncSet adds, to c's batch, the element changes that make set hold want.
func (t *tables) syncSet(c *nftables.Conn, set *nftables.Set, want []nftables.SetElement) error {
	have, err := nft.Elements(c, set)
	if err != nil {
		return err
	}
	wanted := map[string]bool{}
	var add, del []nftables.SetElement
	for _, e := range want {
		wanted[string(e.Key)] = true
		v, ok := have[string(e.Key)]
		if ok && (e.VerdictData == nil || nft.VerdictChain(v) == e.VerdictData.Chain) {
			continue
		}
		if ok {
			del = append(del, nftables.SetElement{Key: e.Key})
		}
		add = append(add, e)
	}
	for k := range have {
		if !wanted[k] {
			del = append(del, nftables.SetElement{Key: []byte(k)})
		}
	}
	if len(del) > 0 {
		if err := c.SetDeleteElements(set, del); err != nil {
			return err
		}
	}
	if len(add) > 0 {
		if err := c.SetAddElements(set, add); err != nil {
			return err
		}
	}
	return nil
}

// addPolicyRules adds the policy chain's rules: for every local address of
// a sandbox that an IngressPolicy names, the traffic its rules allow is
// accepted and the rest dropped. Addresses no policy names fall through
// (accepted by the forward chain's policy).
func (t *tables) addPolicyRules(c *nftables.Conn, d *dataplane) {
	if d == nil {
		return
	}
	ids := make([]string, 0, len(d.policy))
	for id := range d.policy {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		for _, r := range d.local {
			if r.SandboxID != id {
				continue
			}
			dst := append(nft.IPv4Only(), nft.IPDaddr(nft.Reg), nft.Eq(nft.Reg, nft.IPv4(r.Address.Addr())))
			for _, rule := range d.policy[id] {
				froms := rule.From
				if len(froms) == 0 {
					froms = []netip.Prefix{{}}
				}
				ports := rule.Ports
				if len(ports) == 0 {
					ports = []portRule{{}}
				}
				for _, f := range froms {
					for _, p := range ports {
						groups := [][]expr.Any{dst}
						if f.IsValid() {
							groups = append(groups, nft.InPrefix(nft.IPSaddr(nft.Reg), f, false))
						}
						if p.Protocol != "" {
							groups = append(groups, nft.L4Port(nft.Protocols[p.Protocol], p.Port))
						}
						groups = append(groups, nft.One(nft.Accept()))
						c.AddRule(nft.Rule(t.inet, t.policy, groups...))
					}
				}
			}
			c.AddRule(nft.Rule(t.inet, t.policy, dst, nft.One(nft.Drop())))
		}
	}
}

// missingRules names the static chains of n that lack rules: a chain
// whose rule count differs from what setup writes.
func (t *tables) missingRules(c *nftables.Conn, n *nodeState, s settings) []string {
	var out []string
	for ch, rules := range t.staticRules(n, s) {
		have, err := c.GetRules(ch.Table, ch)
		if err != nil || len(have) != len(rules) {
			out = append(out, fmt.Sprintf("chain %s of table %s %s has %d of its %d rules", ch.Name, family(ch.Table), ch.Table.Name, len(have), len(rules)))
		}
	}
	sort.Strings(out)
	return out
}

func family(t *nftables.Table) string {
	if t.Family == nftables.TableFamilyBridge {
		return "bridge"
	}
	return "inet"
}
