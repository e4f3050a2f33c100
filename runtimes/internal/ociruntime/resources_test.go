package ociruntime

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// RT-CT-010 (memory): a memory hog over its 32 MiB limit is OOM-killed
// and reported so.
func TestMemoryLimitOOM(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "hog",
		Resources: &runtimev1.Resources{MemoryBytes: 32 << 20},
		Command:   []string{"sh", "-c", "x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done"}})
	ex := h.wait(c.Id)
	if !ex.OomKilled || ex.ExitCode != 137 || ex.Signal != 9 || ex.Reason != "OOMKilled" {
		t.Errorf("exit = %v, want OOMKilled, 137, signal 9", ex)
	}
	if got := h.inspect(c.Id); got.Config.Resources.GetMemoryBytes() != 32<<20 {
		t.Errorf("Inspect resources = %v, want the 32 MiB limit reported back", got.Config.Resources)
	}
}

// RT-CT-010 (reporting), RT-CT-011: limits land in the container's cgroup,
// Stats reads it, UpdateResources changes a running container's limits.
func TestResourcesStatsUpdate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	sb := h.sandbox(&runtimev1.SandboxConfig{Name: "res", Resources: &runtimev1.Resources{MemoryBytes: 256 << 20}})
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "res", Command: []string{"sleep", "1000"},
		Resources: &runtimev1.Resources{CpuMillis: 500, CpuSharesMillis: 100, MemoryBytes: 64 << 20, Pids: 50}})
	layout, err := detectCgroups()
	if err != nil {
		t.Fatal(err)
	}
	cg := containerCgroup(sb.Id, c.Id)
	read := func(ctrl, file string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(layout.dir(ctrl, cg), file))
		if err != nil {
			t.Fatalf("container cgroup: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	if !layout.unified {
		if got := read("cpu", "cpu.cfs_quota_us"); got != "50000" {
			t.Errorf("cpu.cfs_quota_us = %s, want 50000", got)
		}
		if got := read("cpu", "cpu.shares"); got != "102" {
			t.Errorf("cpu.shares = %s, want 102", got)
		}
		if got := read("pids", "pids.max"); got != "50" {
			t.Errorf("pids.max = %s, want 50", got)
		}
	}
	// Right after the start, runc's init may still be on its way to
	// exec the command (its threads count as pids): poll until it has.
	var st *runtimev1.ContainerStats
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if st, err = h.p.Stats(ctx, &runtimev1.StatsRequest{Id: c.Id}); err != nil {
			t.Fatal(err)
		}
		if st.Pids == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.MemoryLimitBytes != 64<<20 || st.Pids != 1 || st.CpuUsageNanos == 0 || st.MemoryUsageBytes == 0 {
		t.Errorf("Stats = %v, want limit 64 MiB, 1 pid, some cpu and memory", st)
	}
	if _, err := h.p.UpdateResources(ctx, &runtimev1.UpdateResourcesRequest{Id: c.Id, Resources: &runtimev1.Resources{CpuMillis: 250, MemoryBytes: 128 << 20, Pids: 60}}); err != nil {
		t.Fatalf("UpdateResources: %v", err)
	}
	st, _ = h.p.Stats(ctx, &runtimev1.StatsRequest{Id: c.Id})
	if st.MemoryLimitBytes != 128<<20 {
		t.Errorf("memory limit after update = %d, want 128 MiB", st.MemoryLimitBytes)
	}
	if !layout.unified {
		if got := read("cpu", "cpu.cfs_quota_us"); got != "25000" {
			t.Errorf("cpu.cfs_quota_us after update = %s, want 25000", got)
		}
		if got := read("pids", "pids.max"); got != "60" {
			t.Errorf("pids.max after update = %s, want 60", got)
		}
	}
	if got := h.inspect(c.Id); got.Config.Resources.GetMemoryBytes() != 128<<20 || got.State != runtimev1.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after update: %v, want the new limit recorded and the container still running", got)
	}
	if _, err := h.p.UpdateResources(ctx, &runtimev1.UpdateResourcesRequest{Id: c.Id, Resources: &runtimev1.Resources{MemoryBytes: -5}}); !isClass(err, errdefs.ErrInvalidArgument) {
		t.Errorf("UpdateResources(negative) = %v, want InvalidArgument", err)
	}
}

