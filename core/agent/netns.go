package agent

import (
	"github.com/paddock-dev/paddock/internal/netns"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// createNetns makes a pod's network namespace (a network plugin attaches
// it; until then it has a loopback only).
func (a *Agent) createNetns(path string) error { return netns.Create(path) }

// removeNetns removes a pod network namespace; "" and missing ones are
// fine.
func (a *Agent) removeNetns(path string) {
	if path == "" {
		return
	}
	if err := netns.Remove(path); err != nil {
		a.log.Warn("remove network namespace", "path", path, "error", err)
	}
}

// netnsOf is the network namespace of a sandbox the agent made.
func (a *Agent) netnsOf(sb *runtimev1.Sandbox) string {
	if p := sb.GetConfig().GetNetnsPath(); p != "" {
		return p
	}
	if r, ok := a.record(sb.Id); ok {
		return r.Netns
	}
	return ""
}
