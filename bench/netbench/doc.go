// Package netbench is benchmark B6(a) of docs/benchmarks.md: pod-to-pod
// TCP throughput and request/response latency over the bridge network
// plugin (paddock-net-bridge), against the floor of two network
// namespaces joined by a bare veth pair, on the same machine in the same
// run.
//
// Run launches the plugin binary through plugins/pluginhost as the node
// agent does, with a bridge, nftables tables, a state directory and a pod
// range of the run's own (Config.PodCIDR inside Config.ClusterCIDR), calls
// SetupNode, makes two network namespaces (internal/netns) and attaches
// both under one tenant. The floor is two more namespaces joined by a veth
// pair made by netlink, with the MTU the plugin gave its pods and
// addresses set by hand: no bridge, no nftables, no br_netfilter hook.
//
// The workloads, each on the bridge pair and on the floor pair in turn
// (the order alternating between repetitions so that both see the
// machine's noise alike), Config.Reps times:
//
//   - throughput: Config.Streams TCP connections from pod A to pod B; a
//     sender per connection writes 128 KiB buffers as fast as it can, a
//     receiver per connection reads and counts bytes. After
//     Config.Warmup, the bytes received in Config.Duration give Gbit/s;
//   - round trips (TCP_RR): one connection, one byte each way,
//     Config.RoundTrips timed round trips after a tenth as many untimed
//     ones.
//
// Sockets are made in the namespaces (listeners and dialers under
// netns.Do; a socket keeps its namespace once made) and used from
// ordinary goroutines. Traffic never leaves the namespaces the run made.
//
// Run prints a Markdown report and can write it into the B6-DATAPATH
// section of docs/benchmarks.md. It needs root; it holds the machine-wide
// test lock (internal/testlock) for the whole run and removes everything
// it made — attachments, namespaces, the veth pair, the bridge, the
// nftables tables, the plugin process and its directories — also when ctx
// ends or a step fails. SetupNode's node-wide settings
// (net.ipv4.ip_forward and bridge-nf-call-iptables set to 1) stay, as the
// plugin leaves them.
package netbench
