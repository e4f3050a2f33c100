// Package bridge is Paddock's bridge network plugin, the default network
// of `paddock up`, behind the network plugin contract plugins/network/v1.
// Pods of one node share a Linux bridge; each attachment is a veth pair
// whose host side is a port of the bridge. The plugin reaches the kernel
// through netlink only (vishvananda/netlink for links, addresses and
// routes; google/nftables for the rules): it runs no ip or nft process.
//
// # Node
//
// SetupNode sets net.ipv4.ip_forward and br_netfilter's
// bridge-nf-call-iptables to 1 (without /proc/sys/net/bridge it fails,
// asking for br_netfilter to be loaded), makes the bridge (configuration
// "bridge", default paddock0) with a MAC of its own, the MTU and one
// address, the pod range's first host address (10.244.0.1/24 for
// 10.244.0.0/24), which is the pods' gateway, and the nftables tables. The
// MTU is the configuration's, else SetupNode's, else the MTU of the
// interface holding the default route, else 1500.
//
// # Attachments
//
// Attach makes the pair with its pod side directly in the sandbox's
// namespace, named ifname; the host side is "pdk" and 12 hex digits of a
// hash of the bridge, the sandbox id and ifname. The pod side gets an
// address of the pod range (package netplugins/internal/ipam), is set up
// and, when the namespace has no default route yet, gets one via the
// gateway. The address's nftables entries are added next, and only then
// does the host side join the bridge (hairpin on unless configured off)
// and go up: no frame of the pod passes before its isolation is in
// place. A failure at any step removes all that was made. Detach removes
// the pair (which takes the pod side with it), the entries, the address
// and the record, whatever of them exists.
//
// # Rules
//
// Two nftables tables named after the configuration's "table" (default
// paddock-bridge), changed only in whole batches:
//
//	table inet T
//	  set pods              local pod addresses
//	  map tenant_of         pod address : goto tenant-ID (local pods and SetPolicy's remote endpoints)
//	  set pods-ID           tenant ID's local pod addresses
//	  chain forward         hook forward: ct established,related accept; ip daddr @pods jump pod-ingress
//	  chain pod-ingress     ip saddr outside the cluster range accept (the node, node-port clients);
//	                        ip saddr gateway accept; ip saddr vmap @tenant_of; drop
//	  chain tenant-ID       ip daddr @pods-ID goto policy; drop
//	  chain policy          per policed address: the allowed traffic accept, the rest drop
//	  chain postrouting     hook nat postrouting: masquerade pod traffic leaving through another
//	                        interface than the bridge for outside the cluster and service ranges
//	table bridge T
//	  set ports, port_mac, port_ip     the host sides, with their pod's MAC and address
//	  chain prerouting      iifname @ports jump from-pod
//	  chain from-pod        drop frames from a pod whose ether or ARP source MAC, IPv4 or ARP
//	                        source address is not its own, and every other ether type
//
// The forward chain sees pod to pod traffic whether routed (through a
// service address, after the service proxy's DNAT) or bridged (through
// br_netfilter), so isolation holds for both. Tenant ids are small
// integers assigned once per tenant and persisted; a source address of
// the cluster range with no tenant is dropped. Drops are drops, never
// rejects: a pod learns nothing from trying.
//
// # State
//
// Everything lives under the state directory SetConfig names, written
// atomically:
//
//	node.json               the last SetupNode, applied again by a restarted plugin
//	attachments/HASH.json   one record per attachment: sandbox, ifname, netns, tenant,
//	                        labels, address, MACs, host side
//	tenants.json            tenant ids (tenants.lock guards their assignment)
//	policy.json             the last SetPolicy
//	ipam/                   address reservations (flock'd; see package ipam)
//
// The kernel state (bridge, pairs, tables) outlives the process, so a
// plugin that is restarted keeps the pods connected and isolated, and the
// new process serves Detach, Check and GC of the old one's attachments.
//
// # Concurrency
//
// A Plugin's methods are safe for concurrent use. Calls on one attachment
// are serialised; different attachments proceed in parallel, except for
// the nftables batches, which are built from the whole state one at a
// time. SetupNode excludes every other verb while it runs.
package bridge