// RT-EX-001, RT-EX-002: ExecSync output and exit code; a timeout kills the
// process and answers DeadlineExceeded.
func TestExecSync(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "exec", Command: []string{"sleep", "1000"}, Env: map[string]string{"FROM_SPEC": "yes"}})
	stdout, stderr, code := h.exec(c.Id, "sh", "-c", "echo out; echo err >&2; exit 43")
	if stdout != "out\n" || stderr != "err\n" || code != 43 {
		t.Errorf("ExecSync = %q, %q, %d; want out, err, 43", stdout, stderr, code)
	}
	if stdout, _, _ := h.exec(c.Id, "sh", "-c", "echo $FROM_SPEC"); stdout != "yes\n" {
		t.Errorf("exec env = %q, want the container's env", stdout)
	}
	if _, _, code := h.exec(c.Id, "/no/such/binary"); code == 0 {
		t.Errorf("exec of a missing binary exited 0")
	}

	start := time.Now()
	_, err := h.p.ExecSync(ctx, &runtimev1.ExecSyncRequest{Id: c.Id, Command: []string{"sleep", "60"}, TimeoutSeconds: 1})
	if !isClass(err, context.DeadlineExceeded) {
		t.Errorf("ExecSync(timeout) = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("ExecSync(timeout 1s) took %s", d)
	}
	// The exec'd sleep is gone: only the init process is left.
	waitFor(t, "the timed-out process to be gone", 5*time.Second, func() bool {
		st, err := h.p.Stats(ctx, &runtimev1.StatsRequest{Id: c.Id})
		return err == nil && st.Pids == 1
	})
	if out, _, _ := h.exec(c.Id, "ps", "-o", "args"); strings.Contains(out, "sleep 60") {
		t.Errorf("sleep 60 still runs after the timeout:\n%s", out)
	}

	// Exec in a container that is not running.
	done := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "done", Command: []string{"true"}})
	h.wait(done.Id)
	if _, err := h.p.ExecSync(ctx, &runtimev1.ExecSyncRequest{Id: done.Id, Command: []string{"true"}}); !isClass(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("ExecSync(exited) = %v, want FailedPrecondition", err)
	}
}

// RT-EX-003: streaming exec without a tty keeps the order of output,
// passes stdin and has no terminal.
func TestExecStream(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "stream", Command: []string{"sleep", "1000"}})
	run := func(cmd []string, stdin []string) (string, string, int32) {
		t.Helper()
		in := make(chan *runtimev1.ExecInput, len(stdin)+2)
		in <- &runtimev1.ExecInput{Input: &runtimev1.ExecInput_Start{Start: &runtimev1.ExecStart{Id: c.Id, Command: cmd, Stdin: stdin != nil}}}
		for _, s := range stdin {
			in <- &runtimev1.ExecInput{Input: &runtimev1.ExecInput_Stdin{Stdin: []byte(s)}}
		}
		if stdin != nil {
			in <- &runtimev1.ExecInput{Input: &runtimev1.ExecInput_CloseStdin{CloseStdin: true}}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		s := &bidiStream{collectStream: collectStream[runtimev1.ExecOutput]{ctx: ctx}, in: in}
		if err := h.p.Exec(s); err != nil {
			t.Fatalf("Exec(%q): %v", cmd, err)
		}
		var out, errOut strings.Builder
		code := int32(-1)
		msgs := s.snapshot()
		for i, m := range msgs {
			switch v := m.Output.(type) {
			case *runtimev1.ExecOutput_Stdout:
				out.Write(v.Stdout)
			case *runtimev1.ExecOutput_Stderr:
				errOut.Write(v.Stderr)
			case *runtimev1.ExecOutput_ExitCode:
				if i != len(msgs)-1 {
					t.Errorf("exit code is message %d of %d, want the last", i, len(msgs))
				}
				code = v.ExitCode
			}
		}
		return out.String(), errOut.String(), code
	}
	if out, _, code := run([]string{"sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.05; done"}, nil); out != "1\n2\n3\n" || code != 0 {
		t.Errorf("ordered output = %q (exit %d), want 1 2 3", out, code)
	}
	if out, _, code := run([]string{"cat"}, []string{"hello ", "world\n"}); out != "hello world\n" || code != 0 {
		t.Errorf("stdin passthrough = %q (exit %d)", out, code)
	}
	if _, errOut, code := run([]string{"stty", "size"}, nil); code == 0 {
		t.Errorf("stty size without a tty succeeded (stderr %q)", errOut)
	}
	if _, _, code := run([]string{"sh", "-c", "exit " + strconv.Itoa(7)}, nil); code != 7 {
		t.Errorf("exit code = %d, want 7", code)
	}
}

