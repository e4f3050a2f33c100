package runtimetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// The cases about what goes in and out of containers and the plugin:
// health conditions, volumes, terminals and log bounds (RT-CAP-003,
// RT-CT-008, RT-EX-004, RT-EX-007).

// firstHealthEvent returns the first event of the plugin's health
// stream, which must come within 10 s.
func firstHealthEvent(t *T) *runtimev1.HealthEvent {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := t.Client().Health(ctx, &runtimev1.HealthRequest{})
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	ev, err := s.Recv()
	if err != nil {
		t.Fatalf("first health event within 10s: %v", err)
	}
	return ev
}

// The condition every runtime plugin reports.
const conditionRuntimeReady = "RuntimeReady"

func runtimeConditions(t *T) {
	ev := firstHealthEvent(t)
	if len(ev.Conditions) == 0 {
		t.Fatalf("the first health event has no conditions; want at least %s", conditionRuntimeReady)
	}
	all, ready := true, false
	for i, c := range ev.Conditions {
		if c.Type == "" {
			t.Errorf("condition %d has no type: %v", i, c)
		}
		all = all && c.Status
		ready = ready || (c.Type == conditionRuntimeReady && c.Status)
	}
	if !ready {
		t.Errorf("the first health event's conditions %v do not say %s=true", ev.Conditions, conditionRuntimeReady)
	}
	if ev.Healthy != all {
		t.Errorf("healthy = %v but the conditions %v are %s", ev.Healthy, ev.Conditions, map[bool]string{true: "all true", false: "not all true"}[all])
	}
}

// volumes binds directories of the volume root into a container, read
// and write and read-only, through a symbolic link inside the root, and
// checks that paths outside the allowed roots are refused.
func volumes(t *T) {
	root := t.env.cfg.VolumeRoot
	if root == "" {
		t.Fatalf("no volume root: give the suite a directory the plugin's configuration allows mounts from (paddock conformance runtime --volume-root)")
	}
	dir := t.tempDir(root, "ct008-")
	data := filepath.Join(dir, "data")
	const content = "volume content\n"
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatalf("volume: %v", err)
	}
	if err := os.WriteFile(filepath.Join(data, "hello.txt"), []byte(content), 0o644); err != nil {
		t.Fatalf("volume: %v", err)
	}
	inside := filepath.Join(dir, "link-inside")
	if err := os.Symlink(data, inside); err != nil {
		t.Fatalf("volume: %v", err)
	}
	outsideDir := t.tempDir("", "ct008-outside-")
	outside := filepath.Join(dir, "link-outside")
	if err := os.Symlink(outsideDir, outside); err != nil {
		t.Fatalf("volume: %v", err)
	}

	sb := t.Sandbox(nil)
	cfg := t.containerConfig("sleep", "600")
	cfg.Mounts = []*runtimev1.Mount{
		{HostPath: data, ContainerPath: "/data"},
		{HostPath: data, ContainerPath: "/ro", ReadOnly: true},
		{HostPath: inside, ContainerPath: "/linked"},
	}
	c := t.Container(sb, cfg)
	t.Start(c.Id)
	t.WaitRunning(c.Id)
	for _, p := range []string{"/data/hello.txt", "/ro/hello.txt", "/linked/hello.txt"} {
		if r := t.Exec(c.Id, 10*time.Second, "cat", p); string(r.Stdout) != content || r.ExitCode != 0 {
			t.Errorf("cat %s = %q exit %d, want %q", p, r.Stdout, r.ExitCode, content)
		}
	}
	if r := t.Exec(c.Id, 10*time.Second, "sh", "-c", "echo written > /data/new.txt"); r.ExitCode != 0 {
		t.Errorf("writing to the read-write mount failed: exit %d %s", r.ExitCode, r.Stderr)
	} else if b, err := os.ReadFile(filepath.Join(data, "new.txt")); err != nil || string(b) != "written\n" {
		t.Errorf("a file written to the mount reads %q, %v on the host; want \"written\\n\"", b, err)
	}
	if r := t.Exec(c.Id, 10*time.Second, "sh", "-c", "echo x > /ro/denied.txt"); r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "Read-only file system") {
		t.Errorf("writing to the read-only mount: exit %d stderr %q; want a failure with EROFS (Read-only file system)", r.ExitCode, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(data, "denied.txt")); err == nil {
		t.Errorf("a write through the read-only mount reached the host")
	}
	for what, m := range map[string]*runtimev1.Mount{
		"a symbolic link inside the root to a directory outside the allowed roots": {HostPath: outside, ContainerPath: "/out"},
		"a directory outside the allowed roots":                                    {HostPath: outsideDir, ContainerPath: "/out"},
	} {
		bad := t.containerConfig("sleep", "600")
		bad.Mounts = []*runtimev1.Mount{m}
		_, err := t.Client().CreateContainer(t.Context(), &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: bad})
		t.WantClass("CreateContainer with a mount of "+what, err, errdefs.ErrInvalidArgument)
	}
}

// execResult is what a streaming exec returned.
type execResult struct {
	stdout, stderr string
	code           int32
}

