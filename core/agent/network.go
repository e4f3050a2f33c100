package agent

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
)

// podIfname is the interface every pod's network namespace gets.
const podIfname = "eth0"

var netpolKind, _ = api.KindFor("networkpolicies")

// network is the agent's side of the network plugin: node setup, the
// attachments of this node's sandboxes and the policy derived from them.
type network struct {
	inst *pluginhost.Instance

	mu        sync.Mutex
	podCIDR   string                // last given to SetupNode
	attached  map[string]attachment // by sandbox id (the netns name)
	policyGen uint64                // bumped by every change that needs SetPolicy
	nodes     *client.Informer      // this node's Node
	policies  *client.Informer      // NetworkPolicies of every tenant
	applied   uint64                // policyGen last applied
	applyMu   sync.Mutex            // one SetPolicy at a time
	statusDue atomic.Bool           // a node status write is scheduled

	proxyStarted atomic.Bool
}

// attachment is one pod network namespace the plugin attached.
type attachment struct {
	ID     string            `json:"id"`
	Tenant string            `json:"tenant"`
	Labels map[string]string `json:"labels,omitempty"`
	IP     string            `json:"ip"`
}

// launchNetwork starts (or reattaches to) the network plugin.
func (a *Agent) launchNetwork(ctx context.Context) error {
	n := a.cfg.Network
	if n == nil {
		return nil
	}
	inst, err := a.rt.host.Launch(ctx, pluginhost.NetworkKind, n.Name, n.Path, n.Config)
	if err != nil {
		return fmt.Errorf("network plugin %s: %w", n.Name, err)
	}
	how := "started"
	if inst.Reattached() {
		how = "reattached"
	}
	a.log.Info("network plugin "+how, "plugin", n.Name, "pid", inst.PID(), "version", inst.Info().Version)
	a.net = &network{inst: inst, attached: map[string]attachment{}}
	for _, r := range a.loadRecords() {
		if r.Attachment != nil {
			a.net.attached[r.Attachment.ID] = *r.Attachment
		}
	}
	return nil
}

// client returns the network plugin's current client.
func (n *network) client() (*networkv1.Client, error) { return n.inst.Network() }

// setupNode hands the plugin this node's pod range once the control
// plane has allocated it, again when it changes and when the plugin
// restarted.
func (a *Agent) setupNode(ctx context.Context, node *api.Node) error {
	if a.net == nil || node == nil || node.Spec.PodCIDR == "" {
		return nil
	}
	c, err := a.net.client()
	if err != nil {
		return err
	}
	_, err = c.SetupNode(ctx, &networkv1.SetupNodeRequest{
		NodeName:    a.cfg.NodeName,
		PodCidr:     node.Spec.PodCIDR,
		ClusterCidr: a.cfg.ClusterNetwork.ClusterCIDR,
		ServiceCidr: a.cfg.ClusterNetwork.ServiceCIDR,
	})
	if err != nil {
		return fmt.Errorf("network plugin: set up node with pod CIDR %s: %w", node.Spec.PodCIDR, err)
	}
	a.net.mu.Lock()
	first := a.net.podCIDR == ""
	a.net.podCIDR = node.Spec.PodCIDR
	a.net.mu.Unlock()
	if first {
		a.log.Info("pod network ready", "podCIDR", node.Spec.PodCIDR)
		a.startProxy(node.Spec.PodCIDR)
		a.resyncAll()
	}
	return nil
}

// nodeNetworkReady says why pods cannot be attached yet, if they cannot.
func (a *Agent) nodeNetworkReady() error {
	a.net.mu.Lock()
	defer a.net.mu.Unlock()
	if a.net.podCIDR == "" {
		return errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("node %s has no pod CIDR yet: the control plane allocates one from the cluster CIDR (are the server's controllers running?)", a.cfg.NodeName))
	}
	return nil
}

