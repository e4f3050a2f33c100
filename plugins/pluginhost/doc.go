// Package pluginhost runs plugin binaries for the node agent and the
// conformance suites: it launches a plugin by path, checks its handshake,
// negotiates the API version, hands it its configuration, restarts it
// when it crashes, and reattaches to it after the host itself restarts,
// so that plugins (and the containers they run) outlive an agent restart
// or upgrade.
//
// It is generic over plugin kinds: a Kind value says how to recognise and
// talk to one kind of plugin. RuntimeKind is the kind of runtime plugins
// (plugins/runtime/v1); network plugins get theirs with their contract.
//
// # Lifecycle
//
//	h, err := pluginhost.New(pluginhost.Config{StateDir: dir, Logger: log})
//	inst, err := h.Launch(ctx, pluginhost.RuntimeKind, "runc", "/usr/lib/paddock/paddock-runtime-runc", cfg)
//	rt, err := inst.Runtime() // for each use: the client of the current process
//	...
//	inst.Kill(ctx) // the plugin exits for good
//	h.Close()      // detach from the plugins still running; they keep running
//
// Launch starts the binary (or, if a plugin of that name is recorded as
// running and answers, reattaches to it), waits up to
// Config.HandshakeTimeout for go-plugin's handshake, asks the plugin's
// Info, picks the newest API version both sides speak, refusing the plugin
// with errdefs.ErrFailedPrecondition if there is none, and calls
// SetConfig with that version, the configuration and the plugin's state
// directory. An Instance is returned only for a plugin that has accepted
// its configuration.
//
// Each Instance has a supervisor goroutine. When the plugin's process
// exits, Client and Runtime return errdefs.ErrUnavailable (and
// errgrpc.IsPluginExited), and the supervisor starts the plugin again
// after a back-off (Config.Backoff), negotiates and configures it again,
// counts the restart (Instance.Restarts) and reports it to
// Config.OnEvent, where the agent re-adopts its sandboxes with Recover.
// WaitReady waits for a pending restart.
//
// Instance.Kill stops the plugin for good (gracefully through go-plugin,
// which gives it 2s, then SIGKILL) and removes its socket, log and
// record. Instance.Close and Host.Close detach: the supervisor stops, the
// connection closes and the process keeps running, recorded for the next
// host. Neither Kill nor Close leaves a goroutine of the Instance behind,
// with one exception: a process this host started stays its child, and a
// goroutine waits to reap it until it exits.
//
// # Surviving the host
//
// A plugin must keep running when the host exits or is killed:
//
//   - The host never calls go-plugin's CleanupClients and launches
//     unmanaged clients; go-plugin's Kill is used only by Instance.Kill.
//   - Plugins run in their own process group (a signal to the host's group
//     does not reach them) and write their stderr to a file that the host
//     tails (StateDir/logs/NAME.log), not to a pipe: a Go program writing
//     its log into a pipe with no reader dies of SIGPIPE.
//   - Each running plugin has a record (StateDir/records/NAME.json, 0600,
//     written atomically): go-plugin's ReattachConfig (pid, address,
//     protocol and its version), the process's start time (so that a
//     reused pid is not mistaken for the plugin), the negotiated API
//     version and the AutoMTLS certificates of the connection, which
//     go-plugin cannot renegotiate on reattach.
//
// A new host on the same state directory reattaches with go-plugin's
// ClientConfig.Reattach and watches the process, no longer its child,
// through a pidfd.
//
// # Files
//
// StateDir (0700) holds host.lock (a host holds an flock on it, so two
// hosts never share a directory), sockets/ (one 0700 directory per plugin
// process holding its socket, mode 0660, group the host's), records/,
// logs/ (NAME.log and the previous process's NAME.log.1), and plugins/NAME
// (0700), the state directory handed to the plugin, which Kill leaves in
// place.
//
// # Output
//
// Instance.Output counts what the plugin's processes wrote since Launch:
// to stdout after the handshake line (go-plugin drops it; a plugin should
// write nothing there) and to stderr. The conformance suite judges a
// plugin's output hygiene by it.
//
// # Concurrency
//
// Host and Instance methods are safe for concurrent use. Launches of
// different names run concurrently; a second Launch of a running name
// fails with errdefs.ErrAlreadyExists.
package pluginhost
