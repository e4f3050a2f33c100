// Package svcbench is benchmark B6(c) of docs/benchmarks.md: service
// programming latency of the nftables service proxy (core/proxy) — from a
// change of a service's endpoints to the first TCP connection through its
// cluster IP that succeeds — at 1,000 and 10,000 services of 10 endpoints
// each, against the floor of a bare one-rule netlink DNAT insert on the
// same machine in the same run.
//
// Run builds, per size, a node network namespace with the proxy's table,
// a client namespace and one pod namespace holding 20 addresses that
// listen on port 8080 (core/proxy/proxytest). It ramps the table to the
// size with Sync (the direct, level-triggered entry point, in batches of
// many services per transaction): every service has 10 endpoints, those
// of the last-defined service live, the others addresses that are never
// dialled. Then:
//
//   - changes: one service (in the middle of the table) is pointed at 10
//     addresses of the pod on a closed port, so that connections to it
//     are refused, and then, timed, at 10 other addresses on the open port
//     through Update; a prober locked in the client namespace connects to
//     the cluster IP in a tight loop until a connection succeeds. The
//     window runs from the Update call to that success. Config.Changes
//     times;
//   - through the API (Config.API): the same changes made by updating the
//     Endpoints object through a real API server (internal/testcluster)
//     that the proxy watches with informers (Proxy.Run), all the services
//     being API objects too;
//   - floor: a second table in the same namespace with one nat chain; a
//     timed insert of a single DNAT rule for another address, by netlink,
//     then the same probe; the rule is removed untimed;
//   - first packet: connections to the last-defined service's cluster IP,
//     each timed from connect to established, against connections
//     straight to an endpoint's address.
//
// Run prints a Markdown report and can write it into B6's section of
// docs/benchmarks.md. It needs root, the ip command and nftables in the
// kernel; it holds the machine-wide test lock (internal/testlock) for the
// whole run and removes every namespace it made, also when ctx ends.
package svcbench