// RT-EX-004: exec on a terminal: CRLF output, the last resize wins
// (applied before the input after it), input and its end, exit code.
func TestExecTTY(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "tty", Command: []string{"sleep", "1000"}})
	exec := func(start *runtimev1.ExecStart, input ...*runtimev1.ExecInput) (string, int32) {
		t.Helper()
		start.Id, start.Tty = c.Id, true
		in := make(chan *runtimev1.ExecInput, len(input)+1)
		in <- &runtimev1.ExecInput{Input: &runtimev1.ExecInput_Start{Start: start}}
		for _, m := range input {
			in <- m
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		s := &bidiStream{collectStream: collectStream[runtimev1.ExecOutput]{ctx: ctx}, in: in}
		if err := h.p.Exec(s); err != nil {
			t.Fatalf("Exec(%q): %v", start.Command, err)
		}
		var out strings.Builder
		code := int32(-1)
		for _, m := range s.snapshot() {
			switch v := m.Output.(type) {
			case *runtimev1.ExecOutput_Stdout:
				out.Write(v.Stdout)
			case *runtimev1.ExecOutput_Stderr:
				t.Errorf("stderr %q on a terminal, want everything on stdout", v.Stderr)
			case *runtimev1.ExecOutput_ExitCode:
				code = v.ExitCode
			}
		}
		return out.String(), code
	}
	stdin := func(s string) *runtimev1.ExecInput {
		return &runtimev1.ExecInput{Input: &runtimev1.ExecInput_Stdin{Stdin: []byte(s)}}
	}
	resize := func(w, h uint32) *runtimev1.ExecInput {
		return &runtimev1.ExecInput{Input: &runtimev1.ExecInput_Resize{Resize: &runtimev1.Resize{Width: w, Height: h}}}
	}
	if out, code := exec(&runtimev1.ExecStart{Command: []string{"sh", "-c", "echo a; echo b; exit 5"}}); out != "a\r\nb\r\n" || code != 5 {
		t.Errorf("output = %q exit %d, want \"a\\r\\nb\\r\\n\" exit 5", out, code)
	}
	// An interactive shell: two resizes, then stty size; the last wins.
	out, code := exec(&runtimev1.ExecStart{Command: []string{"sh"}, Stdin: true, Width: 80, Height: 24},
		resize(120, 40), resize(100, 100), stdin("stty size; exit 3\n"))
	if !strings.Contains(out, "100 100\r\n") || code != 3 {
		t.Errorf("stty size after resizes: output %q exit %d, want \"100 100\" and exit 3", out, code)
	}
	// Closing stdin ends the input: cat sees end-of-file and exits 0.
	if out, code := exec(&runtimev1.ExecStart{Command: []string{"cat"}, Stdin: true}, stdin("hi\n"), &runtimev1.ExecInput{Input: &runtimev1.ExecInput_CloseStdin{CloseStdin: true}}); !strings.Contains(out, "hi\r\n") || code != 0 {
		t.Errorf("cat with stdin then close: output %q exit %d, want hi and exit 0", out, code)
	}
	// Only the lead process is waited for.
	if _, code := exec(&runtimev1.ExecStart{Command: []string{"sh", "-c", "sleep 600 & exit 4"}}); code != 4 {
		t.Errorf("exit with a background child = %d, want 4", code)
	}
	if out, code := exec(&runtimev1.ExecStart{Command: []string{"/no/such/binary"}}); code == 0 || !strings.Contains(out, "no/such/binary") {
		t.Errorf("missing binary: output %q exit %d, want runc's message and a non-zero exit", out, code)
	}
}
