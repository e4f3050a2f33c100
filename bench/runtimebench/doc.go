// Package runtimebench is benchmark B3 of docs/benchmarks.md: starting
// pods through the runtime plugins of the runc, gvisor and containerd
// runtime classes side by side, against bare `runc run` and bare
// `runsc run` of the same bundle, and starting a container in an existing
// pod through the runc plugin against bare `runc run`, all on the same
// machine in the same run.
//
// Run launches the runc plugin (paddock-runtime-runc) through
// plugins/pluginhost, as the node agent and `paddock conformance` do,
// imports the test image through the plugin's image service, creates the
// sandboxes, and creates one container, never started, whose bundle
// becomes the floors': they run the plugin's own OCI spec and root
// filesystem, so that every workload runs the same process with the same
// namespaces, capabilities, seccomp profile and mounts. Then it measures,
// after a warm-up:
//
//   - container starts (runc class): plugin (CreateContainer +
//     StartContainer in an existing sandbox) and floor (`runc run`, and
//     `runc create` + `runc start`, what the plugin's shim runs) in turn,
//     each container removed, untimed, before the next start; p50/p90/p99
//     of start → process runs, with the plugin's time split into its
//     RPCs; then the same count from Config.Concurrency workers, as
//     starts per second and latency; and CPU time per start, start to
//     removal, of the plugin with its shims and of the floor's runc
//     processes;
//   - pod starts, one class after another in turn: CreateSandbox +
//     CreateContainer + StartContainer through each measured class's
//     plugin (the runc plugin; the gVisor plugin, paddock-runtime-runsc,
//     on the systrap platform; the containerd plugin,
//     paddock-runtime-containerd, with the runc handler, against a
//     private containerd daemon the run starts) until the process runs,
//     each pod removed untimed; and the pod floors, `runc run` and
//     `runsc run` (one gVisor sandbox per container) of the template's
//     bundle, each container in a network namespace of its own as each
//     pod is. Each class is reported against its floor (runc and
//     containerd: `runc run`; gvisor: `runsc run`) and the gvisor class
//     against the runc class.
//
// A class whose prerequisites are missing (plugin, runsc, containerd) is
// reported as not measured, with the reason; under CI=true it is an
// error.
//
// "The process runs" is observed, not polled: every container's command
// first creates a file named by its tag in a directory bind-mounted from
// an allowed mount root, and an inotify watch on the host's side of that
// directory wakes the bench's reader, which takes the time. A file works
// in every class (gVisor's gofer creates it on the host), where a host
// FIFO is refused inside gVisor; the marker's own latency is measured
// and reported.
//
// Run prints a Markdown report (the summary with the goal verdicts, the
// raw samples, how it was measured and the machine) and can write it into
// B3's section of docs/benchmarks.md. It holds the machine-wide test lock
// (internal/testlock) while containers run. It returns only after every
// container, sandbox, cgroup, process, daemon, mount and temporary
// directory it made is gone, also when ctx ends early (Ctrl-C). It needs
// root, runc, the plugin binaries and runsc (make build), containerd
// (Debian package) and the image archive (make testimages).
package runtimebench
