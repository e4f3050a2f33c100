// Package proxy is the node's service proxy: it programs nftables so that
// connections to a Service's cluster IP and port (and, for NodePort
// services, to the node's own addresses on the node port) reach one of the
// Service's ready endpoints, chosen at random for each new connection.
//
// The proxy owns one nftables table (Config.Table, "ip paddock-proxy" by
// default) in the network namespace it programs, and never flushes it on
// updates: each change is one netlink batch (one kernel transaction) that
// touches only the changed service's objects, so a change is atomic and
// other services' chains and rules keep their handles. Packets see this
// layout:
//
//	chain prerouting, output   nat hooks at priority dstnat (-100): jump services
//	chain services             ip daddr . meta l4proto . th dport vmap @service-ips
//	                           fib daddr type local ip daddr != 127.0.0.0/8
//	                             meta l4proto . th dport vmap @service-nodeports
//	chain svc-HASH-T/N/P/PORT  one per service port: dnat ip to numgen random mod N
//	                             map { 0 : ip . port, ... } (then a plain DNAT to
//	                             the first endpoint, for a packet whose map
//	                             lookup raced a transaction replacing the map),
//	                             or, without ready endpoints, a reject (TCP
//	                             reset or ICMP port unreachable) so that
//	                             clients fail at once
//	chain ext-HASH-T/N/P/PORT  one per node port: mark node-port traffic from
//	                             outside Config.ClusterCIDR for masquerade,
//	                             goto the service port's chain
//	chain cluster-dns          DNAT of Config.DNS.ServiceIP udp/tcp 53 to
//	                             Config.DNS.Target, source kept
//	chain postrouting          nat hook at srcnat: masquerade marked packets,
//	                             and hairpin packets (an endpoint reaching its
//	                             own service and landing on itself: its address
//	                             pair is in @hairpin)
//
// Chain names are stable: derived from tenant, service, protocol and port
// name (or number), prefixed by a hash of them that keeps long names
// unique. The endpoints are data of an anonymous map in the service port's
// rule rather than a chain each: the kernel re-validates every chain
// a changed table can reach on each transaction, so fewer chains make
// every change cheaper (an endpoint chain each, as kube-proxy's nftables
// mode has, made a change about eight times as slow at 10,000 services
// of ten endpoints; see benchmark B6 in docs/benchmarks.md).
// Hairpin traffic is recognised in postrouting by its source and
// destination being one endpoint's address, which replaces the per-endpoint
// mark rule.
//
// `nft list table ip paddock-proxy` shows the layout. It prints the keys
// of the endpoint maps byte-swapped (0, 16777216, 33554432, ... for 0, 1,
// 2, ...): they are in host byte order, as numgen writes its number, while
// the map's metadata, which only nft reads, says big-endian.
//
// Node ports answer on the node's addresses but not on loopback (like
// kube-proxy's nftables mode): 127.0.0.0/8 is excluded because a DNAT of
// loopback traffic to a pod cannot be routed. Only IPv4 is supported.
//
// Use New, then either Run (watches Services and Endpoints through the API
// and applies changes as they come) or the level-triggered Update, Delete
// and Sync directly. New keeps what an earlier run left in the table, so
// existing services keep answering across an agent restart; the first
// Sync (Run does one once its informers have listed) replaces the old
// objects and removes those no longer wanted. Close removes the table.
// The methods are safe for concurrent use; changes are applied one at a
// time.
package proxy
