// Package agent is the node agent: it registers its Node, heartbeats
// through the node's Lease, watches the pods bound to it and drives them
// through out-of-process runtime plugins (plugins/pluginhost).
//
// # Sync
//
// Every pod is reconciled by a level-triggered sync (pod.go): the desired
// state is the pod as the API server has it, the actual state is what the
// runtime plugin reports — sandboxes and containers carry labels naming
// their pod, container and restart count. Nothing about a running pod is
// kept only in the agent's memory, so an agent that restarts picks up
// where it was: it never restarts or duplicates a running container, and
// removes the sandboxes of pods that no longer exist. In memory are only
// what may be lost: restart back-off timers, probe results, the status
// last written and event de-duplication.
//
// A sync, in order: tear down sandboxes of pods gone or replaced (another
// uid under the same name); for a terminating pod, stop its containers
// within the grace period left, remove its sandbox and finish the
// deletion through the API; else make sure the sandbox is ready (a
// network namespace the agent creates, then CreateSandbox), the images
// are there (pulled with progress reported as events), and each
// container runs or is restarted per restartPolicy with exponential
// back-off (CrashLoopBackOff); then write the pod's status if it changed.
// A sync is triggered by pod changes, container exits (a WaitContainer
// per running container), probe results, back-off timers and a periodic
// resync.
//
// # Restarts of the agent and its plugins
//
// Plugins run as children of the agent's plugin host and survive the
// agent: a new agent reattaches to them. The agent records every
// sandbox's recovery handle under DATA_DIR/sandboxes; when a plugin
// process is restarted (it crashed), the agent hands it those handles
// (Recover) before syncing again.
package agent