// attach connects a new sandbox's network namespace and puts its
// policy in force. It returns the pod's IP ("" without a network plugin).
func (a *Agent) attach(ctx context.Context, pod *api.Pod, ns string) (*attachment, error) {
	if a.net == nil {
		return nil, nil
	}
	if err := a.nodeNetworkReady(); err != nil {
		return nil, err
	}
	c, err := a.net.client()
	if err != nil {
		return nil, err
	}
	id := filepath.Base(ns)
	req := &networkv1.AttachRequest{
		SandboxId: id,
		Tenant:    pod.Metadata.Tenant,
		PodName:   pod.Metadata.Name,
		Labels:    pod.Metadata.Labels,
		NetnsPath: ns,
		Ifname:    podIfname,
	}
	resp, err := c.Attach(ctx, req)
	if errdefs.IsAlreadyExists(err) {
		// Left by a crash between Attach and the sandbox: start over.
		a.detach(ctx, id, ns)
		resp, err = c.Attach(ctx, req)
	}
	if err != nil {
		return nil, fmt.Errorf("attach the pod's network: %w", err)
	}
	ip := ""
	for _, cfg := range resp.Ips {
		if p, perr := netip.ParsePrefix(cfg.Address); perr == nil && p.Addr().Is4() {
			ip = p.Addr().String()
			break
		}
	}
	if ip == "" {
		a.detach(ctx, id, ns)
		return nil, errdefs.New(errdefs.ErrInternal, fmt.Sprintf("network plugin %s attached %s without an IPv4 address", a.cfg.Network.Name, id))
	}
	at := attachment{ID: id, Tenant: pod.Metadata.Tenant, Labels: pod.Metadata.Labels, IP: ip}
	a.net.mu.Lock()
	a.net.attached[id] = at
	a.net.policyGen++
	a.net.mu.Unlock()
	a.networkChanged()
	// The pod's NetworkPolicies hold before any of its containers starts.
	if err := a.applyPolicy(ctx); err != nil {
		a.detach(ctx, id, ns)
		return nil, err
	}
	return &at, nil
}

// detach disconnects a sandbox's network namespace; it is idempotent.
func (a *Agent) detach(ctx context.Context, id, ns string) error {
	if a.net == nil || id == "" {
		return nil
	}
	c, err := a.net.client()
	if err != nil {
		return err
	}
	if _, err := c.Detach(ctx, &networkv1.DetachRequest{SandboxId: id, NetnsPath: ns, Ifname: podIfname}); err != nil {
		return fmt.Errorf("detach the pod's network %s: %w", id, err)
	}
	a.net.mu.Lock()
	_, known := a.net.attached[id]
	if known {
		delete(a.net.attached, id)
		a.net.policyGen++
	}
	a.net.mu.Unlock()
	if known {
		a.networkChanged()
	}
	return nil
}

// detachRecord detaches the network of a recorded sandbox, if it had one.
func (a *Agent) detachRecord(ctx context.Context, r sandboxRecord) error {
	if r.Attachment == nil {
		return nil
	}
	return a.detach(ctx, r.Attachment.ID, r.Netns)
}

// gcNetwork releases every attachment the agent no longer records (a
// crash between Attach and the record, or records removed by hand).
func (a *Agent) gcNetwork(ctx context.Context) {
	if a.net == nil {
		return
	}
	c, err := a.net.client()
	if err != nil {
		a.log.Warn("network GC", "error", err)
		return
	}
	a.net.mu.Lock()
	var valid []*networkv1.Attachment
	for id := range a.net.attached {
		valid = append(valid, &networkv1.Attachment{SandboxId: id, Ifname: podIfname})
	}
	a.net.mu.Unlock()
	resp, err := c.GC(ctx, &networkv1.GCRequest{Valid: valid})
	if err != nil {
		a.log.Warn("network GC", "error", err)
		return
	}
	for _, r := range resp.Released {
		a.log.Info("released a stale pod network attachment", "sandbox", r.SandboxId)
	}
	for _, e := range resp.Errors {
		a.log.Warn("network GC", "error", e)
	}
}

