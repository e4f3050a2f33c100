package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// nodeIPAMController gives every Node without spec.podCIDR the first free
// subnet of the cluster CIDR of size NodeCIDRMaskSize. What is free is
// derived from the Nodes themselves, so a new leader knows it without any
// state of its own, and a deleted node's range is free again once its
// Node is gone. A node's own credential cannot set the field (the API
// server refuses it), and once set it does not change.
//
// One worker assigns, so that two nodes are never given the same range by
// one process; ranges it gave out that its informer has not shown yet
// are remembered until it does.
type nodeIPAMController struct {
	c       *client.Client
	nodeInf *client.Informer
	ctl     *Controller
	net     api.NetworkConfig
	log     *slog.Logger

	mu sync.Mutex
	// given maps ranges handed out by this process to their node, until
	// the informer shows the node with it (or without the node).
	given map[netip.Prefix]string
	// waiting holds the nodes told there is no range left, so that their
	// status updates do not repeat the error.
	waiting map[string]bool
}

func newNodeIPAMController(c *client.Client, inf *Informers, network api.NetworkConfig, log *slog.Logger) *nodeIPAMController {
	n := &nodeIPAMController{
		c: c, nodeInf: inf.For(nodeKind), net: network,
		log: log.With("controller", "nodeipam"), given: map[netip.Prefix]string{}, waiting: map[string]bool{},
	}
	n.ctl = New("nodeipam", 1, log, n.reconcile)
	n.nodeInf.AddHandler(client.Handler{
		OnAdd:    n.ctl.EnqueueObject,
		OnUpdate: func(_, o api.Object) { n.ctl.EnqueueObject(o) },
		// A deleted node frees its range: nodes waiting for one may get it.
		OnDelete: func(o api.Object) {
			n.ctl.EnqueueObject(o)
			for _, w := range n.nodeInf.List() {
				if w.(*api.Node).Spec.PodCIDR == "" {
					n.ctl.EnqueueObject(w)
				}
			}
		},
	})
	return n
}

// Run implements the controller's lifecycle.
func (n *nodeIPAMController) Run(ctx context.Context) { n.ctl.Run(ctx) }

func (n *nodeIPAMController) reconcile(ctx context.Context, name string) error {
	o, ok := n.nodeInf.Get(name)
	if !ok || o.(*api.Node).Spec.PodCIDR != "" {
		delete(n.waiting, name) // one worker: no lock needed
		return nil
	}
	cidr, ok := n.free()
	if !ok {
		if n.waiting[name] {
			return nil
		}
		n.waiting[name] = true
		n.log.Error("no pod CIDR left for a node: the cluster CIDR is exhausted; delete nodes or restart the servers with a larger --cluster-cidr or --node-cidr-mask-size",
			"node", name, "clusterCIDR", n.net.ClusterCIDR, "nodeCIDRMaskSize", n.net.NodeCIDRMaskSize, "ranges", n.net.NodeCIDRCount())
		return nil // a node deletion queues it again
	}
	// Read afresh: the update is compare-and-swap on what was read, and
	// must not overwrite a range set meanwhile.
	fresh, err := client.GetAs[*api.Node](ctx, n.c, "", name)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if fresh.Spec.PodCIDR != "" {
		return nil
	}
	fresh.Spec.PodCIDR = cidr.String()
	n.mu.Lock()
	n.given[cidr] = name
	n.mu.Unlock()
	if _, err := n.c.Update(ctx, fresh); err != nil {
		n.mu.Lock()
		delete(n.given, cidr)
		n.mu.Unlock()
		return fmt.Errorf("set pod CIDR %s on node %s: %w", cidr, name, err)
	}
	n.log.Info("assigned pod CIDR to node", "node", name, "podCIDR", cidr.String())
	return nil
}

// free returns the first range no node holds.
func (n *nodeIPAMController) free() (netip.Prefix, bool) {
	used := make([]bool, n.net.NodeCIDRCount())
	nodes := map[string]string{}
	for _, o := range n.nodeInf.List() {
		nd := o.(*api.Node)
		nodes[nd.Metadata.Name] = nd.Spec.PodCIDR
		n.markUsed(used, nd.Spec.PodCIDR)
	}
	n.mu.Lock()
	for p, holder := range n.given {
		cur, exists := nodes[holder]
		if !exists || cur != "" {
			delete(n.given, p) // the informer caught up (or the node is gone)
			continue
		}
		n.markUsed(used, p.String())
	}
	n.mu.Unlock()
	for i, u := range used {
		if !u {
			return n.net.NodeCIDR(i)
		}
	}
	return netip.Prefix{}, false
}

// markUsed marks the node ranges that cidr overlaps: one range, several
// (a shorter prefix a cluster admin set) or none (outside the cluster
// CIDR).
func (n *nodeIPAMController) markUsed(used []bool, cidr string) {
	p, err := netip.ParsePrefix(cidr)
	cluster := n.net.ClusterPrefix()
	if err != nil || !p.Addr().Is4() || !p.Overlaps(cluster) {
		return
	}
	p = p.Masked()
	if p.Bits() < cluster.Bits() {
		p = cluster // covers the whole cluster CIDR
	}
	shift := 32 - n.net.NodeCIDRMaskSize
	first := api.AddrIndex(cluster, p.Addr()) >> shift
	count := uint64(1)
	if p.Bits() < n.net.NodeCIDRMaskSize {
		count = uint64(1) << (n.net.NodeCIDRMaskSize - p.Bits())
	}
	for i := first; i < first+count && i < uint64(len(used)); i++ {
		used[i] = true
	}
}
