// Package runc is Paddock's runc runtime plugin: it runs sandboxes (pods)
// and their containers with the runc binary, behind the runtime plugin
// contract plugins/runtime/v1.
//
// The implementation is shared with the gVisor plugin (runtimes/runsc) and
// lives in runtimes/internal/ociruntime, whose documentation describes
// the processes (one shim per container, which outlives the plugin), the
// state directory, cgroups and namespaces, images and concurrency. This
// package selects the runc flavor of it: every container runs with runc
// in namespaces of its own on the host's kernel, joining its sandbox's
// network namespace, and the isolation class is namespace.
package runc
