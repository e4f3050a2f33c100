// Command paddock-example-runtime is the smallest useful Paddock runtime
// plugin: a starting point for vendors, not a runtime to run tenants on.
//
// It runs each container as a host process chrooted into a private copy of
// its image's root filesystem, in new pid, mount, ipc and uts namespaces
// (and a new network namespace unless the sandbox names one), with the
// sandbox's hostname. Output goes to a per-container log file of CRI lines.
// Images come in through ImportImage (OCI archives); there is no pull, no
// exec, no cgroups and no persistence: containers die with the plugin
// process (Capabilities.containers_tied_to_plugin) and all state is in
// memory. README.md lists what a real plugin must add and the conformance
// cases this one passes, skips and fails.
//
// The files, in the order a reader would want them:
//
//	runtime.go    identity: Info, Capabilities, SetConfig, Health; state and locking
//	sandbox.go    sandboxes and Recover
//	container.go  containers: create, start (the namespaces), stop, wait, remove
//	logs.go       the CRI log file: writing and the Logs RPC
//	images.go     ImportImage and the image list; unpacking archives safely
package main

import runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"

// The whole of main: serve the plugin on go-plugin's handshake. The host
// (plugins/pluginhost) starts this binary, connects over a unix socket and
// calls SetConfig before anything else.
func main() { runtimev1.Serve(newRuntime()) }
