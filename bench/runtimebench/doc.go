// Package runtimebench is benchmark B3 of docs/benchmarks.md: starting a
// container through a runtime plugin (paddock-runtime-runc), measured
// against bare `runc run` of the same bundle on the same machine in the
// same run.
//
// Run launches the plugin binary through plugins/pluginhost, as the node
// agent and `paddock conformance` do, imports the test image through the
// plugin's image service, creates the sandboxes, and creates one
// container, never started, whose bundle becomes the floor's: the floor
// runs the plugin's own OCI spec and root filesystem with `runc run`, so
// both run the same process with the same namespaces, capabilities,
// seccomp profile and mounts. Then it measures, after a warm-up:
//
//   - sequential starts: plugin (CreateContainer + StartContainer) and
//     floor (`runc run`) in turn, each container removed, untimed, before
//     the next start; p50/p90/p99 of start → process runs, with the
//     plugin's time split into its RPCs;
//   - concurrent starts: the same count from Config.Concurrency workers,
//     as starts per second and latency;
//   - CPU time per start, start to removal, of the plugin with its shims
//     and of the floor's runc processes.
//
// "The process runs" is observed, not polled: every container's command
// first writes its tag into a FIFO that the bench holds open, bind-mounted
// from an allowed mount root, and the time is taken when the bench's
// reader wakes on it.
//
// Run prints a Markdown report (the summary with the goal verdicts, the
// raw samples, how it was measured and the machine) and can write it into
// B3's section of docs/benchmarks.md. It holds the machine-wide test lock
// (internal/testlock) while containers run. It returns only after every
// container, sandbox, cgroup, process and temporary directory it made is
// gone, also when ctx ends early (Ctrl-C). It needs root, runc, the
// plugin binary (make build) and the image archive (make testimages).
package runtimebench
