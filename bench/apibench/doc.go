// Package apibench is benchmark B4 of docs/benchmarks.md: the API write
// path, reads and watch fan-out, measured against the raw etcd floor on the
// same machine in the same run.
//
// Run starts, inside the calling process, an API server exactly as the
// product does (server.Run: embedded etcd, TLS, bearer-token authn,
// authz, admission and an audit log on disk) and, for the floor, a second
// embedded etcd member with the same configuration in its own directory
// on the same disk. It then measures, after a warm-up and for a number of
// repetitions:
//
//   - raw etcd puts (8-byte keys and 256-byte values, as etcd's benchmark
//     tool does, and the API's own key shape and ~1 KiB value) at each
//     client count;
//   - API creates of ~1 KiB ConfigMaps with a cluster-admin token and with
//     a tenant edit token, and their ratio to raw puts at the same
//     concurrency;
//   - API gets against raw linearizable etcd gets;
//   - watch fan-out: many watchers on one tenant's ConfigMaps while a writer
//     updates them at a fixed rate, with write→delivery latency and the
//     memory each watcher costs.
//
// Each measurement reports the median over repetitions of the throughput
// and of the p50/p90/p99 latency within each repetition; every repetition
// of a floor runs right before the matching API workload, so that drift on
// a shared machine hits both alike. Run prints a Markdown table and can
// write it, with the command and a description of the machine (including
// an fdatasync probe of the disk under the data directory), into a section
// of docs/benchmarks.md.
//
// The load generator, the API server and both etcd members share one
// process and GOMAXPROCS: the API's numbers include the cost of its own
// clients (JSON encoding, TLS); the floor's include etcd's own gRPC client
// over a unix socket, the same path the API server's store takes. Only
// loopback addresses and unix sockets are used.
//
// Run is bounded: every loop stops after a count or a deadline, every
// goroutine it starts has ended when it returns, and its temporary
// directories are removed.
package apibench
