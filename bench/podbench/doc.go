// Package podbench is benchmark PODSTART of docs/benchmarks.md: a pod's
// start end to end on the real runc runtime — from the API call that
// creates it until a watch shows it Running with its container running —
// measured against bare `runc run` of the same image on the same machine
// in the same run.
//
// Run starts, inside its own process, what a one-node cluster runs: a
// control plane as `paddock server` runs it (core/server through
// internal/testcluster: embedded etcd, TLS, authn, authz, admission, the
// audit log, and the leader-elected controllers with the scheduler loop)
// and a node agent (core/agent) with a node credential minted through the
// admin client, driving the runc plugin binary (paddock-runtime-runc) and
// importing the image archive from its import directory. The floor is
// bench/runtimebench's: `runc run` of the plugin's own bundle of the
// image.
//
// Each pod runs `sleep 3600` in the image, with spec.nodeName unset: the
// scheduler binds it. One watch on the tenant's pods, opened before the
// run from the list's resourceVersion, sees every pod; a start runs from
// the Create call's return to the arrival of the event that shows the pod
// Running with its container running, and is split at the event that
// shows it bound. After a warm-up, it measures:
//
//   - sequential starts: pods and floor containers in turn; each pod is
//     deleted (grace period 0) after it ran, and the next start waits,
//     untimed, until the agent has removed its sandbox;
//   - concurrent starts: the same count from Config.Concurrency workers,
//     as starts per second and latency, the pods deleted afterwards.
//
// Run prints a Markdown report and can write it into PODSTART's section
// of docs/benchmarks.md. It holds the machine-wide test lock
// (internal/testlock) for the whole run, and returns only after every pod,
// container, sandbox, plugin process and temporary directory it made is
// gone, also when ctx ends early (Ctrl-C). It needs root, runc, the plugin
// binary (make build) and the image archive (make testimages).
package podbench