// execStreaming runs one streaming exec: the start, then inputs in order,
// then it reads until the exit code.
func (t *T) execStreaming(start *runtimev1.ExecStart, inputs ...*runtimev1.ExecInput) execResult {
	s, err := t.Client().Exec(t.Context())
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	msgs := append([]*runtimev1.ExecInput{{Input: &runtimev1.ExecInput_Start{Start: start}}}, inputs...)
	for _, m := range msgs {
		if err := s.Send(m); err != nil {
			t.Fatalf("Exec %q: send %v: %v", start.Command, m, err)
		}
	}
	var r execResult
	var out, errOut strings.Builder
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("Exec %q ended without an exit code: %v", start.Command, err)
		}
		switch o := m.Output.(type) {
		case *runtimev1.ExecOutput_Stdout:
			out.Write(o.Stdout)
		case *runtimev1.ExecOutput_Stderr:
			errOut.Write(o.Stderr)
		case *runtimev1.ExecOutput_ExitCode:
			_ = s.CloseSend()
			r.stdout, r.stderr, r.code = out.String(), errOut.String(), o.ExitCode
			return r
		}
	}
}

func resize(width, height uint32) *runtimev1.ExecInput {
	return &runtimev1.ExecInput{Input: &runtimev1.ExecInput_Resize{Resize: &runtimev1.Resize{Width: width, Height: height}}}
}

func stdin(s string) *runtimev1.ExecInput {
	return &runtimev1.ExecInput{Input: &runtimev1.ExecInput_Stdin{Stdin: []byte(s)}}
}

// execTTY runs commands on a terminal: output in CRLF, the last of two
// resizes in force, the exit code passed through and only the lead
// process waited for.
func execTTY(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sleep", "600")
	t.WaitRunning(c.Id)
	tty := func(stdin bool, cmd ...string) *runtimev1.ExecStart {
		return &runtimev1.ExecStart{Id: c.Id, Command: cmd, Tty: true, Stdin: stdin, Width: 80, Height: 24}
	}
	if r := t.execStreaming(tty(false, "echo", "a")); r.stdout != "a\r\n" || r.code != 0 {
		t.Errorf("echo a on a terminal = %q exit %d, want \"a\\r\\n\" and 0", r.stdout, r.code)
	}
	r := t.execStreaming(tty(true, "sh", "-c", "read go; stty size; exit 3"), resize(50, 20), resize(100, 100), stdin("go\n"))
	if !strings.Contains(r.stdout, "100 100\r\n") || r.code != 3 {
		t.Errorf("stty size after resizes to 50x20 then 100x100 = %q exit %d, want \"100 100\" and 3", r.stdout, r.code)
	}
	start := time.Now()
	r = t.execStreaming(tty(false, "sh", "-c", "sleep 30 & exit 4"))
	if took := time.Since(start); r.code != 4 || took > 10*time.Second {
		t.Errorf("a lead process leaving a background child: exit %d after %v, want 4 well before the child's 30s", r.code, took.Round(time.Millisecond))
	}
}

// logFlood is how long RT-EX-007's container floods its log.
const logFlood = 10 * time.Second

// logBounds has a container write as fast as it can to stdout and
// checks that its log files stay within the rotation cap and the plugin's
// memory within its cap.
func logBounds(t *T) {
	const logMax = 1 << 20
	// Current file and one rotated file, plus a line of slack.
	const limit = 2*logMax + 64<<10
	sb := t.Sandbox(nil)
	cfg := t.containerConfig("sh", "-c", "yes "+strings.Repeat("x", 1000))
	cfg.LogMaxBytes = logMax
	c := t.Container(sb, cfg)
	t.Start(c.Id)
	got := t.WaitRunning(c.Id)
	if got.LogPath == "" {
		t.Fatalf("Container.log_path is empty: the plugin must say where a container's log is")
	}
	var maxLog, maxRSS int64
	deadline := time.Now().Add(logFlood)
	for time.Now().Before(deadline) {
		maxLog = max(maxLog, logUsage(got.LogPath))
		if rss, err := vmRSS(t.env.cfg.Target.PluginPID()); err == nil {
			maxRSS = max(maxRSS, rss)
		} else {
			t.Errorf("plugin memory: %v", err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("flooding the log: %v", t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if _, err := t.Client().StopContainer(t.Context(), &runtimev1.StopContainerRequest{Id: c.Id, TimeoutSeconds: 2}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	t.Wait(c.Id)
	maxLog = max(maxLog, logUsage(got.LogPath))
	t.Logf("log files at most %d bytes (log_max_bytes %d), plugin RSS at most %d bytes", maxLog, logMax, maxRSS)
	if maxLog > limit {
		t.Errorf("the container's log files %s* grew to %d bytes; with log_max_bytes %d they may hold at most %d", got.LogPath, maxLog, logMax, limit)
	}
	if max := t.env.cfg.MaxPluginRSSBytes; maxRSS > max {
		t.Errorf("the plugin's resident memory reached %d bytes while a container flooded its log; the cap is %d", maxRSS, max)
	}
	s, err := t.Client().Logs(t.Context(), &runtimev1.LogsRequest{Id: c.Id, Tail: 1})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	if l, err := s.Recv(); err != nil || !strings.HasPrefix(string(l.Line), "xxxx") {
		t.Errorf("the last log line after the flood = %v, %v; want a line of the container's output", l, err)
	}
}

// logUsage is the size of a container's log: the file at path and its
// rotated files (path.*).
func logUsage(path string) int64 {
	var n int64
	matches, _ := filepath.Glob(path + ".*")
	for _, p := range append(matches, path) {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// vmRSS returns a process's resident memory from /proc/PID/status.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmRSS %q: %w", pid, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}
