// Package schedbench is benchmark B1 of docs/benchmarks.md: scheduler
// throughput with every binding committed to etcd, against the raw etcd
// compare-and-swap floor on the same machine in the same run.
//
// Run starts, inside the calling process, a control plane exactly as
// `paddock server` runs it (core/server through internal/testcluster's
// Launch: embedded etcd in a temporary directory, TLS, authn, authz,
// admission, the audit log) with its controllers off, and
// the real scheduling loop of core/controller (RunScheduler) next to it
// with its own cluster-admin client, as the leader's would run. It then
//
//  1. registers Nodes simulated nodes (Node objects only, no agents):
//     4 cpu, 32Gi, 110 pods, Ready, offering runc, labelled with one of
//     10 racks;
//  2. creates PrePlaced pods already bound to those nodes (cluster
//     admins may name a node), which the scheduler counts;
//  3. starts the scheduler, waits until it has bound a warm-up pod (so
//     its informers have synced), then creates Pods pending pods, all
//     alike (100m cpu, 500Mi), spread over Tenants tenants, from Creators
//     goroutines as fast as the API takes them, while the scheduler binds
//     them through the pods/binding subresource;
//  4. stops the scheduler, creates as many pods again and starts a new
//     scheduler, as after a leader change, which binds the backlog with
//     nothing else competing for the CPU;
//  5. measures, for the floor, Pods raw etcd compare-and-swap updates
//     (a transaction comparing the key's mod revision, putting the bound
//     pod's JSON) of pod-shaped keys from as many goroutines as the
//     scheduler has binds in flight, on a second etcd member in its own
//     directory on the same disk.
//
// It reports, for the burst and the backlog, the placement throughput as
// scheduler_perf computes it (the bound count sampled every second, the
// first sample skipped, intervals without a binding folded into the next;
// average and nearest-rank p50/p90/p99 of the samples) and the overall
// binds per second; for the burst, each pod's latency from its create
// returning (and from the scheduler queueing it) to its binding
// committed; the CPU time per 1,000 pods of the whole process and of the
// scheduler alone (its goroutines carry a pprof label; its share of a CPU
// profile of the phase); and the floor's rate and latency with the ratio
// of floor to achieved. Run prints a Markdown report and can write it
// into the B1 section of docs/benchmarks.md.
//
// Everything shares one process and GOMAXPROCS: the API server, etcd, the
// scheduler and the clients creating pods compete for the same CPUs, as
// they would on a one-machine control plane. Only loopback and unix
// sockets are used. Run is bounded by Config.Timeout; every goroutine it
// starts has ended when it returns, and its temporary directory is
// removed.
package schedbench
