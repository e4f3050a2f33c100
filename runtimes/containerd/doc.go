// Package containerd is Paddock's containerd runtime plugin: it runs
// sandboxes (pods) and their containers through a containerd daemon's
// gRPC API (containerd 1.6 and later), behind the runtime plugin contract
// plugins/runtime/v1.
//
// # The daemon
//
// The configuration names the daemon's socket. The plugin speaks to it
// with the generated API of github.com/containerd/containerd/api only (no
// containerd client library), so it builds the OCI spec itself (spec.go:
// namespaces, cgroup limits, Docker's default capabilities, a seccomp
// filter, no-new-privileges, masked and read-only /proc paths, mounts from
// the allowed roots only) and stores it in the containerd container.
// Containers run under containerd's shims with the runtime type the
// sandbox's handler maps to (runc → io.containerd.runc.v2, runsc →
// io.containerd.runsc.v1; a sandbox without a handler gets the
// configured default); they keep running while the plugin restarts.
//
// # Tenants and namespaces
//
// Each tenant's containers live in the containerd namespace
// NamespacePrefix+tenant ("paddock-acme"): their containers, tasks,
// snapshots and their copy of each image. The Images service keeps
// images in ImageNamespace ("paddock"); see images.go.
//
// # Sandboxes
//
// containerd 1.6 has no sandbox objects and, under runc, the plugin runs
// no pause container: a sandbox is the plugin's record (STATE/sandboxes/ID/
// sandbox.json), the files its containers share (hostname, hosts,
// resolv.conf, bind-mounted read-only), a pod cgroup
// (/paddock-containerd/SANDBOX in every hierarchy) with the pod's limits
// and a network namespace: the one SandboxConfig.netns_path names, else
// one the plugin makes (STATE/sandboxes/ID/netns). Every container of the
// sandbox joins that namespace, so that a pod's containers share
// localhost, and runs in the cgroup /paddock-containerd/SANDBOX/CONTAINER.
//
// Under gVisor (io.containerd.runsc.v1) a sandbox is one gVisor sandbox
// whose root is a pause container in the pod's network namespace and
// cgroup, and its containers are sub-containers of it; see gvisor.go.
//
// # Containers
//
// A container is a containerd container (labels dev.paddock/sandbox and
// dev.paddock/name; its ContainerConfig in the extension
// dev.paddock/config) with a snapshot of its image and, once started, a
// task. StartContainer records the start time in a label (a container is
// started at most once); an exit the plugin decides (stopped before it
// started, a start error) or reads from a stopped task is recorded in the
// label dev.paddock/exit, with the OOM kill read from the container's
// memory cgroup (under gVisor the pod's, counted from the container's
// start). Stop, signal, exec, update and stats go through the task
// service and the container's cgroup; under gVisor, updates and stats go
// to the pod cgroup, which carries the sum of the containers' limits
// when the pod sets none. Removing a container deletes its
// task, container, snapshot and directory.
//
// Output goes to a logger process the shim starts (logs.go) that writes
// STATE/containers/ID/container.log in CRI format. Execs use FIFOs in
// STATE/containers/ID/exec-*.
//
// # State and recovery
//
// The state directory holds the sandbox records and the containers' logs;
// everything else is containerd's. SetConfig loads the sandbox records and
// finds their containers in their namespaces, so a restarted plugin
// serves the containers its predecessor made; Recover answers from the
// same state.
//
// # Concurrency
//
// A Plugin's methods are safe for concurrent use. Lifecycle operations on
// one container or one sandbox are serialised; different objects proceed
// in parallel.
package containerd
