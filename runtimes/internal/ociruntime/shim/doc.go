// Package shim is the runc plugin's container shim: one short-lived
// process per container start that stays on as the parent of the
// container's init, and the on-disk records it shares with the plugin
// (runtimes/internal/ociruntime, for the runc and runsc plugins).
//
// The shim is its own small binary, cmd/paddock-runc-shim, run as
//
//	paddock-runc-shim DIR
//
// (or, when that binary is missing, the plugin's own binary run as
// "paddock-runtime-runc shim DIR"; both call Run). DIR is the container's
// state directory and fd 3 the write end of a pipe on which the shim
// reports, in one JSON line (Ready), whether the container started. The
// plugin starts it in a session of its own, so that it outlives the
// plugin. The package imports only the standard library and
// golang.org/x/sys/unix, so that the binary starts in a few milliseconds.
//
// # Lifecycle
//
// The shim reads ConfigFile, becomes a child subreaper and runs
// "runc run --detach" with the container's stdout and stderr on pipes it
// reads. When runc has exited the container's init is the shim's child.
// The shim records StateFile, reports, writes the output to a CRI-format
// log file (rotated at Config.LogMaxBytes, one rotated file kept), reaps
// the init (and anything else reparented to it) and records how the
// container ended (exit code, signal, OOM kill from a rise of the
// cgroup's OOM counter during the container's life: a gVisor sandbox's
// counter is its pod's) in ExitFile once the output is drained. Then it
// exits. A start that fails leaves no container behind (runc removes it,
// and the shim runs "runc delete --force" to be sure) and is reported as
// an error.
//
// With Config.WaitCommand (runsc) the container's processes live in a
// gVisor sandbox, not on the host: the shim runs the same start command
// (with Config.RuntimeArgs) and learns the exit from "RUNTIME wait ID"
// instead of reaping; the pid it records is the sandbox's (State.InitShared).
//
// # Records
//
// Every record is written atomically (WriteFileAtomic): any process sees
// the old or the new version, never a torn one, whatever process crashes.
// Only records that a restart after a crash of the machine needs are also
// synced to disk (Durable); see WriteFileAtomic.
//
//	shim-config.json  Config: written by the plugin at create, read by the shim
//	shim.json         State: written by the shim once the container runs
//	exit.json         Exit: written by the shim when the container exited
//	                  (by the plugin when the start failed)
//	shim.log          the shim's own log (text lines)
//	runc.log          runc's JSON log
//
// The JSON of these records is a protocol between plugin and shim
// versions: fields are only ever added, so that a plugin recovers the
// containers whose shims an older plugin started.
package shim
