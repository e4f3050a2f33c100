// Package ociruntime is the implementation of Paddock's runc and runsc
// (gVisor) runtime plugins (runtimes/runc, runtimes/runsc): it runs
// sandboxes (pods) and their containers with an OCI runtime's command
// line, behind the runtime plugin contract plugins/runtime/v1. A Plugin's
// Flavor chooses the runtime; what this page says holds for runc, and
// flavor.go and gvisor.go say what differs under runsc (one gVisor
// sandbox per pod, started with a pause process, whose containers join
// it; exits learnt with "runsc wait").
//
// # Processes
//
// The plugin is never the parent of a container. CreateContainer only
// prepares: the root filesystem (from the image store), the OCI bundle
// (spec.go: namespaces, cgroup limits, Docker's default capabilities, a
// deny-by-default seccomp profile, no-new-privileges, masked and
// read-only /proc paths, mounts from the allowed roots only) and the
// record. StartContainer starts a shim (package runtimes/internal/ociruntime/shim) in a
// session of its own: the small binary paddock-runc-shim found next to
// the plugin's (or the configuration's shimPath), run as
// "paddock-runc-shim DIR". When that binary is missing the plugin's own
// binary runs as "paddock-runtime-runc shim DIR" (see IsShim and
// RunShim) and a warning is logged: the same shim, but the plugin's
// larger binary takes ~8 ms longer and ~10 ms more CPU to start. The shim is a child
// subreaper; it runs "runc run --detach" with the container's stdout and
// stderr on pipes it reads, so that the container's init becomes its
// child when runc returns, reports the init pid on a pipe the plugin
// waits on, writes the output to a CRI-format log file (rotated at
// log_max_bytes, one rotated file kept), reaps the init process and
// records how it ended (exit code, signal, OOM kill from a rise of the
// cgroup's oom_kill counter during the container's life) in exit.json,
// after the output is drained (for a bounded time: a gVisor sandbox may
// keep a failed container's output open). It then
// exits. Containers therefore survive restarts of the plugin, and an
// exit that happens while the plugin is down is not lost. A container
// whose start fails is EXITED with reason StartError, never half
// started: runc removes a container it could not start. If a shim dies
// without recording an exit, the container is reported EXITED with
// reason Unknown.
//
// Stop, signal, exec, update and delete are runc commands run by the
// plugin (runc kill, exec, update, delete) against runc's state in
// STATE/runc. An exec on a terminal runs `runc exec --detach --tty`: the
// terminal is the container's own, its master comes back over a console
// socket, and the plugin — a child subreaper — adopts and waits for the
// process (pty.go).
//
// # State
//
// Everything lives under the state directory SetConfig names:
//
//	sandboxes/ID/sandbox.json       the sandbox record
//	sandboxes/ID/{hostname,hosts,resolv.conf}  bind-mounted read-only into containers
//	sandboxes/ID/netns              the sandbox's own network namespace (bind mount),
//	                                when its config names none
//	containers/ID/container.json    the container record (written by the plugin)
//	containers/ID/shim-config.json  what the shim needs (runc, bundle, log, OOM counter)
//	containers/ID/shim.log          the shim's own log, with the times of a start's steps
//	containers/ID/bundle/           the OCI bundle (config.json, rootfs)
//	containers/ID/shim.pid          pid and start time of the shim, written at launch
//	containers/ID/shim.json         written by the shim once the container runs
//	containers/ID/exit.json         written by the shim when it exited
//	containers/ID/container.log[.1] the CRI-format log and its rotated file
//	runc/                           runc's own state (--root)
//	images/                         the image store (default imageStoreRoot)
//	volumes/                        the default allowed mount root
//
// Every file is written atomically (a temporary file renamed into place),
// so a reader sees the old or the new version, never a torn one, whatever
// process crashes. Only what a restart after a crash of the machine needs
// is also synced to disk (shim.Durable: an fsync of the file and of its
// directory, ~1–3 ms per record on an ordinary disk): sandbox.json and the
// sandbox's files, container.json (how the plugin finds a container and
// the files to remove; when it says started, a container is never started
// twice) and exit.json (nothing else knows how a container ended).
// shim.json is synced by the shim after it reported, off the start's path.
// The bundle's config.json, shim-config.json and shim.pid are not synced:
// they serve only to start a container or to watch a running shim, and
// neither a shim nor an overlay root filesystem survives a crash of the
// machine. The plugin keeps an in-memory index of the records, loaded by
// the first SetConfig; the files are the truth. A Sandbox's handle is JSON
// naming the plugin, a version and the sandbox id; Recover re-reads that
// sandbox and its containers from disk. The records the shim writes only
// gain fields, so that a plugin recovers the containers of shims an older
// plugin started.
//
// # Cgroups and namespaces
//
// Each sandbox has a pod cgroup, "paddock/SANDBOX" in the cpu, cpuacct,
// memory and pids hierarchies of cgroup v1 (or in the v2 tree), carrying
// the pod's limits; each container gets "paddock/SANDBOX/CONTAINER" below
// it with its own. The layout (v1, hybrid or v2) is detected when the
// configuration is set. Every container has its own pid, ipc, uts and
// mount namespaces and joins the sandbox's network namespace: the one its
// config names, or one the plugin makes for it (loopback up), so that a
// pod's containers share localhost either way.
//
// # Images
//
// Without Options.Images the plugin uses the shared image store
// (runtimes/internal/oci) at the configuration's imageStoreRoot, for root
// filesystems (an overlay per container) and for the Images RPCs.
//
// # Concurrency
//
// A Plugin's methods are safe for concurrent use. Operations on one
// container or one sandbox are serialised; different objects proceed in
// parallel.
package ociruntime
