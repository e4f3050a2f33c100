// Package runsc is Paddock's gVisor runtime plugin: it runs each sandbox
// (pod) as one gVisor sandbox, with runsc, behind the runtime plugin
// contract plugins/runtime/v1. Its isolation class is userspace-kernel:
// the pod's processes run on gVisor's kernel (the sentry), not the
// host's.
//
// The implementation is shared with the runc plugin and lives in
// runtimes/internal/ociruntime (see its documentation for the shims, the
// state directory, cgroups and images). What the runsc flavor changes:
//
//   - CreateSandbox starts the gVisor sandbox: its root container is a
//     tiny pause process built into the plugin, run in the pod's network
//     namespace (SandboxConfig.netns_path, else one the plugin makes) —
//     gVisor's network stack takes over the interfaces the network plugin
//     put there — and in the pod cgroup, which holds the whole sandbox and
//     carries the pod's limits.
//   - Every container joins that sandbox as a sub-container (the CRI
//     annotations io.kubernetes.cri.container-type and
//     io.kubernetes.cri.sandbox-id), so that a pod's containers share one
//     kernel and localhost. Its shim runs "runsc run --detach" and learns
//     the exit from "runsc wait": the container's processes live in the
//     sandbox, not on the host. Its reported pid is the sandbox's.
//   - Exec is "runsc exec"; a timed-out or abandoned exec is killed
//     inside the sandbox ("runsc kill --pid"). An exec on a terminal gets
//     a pseudo-terminal the plugin makes on the host: runsc exec runs on
//     its replica, which becomes the process's terminal in the sandbox,
//     and the plugin holds its master (input, output, resizes).
//   - Stats come from gVisor's own accounting ("runsc events --stats").
//     UpdateResources is not offered: limits are the pod's.
//   - StopSandbox deletes the gVisor sandbox once its containers stopped.
//
// Limits. gVisor enforces cpu and memory for the whole sandbox only: the
// pod cgroup holds the pod's limits, or, where the pod sets none, the sum
// of its containers' (when every container has one). When the pod
// exceeds its memory limit the host's OOM killer ends the whole sandbox
// (gVisor kills itself when one of its processes is OOM-killed): every
// container of the pod is reported exited, OOM-killed, with exit code
// 137, the sandbox is reported not ready, and stopping and removing it
// work as usual. The pod's pids limit (SandboxConfig.resources.pids)
// holds inside the sandbox, as the RLIMIT_NPROC of every process of the
// pod (a clone past it fails with EAGAIN; counted per user id across the
// sandbox); the pod cgroup on the host gets a higher pids limit that
// leaves room for the sandbox's own host tasks, because running out of
// those would kill the sandbox instead of failing the pod's clone.
//
// Configuration (JSON, schema in Info): runscPath (default: runsc next to
// the plugin's binary, else in PATH), platform (systrap, the default, or
// ptrace), rootDir (runsc's --root, default STATE_DIR/runsc), debugLogDir,
// and the runc plugin's allowedMountRoots, imageStoreRoot,
// insecureRegistries, logMaxBytes and shimPath.
package runsc
