package ociruntime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// RT-CT-001, RT-CT-002, RT-CT-003, RT-EX-006 (format): a container that
// writes to both streams and exits 43.
func TestContainerExitCodeAndLogs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	sb := h.sandbox(nil)
	c := h.create(sb.Id, &runtimev1.ContainerConfig{
		Name:        "exit43",
		Command:     []string{"sh", "-c", "echo out; echo err >&2; exit 43"},
		Labels:      map[string]string{"role": "test"},
		Annotations: map[string]string{"a": "b"},
	})
	if c.State != runtimev1.ContainerState_CONTAINER_CREATED || c.Config.Labels["role"] != "test" || c.Config.Annotations["a"] != "b" || c.ImageDigest != "sha256:busybox" {
		t.Fatalf("CreateContainer = %v, want CREATED with its labels, annotations and digest", c)
	}
	list, err := h.p.ListContainers(ctx, &runtimev1.ListContainersRequest{SandboxId: sb.Id, Labels: map[string]string{"role": "test"}})
	if err != nil || len(list.Containers) != 1 || list.Containers[0].Id != c.Id {
		t.Fatalf("ListContainers = %v, %v; want the container", list, err)
	}
	// Several waiters, started before the container, all get the exit.
	var wg sync.WaitGroup
	exits := make([]*runtimev1.ExitStatus, 3)
	for i := range exits {
		wg.Go(func() {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			ex, err := h.p.WaitContainer(wctx, &runtimev1.WaitContainerRequest{Id: c.Id})
			if err != nil {
				t.Errorf("WaitContainer: %v", err)
			}
			exits[i] = ex
		})
	}
	if _, err := h.p.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: c.Id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	wg.Wait()
	for i, ex := range exits {
		if ex.GetExitCode() != 43 || ex.GetSignal() != 0 || ex.GetOomKilled() || ex.GetReason() != "Error" {
			t.Errorf("waiter %d: exit = %v, want code 43, no signal, not OOM, reason Error", i, ex)
		}
	}
	got := h.inspect(c.Id)
	if got.State != runtimev1.ContainerState_CONTAINER_EXITED || got.StartedAt == 0 || got.Exit.GetFinishedAt() < got.StartedAt || got.StartedAt < got.CreatedAt {
		t.Errorf("InspectContainer = %v, want EXITED with created <= started <= finished", got)
	}
	if got.Pid != 0 {
		t.Errorf("exited container pid = %d, want 0", got.Pid)
	}
	if _, err := h.p.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: c.Id}); !isClass(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("StartContainer(exited) = %v, want FailedPrecondition", err)
	}

	lines := h.logs(&runtimev1.LogsRequest{Id: c.Id})
	var streams []string
	for _, l := range lines {
		streams = append(streams, l.Stream+":"+string(l.Line))
		if l.Timestamp < got.StartedAt-int64(time.Second) || l.Timestamp > got.Exit.FinishedAt {
			t.Errorf("log line %q at %d, outside the container's run %d..%d", l.Line, l.Timestamp, got.StartedAt, got.Exit.FinishedAt)
		}
	}
	if strings.Join(streams, ",") != "stdout:out,stderr:err" && strings.Join(streams, ",") != "stderr:err,stdout:out" {
		t.Errorf("logs = %v, want stdout:out and stderr:err", streams)
	}
	// The file itself is CRI format.
	f, err := os.Open(got.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	criLine := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) F (out|err)$`)
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		if !criLine.MatchString(sc.Text()) {
			t.Errorf("log file line %q is not a CRI log line", sc.Text())
		}
	}
	if n != 2 {
		t.Errorf("log file has %d lines, want 2", n)
	}
	// Tail and since.
	if tail := h.logs(&runtimev1.LogsRequest{Id: c.Id, Tail: 1}); len(tail) != 1 || tail[0].Timestamp != lines[1].Timestamp {
		t.Errorf("Logs(tail=1) = %v, want the last line", tail)
	}
	if since := h.logs(&runtimev1.LogsRequest{Id: c.Id, Since: got.Exit.FinishedAt + 1}); len(since) != 0 {
		t.Errorf("Logs(since after exit) = %v, want none", since)
	}
	// Follow on an exited container returns.
	if all := h.logs(&runtimev1.LogsRequest{Id: c.Id, Follow: true}); len(all) != 2 {
		t.Errorf("Logs(follow) = %v, want 2 lines", all)
	}

	// Removing an exited container; then it is gone.
	if _, err := h.p.RemoveContainer(ctx, &runtimev1.RemoveContainerRequest{Id: c.Id}); err != nil {
		t.Fatalf("RemoveContainer(exited): %v", err)
	}
	if _, err := h.p.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: c.Id}); !errdefs.IsNotFound(err) {
		t.Errorf("InspectContainer(removed) = %v, want NotFound", err)
	}
}

// RT-CT-004: a process that traps SIGTERM is killed by SIGKILL after the
// timeout; one that exits on SIGTERM does so before it.
func TestStopContainer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	sb := h.sandbox(nil)
	// sh waits on a background sleep so that a trapped signal runs its
	// handler at once.
	stubborn := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "stubborn",
		Command: []string{"sh", "-c", "trap 'echo ignored' TERM; echo ready; while :; do sleep 1000 & wait $!; done"}})
	polite := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "polite",
		Command: []string{"sh", "-c", "trap 'exit 42' TERM; echo ready; sleep 1000 & wait $!"}})
	for _, c := range []*runtimev1.Container{stubborn, polite} {
		waitFor(t, c.Config.Name+" ready", 10*time.Second, func() bool {
			return len(h.logs(&runtimev1.LogsRequest{Id: c.Id})) > 0
		})
		if got := h.inspect(c.Id); got.State != runtimev1.ContainerState_CONTAINER_RUNNING || got.Pid <= 0 {
			t.Fatalf("%s: %v, want RUNNING with a pid", c.Config.Name, got)
		}
	}

	start := time.Now()
	if _, err := h.p.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: polite.Id, TimeoutSeconds: 30}); err != nil {
		t.Fatalf("StopContainer(polite): %v", err)
	}
	if ex := h.inspect(polite.Id).Exit; ex.GetExitCode() != 42 || ex.GetSignal() != 0 {
		t.Errorf("polite exit = %v, want 42 from its TERM handler", ex)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("StopContainer(polite) took %s; the process exits on SIGTERM", d)
	}

	if _, err := h.p.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: stubborn.Id, TimeoutSeconds: 1}); err != nil {
		t.Fatalf("StopContainer(stubborn): %v", err)
	}
	ex := h.inspect(stubborn.Id).Exit
	if ex.GetSignal() != 9 || ex.GetExitCode() != 137 {
		t.Errorf("stubborn exit = %v, want SIGKILL (137)", ex)
	}
	lines := h.logs(&runtimev1.LogsRequest{Id: stubborn.Id})
	if len(lines) < 2 || string(lines[1].Line) != "ignored" {
		t.Errorf("stubborn logs = %v, want its TERM handler to have run before the kill", lines)
	}
	// Stopping again, and stopping a missing container, succeed.
	for _, id := range []string{stubborn.Id, "0123456789abcdef01234567"} {
		if _, err := h.p.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: id, TimeoutSeconds: 1}); err != nil {
			t.Errorf("StopContainer(%s) again = %v, want OK", id, err)
		}
	}
}

// RT-CT-005: Signal delivers a signal; an unknown one is InvalidArgument.
func TestSignalContainer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "sig",
		Command: []string{"sh", "-c", "trap 'echo usr1 >> /tmp/marker' USR1; trap 'echo usr2 >> /tmp/marker' USR2; echo ready; while :; do sleep 1000 & wait $!; done"}})
	waitFor(t, "ready", 10*time.Second, func() bool { return len(h.logs(&runtimev1.LogsRequest{Id: c.Id})) > 0 })
	// One at a time: standard signals do not queue, so two pending USR1
	// would be one.
	for i, sig := range []string{"SIGUSR1", "usr2", "10"} {
		if _, err := h.p.SignalContainer(ctx, &runtimev1.SignalContainerRequest{Id: c.Id, Signal: sig}); err != nil {
			t.Fatalf("SignalContainer(%s): %v", sig, err)
		}
		waitFor(t, fmt.Sprintf("marker %d", i+1), 10*time.Second, func() bool {
			out, _, _ := h.exec(c.Id, "cat", "/tmp/marker")
			return strings.Count(out, "\n") == i+1
		})
	}
	out, _, _ := h.exec(c.Id, "cat", "/tmp/marker")
	if out != "usr1\nusr2\nusr1\n" {
		t.Errorf("marker = %q, want usr1 usr2 usr1", out)
	}
	for _, bad := range []string{"SIGNOPE", "0", "65", "RTMIN+99", ""} {
		if _, err := h.p.SignalContainer(ctx, &runtimev1.SignalContainerRequest{Id: c.Id, Signal: bad}); !isClass(err, errdefs.ErrInvalidArgument) {
			t.Errorf("SignalContainer(%q) = %v, want InvalidArgument", bad, err)
		}
	}
	if _, err := h.p.SignalContainer(ctx, &runtimev1.SignalContainerRequest{Id: "0123456789abcdef01234567", Signal: "KILL"}); !errdefs.IsNotFound(err) {
		t.Errorf("SignalContainer(missing) = %v, want NotFound", err)
	}
	if _, err := h.p.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: c.Id, Signal: "SIGBOGUS"}); !isClass(err, errdefs.ErrInvalidArgument) {
		t.Errorf("StopContainer(signal SIGBOGUS) = %v, want InvalidArgument", err)
	}
	// A custom stop signal: KILL right away.
	if _, err := h.p.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: c.Id, Signal: "SIGKILL", TimeoutSeconds: 30}); err != nil {
		t.Fatal(err)
	}
	if ex := h.inspect(c.Id).Exit; ex.GetSignal() != 9 {
		t.Errorf("exit after StopContainer(SIGKILL) = %v, want signal 9", ex)
	}
	if _, err := h.p.SignalContainer(ctx, &runtimev1.SignalContainerRequest{Id: c.Id, Signal: "USR1"}); !isClass(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("SignalContainer(exited) = %v, want FailedPrecondition", err)
	}
}

// RT-CT-006, RT-ID-001, RT-ID-002, RT-ID-003: remove in every state,
// idempotence, NotFound typing, duplicate names, failed starts.
func TestRemoveAndErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	sb := h.sandbox(nil)
	created := h.create(sb.Id, &runtimev1.ContainerConfig{Name: "created", Command: []string{"true"}})
	running := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "running", Command: []string{"sleep", "1000"}})
	exited := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "exited", Command: []string{"true"}})
	if ex := h.wait(exited.Id); ex.ExitCode != 0 || ex.Reason != "Completed" {
		t.Errorf("exit of true = %v, want 0 Completed", ex)
	}

	if _, err := h.p.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: &runtimev1.ContainerConfig{Name: "running", Image: "busybox", Command: []string{"true"}}}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("CreateContainer(duplicate name) = %v, want AlreadyExists", err)
	}
	if _, err := h.p.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: &runtimev1.ContainerConfig{Name: "noimage", Image: "nope"}}); !errdefs.IsNotFound(err) {
		t.Errorf("CreateContainer(unknown image) = %v, want NotFound", err)
	}

	// A start that fails (no such binary) leaves the container exited
	// with a reason, and it can be removed.
	broken := h.create(sb.Id, &runtimev1.ContainerConfig{Name: "broken", Command: []string{"/no/such/binary"}})
	if _, err := h.p.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: broken.Id}); !isClass(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "/no/such/binary") {
		t.Errorf("StartContainer(missing binary) = %v, want FailedPrecondition naming the binary", err)
	}
	if got := h.inspect(broken.Id); got.State != runtimev1.ContainerState_CONTAINER_EXITED || got.Exit.GetReason() != "StartError" || got.Exit.GetExitCode() != 128 {
		t.Errorf("broken container = %v, want EXITED with reason StartError", got)
	}

	missing := "0123456789abcdef01234567"
	notFound := map[string]error{}
	_, notFound["InspectContainer"] = h.p.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: missing})
	_, notFound["StartContainer"] = h.p.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: missing})
	_, notFound["ExecSync"] = h.p.ExecSync(ctx, &runtimev1.ExecSyncRequest{Id: missing, Command: []string{"true"}})
	_, notFound["WaitContainer"] = h.p.WaitContainer(ctx, &runtimev1.WaitContainerRequest{Id: missing})
	_, notFound["Stats"] = h.p.Stats(ctx, &runtimev1.StatsRequest{Id: missing})
	_, notFound["UpdateResources"] = h.p.UpdateResources(ctx, &runtimev1.UpdateResourcesRequest{Id: missing, Resources: &runtimev1.Resources{}})
	notFound["Logs"] = h.p.Logs(&runtimev1.LogsRequest{Id: missing}, &collectStream[runtimev1.LogLine]{ctx: ctx})
	notFound["Exec"] = h.p.Exec(&bidiStream{collectStream: collectStream[runtimev1.ExecOutput]{ctx: ctx}, in: startOnly(missing)})
	for verb, err := range notFound {
		if !errdefs.IsNotFound(err) {
			t.Errorf("%s(missing) = %v, want NotFound", verb, err)
		}
	}

	if _, err := h.p.RemoveContainer(ctx, &runtimev1.RemoveContainerRequest{Id: running.Id}); !isClass(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("RemoveContainer(running, no force) = %v, want FailedPrecondition", err)
	}
	for _, id := range []string{created.Id, running.Id, exited.Id, broken.Id, missing, created.Id} {
		if _, err := h.p.RemoveContainer(ctx, &runtimev1.RemoveContainerRequest{Id: id, Force: true}); err != nil {
			t.Errorf("RemoveContainer(%s, force) = %v", id, err)
		}
	}
	list, _ := h.p.ListContainers(ctx, &runtimev1.ListContainersRequest{SandboxId: sb.Id})
	if len(list.Containers) != 0 {
		t.Errorf("ListContainers after removing all = %v", list.Containers)
	}
}

func startOnly(id string) chan *runtimev1.ExecInput {
	ch := make(chan *runtimev1.ExecInput, 1)
	ch <- &runtimev1.ExecInput{Input: &runtimev1.ExecInput_Start{Start: &runtimev1.ExecStart{Id: id, Command: []string{"true"}}}}
	close(ch)
	return ch
}