// watchPolicies starts the NetworkPolicy informer; every change
// re-derives the node's policy.
func (a *Agent) watchPolicies(ctx context.Context, wg *sync.WaitGroup) error {
	if a.net == nil {
		return nil
	}
	inf := client.NewInformer(a.c, netpolKind, "", client.ListOptions{}, a.log)
	changed := func() {
		a.net.mu.Lock()
		a.net.policyGen++
		a.net.mu.Unlock()
		go func() {
			if err := a.applyPolicy(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("network policy", "error", err)
			}
		}()
	}
	inf.AddHandler(client.Handler{
		OnAdd:    func(api.Object) { changed() },
		OnUpdate: func(_, _ api.Object) { changed() },
		OnDelete: func(api.Object) { changed() },
	})
	a.net.policies = inf
	wg.Add(1)
	go func() { defer wg.Done(); inf.Run(ctx) }()
	return inf.WaitSynced(ctx)
}

// applyPolicy hands the plugin the policy of the node's attachments as
// they are now, unless that was done already.
func (a *Agent) applyPolicy(ctx context.Context) error {
	if a.net == nil || a.net.policies == nil {
		return nil
	}
	a.net.applyMu.Lock()
	defer a.net.applyMu.Unlock()
	a.net.mu.Lock()
	gen := a.net.policyGen
	if gen == a.net.applied {
		a.net.mu.Unlock()
		return nil
	}
	atts := make([]attachment, 0, len(a.net.attached))
	for _, at := range a.net.attached {
		atts = append(atts, at)
	}
	a.net.mu.Unlock()

	var policies []*api.NetworkPolicy
	for _, o := range a.net.policies.List() {
		policies = append(policies, o.(*api.NetworkPolicy))
	}
	req := policyRequest(atts, policies)
	c, err := a.net.client()
	if err != nil {
		return err
	}
	if _, err := c.SetPolicy(ctx, req); err != nil {
		return fmt.Errorf("network plugin: set policy: %w", err)
	}
	a.net.mu.Lock()
	a.net.applied = max(a.net.applied, gen)
	a.net.mu.Unlock()
	return nil
}

// policyRequest derives the plugin's policy from the node's attachments
// and the NetworkPolicies: every attachment a policy of its tenant
// selects accepts pod traffic only as some rule of those policies allows.
// Peers are resolved among the node's attachments.
func policyRequest(atts []attachment, policies []*api.NetworkPolicy) *networkv1.SetPolicyRequest {
	sort.Slice(atts, func(i, j int) bool { return atts[i].ID < atts[j].ID })
	byTenant := map[string][]*api.NetworkPolicy{}
	for _, p := range policies {
		byTenant[p.Metadata.Tenant] = append(byTenant[p.Metadata.Tenant], p)
	}
	req := &networkv1.SetPolicyRequest{}
	for _, at := range atts {
		var selected []*api.NetworkPolicy
		for _, p := range byTenant[at.Tenant] {
			if selectorMatches(p.Spec.PodSelector, at.Labels) {
				selected = append(selected, p)
			}
		}
		if len(selected) == 0 {
			continue
		}
		ip := &networkv1.IngressPolicy{SandboxId: at.ID}
		for _, p := range selected {
			for _, rule := range p.Spec.Ingress {
				r, ok := ingressRule(rule, at.Tenant, atts)
				if ok {
					ip.Rules = append(ip.Rules, r)
				}
			}
		}
		req.Ingress = append(req.Ingress, ip)
	}
	return req
}

// ingressRule turns one NetworkPolicy rule into the plugin's. A rule whose
// peers select no pod allows nothing (ok is false): an empty From would
// mean every pod.
func ingressRule(rule api.NetworkPolicyIngressRule, tenant string, atts []attachment) (*networkv1.IngressRule, bool) {
	r := &networkv1.IngressRule{}
	for _, port := range rule.Ports {
		proto := string(port.Protocol)
		if proto == "" {
			proto = string(api.ProtocolTCP)
		}
		r.Ports = append(r.Ports, &networkv1.PortRule{Protocol: proto, Port: uint32(port.Port)})
	}
	if len(rule.From) == 0 {
		return r, true
	}
	for _, at := range atts {
		if at.Tenant != tenant {
			continue
		}
		if slices.ContainsFunc(rule.From, func(peer api.NetworkPolicyPeer) bool { return selectorMatches(peer.PodSelector, at.Labels) }) {
			r.From = append(r.From, at.IP+"/32")
		}
	}
	return r, len(r.From) > 0
}

