package agent

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
)

// Logs and exec of a pod the agent runs, through the API server: the
// agent publishes its stream endpoint, the API server reaches it, the
// agent resolves the pod's container — the newest instance, or the one
// before it for previous logs.
func TestLogsAndExecThroughTheAgent(t *testing.T) {
	h := newHarness(t)
	h.startAgent()
	ctx := t.Context()
	p := h.pod("talk", "sh", "-c", "echo run-$(cat /proc/sys/kernel/random/uuid | cut -c1-8); sleep 1; exit 1")
	h.create(p)
	h.waitPod("talk", "restarted once", 60*time.Second, func(p *api.Pod) bool {
		return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	logs := func(previous bool) string {
		t.Helper()
		rc, err := h.admin.Logs(ctx, h.tenant, "talk", client.LogOptions{Previous: previous})
		if err != nil {
			t.Fatalf("logs (previous=%v): %v", previous, err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return strings.TrimSpace(string(b))
	}
	cur, prev := logs(false), logs(true)
	if !strings.HasPrefix(cur, "run-") || !strings.HasPrefix(prev, "run-") || cur == prev {
		t.Errorf("logs = %q, previous = %q: want two different run-XXXX lines", cur, prev)
	}

	h.create(h.pod("shell", "sleep", "3600"))
	h.waitPod("shell", "running", 60*time.Second, running)
	var out, errOut bytes.Buffer
	code, err := h.admin.Exec(ctx, h.tenant, "shell", client.ExecOptions{Command: []string{"sh", "-c", "hostname; echo oops >&2; exit 4"}, Stdout: &out, Stderr: &errOut})
	if err != nil || code != 4 || strings.TrimSpace(out.String()) != "shell" || strings.TrimSpace(errOut.String()) != "oops" {
		t.Errorf("exec = %d, %v, stdout %q, stderr %q; want 4, hostname shell, oops", code, err, out.String(), errOut.String())
	}
}