// selectorMatches reports whether a NetworkPolicy selector selects
// labels; an empty selector selects every pod.
func selectorMatches(sel api.LabelSelector, labels map[string]string) bool {
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// startNetwork runs what the network needs once the informers are
// synced: the release of stale attachments, the watch of this node's
// Node (its pod CIDR, which SetupNode gets) and of NetworkPolicies.
func (a *Agent) startNetwork(ctx context.Context, wg *sync.WaitGroup) error {
	if a.net == nil {
		return nil
	}
	a.gcNetwork(ctx)
	nodes := client.NewInformer(a.c, nodeKind, "", client.ListOptions{FieldSelector: "metadata.name=" + a.cfg.NodeName}, a.log)
	setup := func(o api.Object) {
		n := o.(*api.Node)
		a.net.mu.Lock()
		same := n.Spec.PodCIDR == a.net.podCIDR
		a.net.mu.Unlock()
		if same {
			return
		}
		if err := a.setupNode(ctx, n); err != nil && ctx.Err() == nil {
			a.log.Warn("network node setup", "error", err)
		}
	}
	nodes.AddHandler(client.Handler{
		OnAdd:    setup,
		OnUpdate: func(_, o api.Object) { setup(o) },
	})
	a.net.nodes = nodes
	wg.Add(1)
	go func() { defer wg.Done(); nodes.Run(ctx) }()
	if err := nodes.WaitSynced(ctx); err != nil {
		return err
	}
	return a.watchPolicies(ctx, wg)
}

// networkRestarted brings a restarted network plugin up to date: the
// node's setup and the policy (its kernel dataplane kept the rest).
func (a *Agent) networkRestarted(ctx context.Context) {
	if a.net == nil || a.net.nodes == nil {
		return
	}
	if o, ok := a.net.nodes.Get(a.cfg.NodeName); ok {
		if err := a.setupNode(ctx, o.(*api.Node)); err != nil {
			a.log.Warn("network node setup after a plugin restart", "error", err)
		}
	}
	a.net.mu.Lock()
	a.net.policyGen++
	a.net.mu.Unlock()
	if err := a.applyPolicy(ctx); err != nil {
		a.log.Warn("network policy after a plugin restart", "error", err)
	}
}

// networkCondition is the node's NetworkReady condition: whether the
// network plugin can attach pods, and how many of the node's pod
// addresses are in use.
func (a *Agent) networkCondition(ctx context.Context) api.Condition {
	cond := api.Condition{Type: "NetworkReady", Status: "False"}
	c, err := a.net.client()
	var st *networkv1.StatusResponse
	if err == nil {
		st, err = c.Status(ctx, &networkv1.StatusRequest{})
	}
	switch {
	case err != nil:
		cond.Reason, cond.Message = "NetworkPluginUnavailable", fmt.Sprintf("network plugin %s: %v", a.cfg.Network.Name, err)
		return cond
	case st.Ready:
		cond.Status, cond.Reason = "True", "NetworkPluginReady"
	case st.Code == networkv1.StatusIPAMExhausted:
		cond.Reason = "PodAddressesExhausted"
	default:
		cond.Reason = "NetworkPluginNotReady"
	}
	msg := a.cfg.Network.Name
	if ipam := st.Ipam; ipam != nil && ipam.Range != "" {
		msg += fmt.Sprintf(": %d of %d pod addresses of %s in use", ipam.Allocated, ipam.Capacity, ipam.Range)
	}
	if st.Message != "" {
		msg += "; " + st.Message
	}
	cond.Message = msg
	return cond
}

// networkChanged writes the node's status soon after attachments
// changed (its NetworkReady condition counts the addresses in use); a
// burst of changes makes one write.
func (a *Agent) networkChanged() {
	if !a.net.statusDue.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(time.Second, func() {
		a.net.statusDue.Store(false)
		a.nodeChanged()
	})
}
