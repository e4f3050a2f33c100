package shim_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/internal/testbin"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
)

// The shim binary links only the standard library, golang.org/x/sys/unix
// and this package: no gRPC, protobuf, image or plugin code, which is
// what makes it start in a few milliseconds.
func TestShimDependencies(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	cmd := exec.Command(gobin, "list", "-deps", "./cmd/paddock-runc-shim")
	cmd.Dir = testbin.Root(t)
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{
		"golang.org/x/sys/unix":                                            true,
		"github.com/paddock-dev/paddock/runtimes/runc/shim":                true,
		"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim": true,
		"github.com/paddock-dev/paddock/cmd/paddock-runc-shim":             true,
	}
	for _, pkg := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(pkg, "/")
		std := !strings.Contains(first, ".")
		if !std && !allowed[pkg] {
			t.Errorf("the shim binary depends on %s", pkg)
		}
		if pkg == "log/slog" || pkg == "net/http" {
			t.Errorf("the shim binary depends on %s", pkg)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	for _, d := range []shim.Durability{shim.Durable, shim.Buffered} {
		dir := t.TempDir()
		path := filepath.Join(dir, "rec.json")
		for _, content := range []string{"one", "two"} {
			if err := shim.WriteFileAtomic(path, []byte(content), 0o640, d); err != nil {
				t.Fatalf("WriteFileAtomic(%v) = %v", d, err)
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != content {
				t.Errorf("after WriteFileAtomic(%q, %v): %q, %v", content, d, b, err)
			}
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("mode = %v, %v; want 0640", fi.Mode(), err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("files left in the directory: %v, want rec.json only", entries)
		}
		if err := shim.SyncFile(path); err != nil {
			t.Errorf("SyncFile = %v", err)
		}
		if err := shim.WriteFileAtomic(filepath.Join(dir, "missing", "rec.json"), nil, 0o600, d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("WriteFileAtomic into a missing directory = %v, want ErrNotExist", err)
		}
	}
}

// fakeRunc is a stand-in for runc, for the shim's own unit test: "run"
// starts SCRIPT (the container's process) in the background, writes its
// pid to the pid file and returns, as runc run --detach does; "delete"
// succeeds.
const fakeRunc = `#!/bin/sh
pidfile=
while [ $# -gt 0 ]; do
	case "$1" in
	--pid-file) pidfile=$2; shift ;;
	delete) exit 0 ;;
	esac
	shift
done
# FAKE_RUNC_HOLD: something (as a gVisor sandbox does) keeps the failed
# container's output open after this process failed.
[ -n "$FAKE_RUNC_HOLD" ] && { sleep 60 & echo $! > holder.pid; }
[ -n "$FAKE_RUNC_FAIL" ] && { echo '{"level":"error","msg":"no such binary"}' >> runc.log; exit 1; }
# Like runc's, the container outlives this process as its orphan: it
# waits until this shell is gone (so that the shell cannot reap it) and is
# then the shim's to reap, the shim being a subreaper.
/bin/sh -c 'while kill -0 '$$' 2>/dev/null; do sleep 0.01; done; '"$FAKE_RUNC_SCRIPT" &
echo $! > "$pidfile"
`

// runShim runs the shim binary on a container directory whose runc is
// fakeRunc and returns its report, its exit code and the directory.
func runShim(t *testing.T, script string, oomKills int, env ...string) (shim.Ready, int, string) {
	t.Helper()
	dir := t.TempDir()
	runc := filepath.Join(dir, "fake-runc")
	if err := os.WriteFile(runc, []byte(fakeRunc), 0o755); err != nil {
		t.Fatal(err)
	}
	oom := filepath.Join(dir, "memory.oom_control")
	if err := os.WriteFile(oom, []byte("oom_kill_disable 0\noom_kill "+strconv.Itoa(oomKills)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := shim.Config{ID: "c1", Runc: runc, RuncRoot: filepath.Join(dir, "root"), Bundle: filepath.Join(dir, "bundle"),
		LogPath: filepath.Join(dir, "container.log"), LogMaxBytes: 1 << 20, OOMFile: oom, OOMKey: "oom_kill"}
	if err := shim.WriteJSON(filepath.Join(dir, shim.ConfigFile), &cfg, shim.Buffered); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(testbin.Binary(t, "paddock-runc-shim"), dir)
	cmd.Env = append(append(os.Environ(), "FAKE_RUNC_SCRIPT="+script), env...)
	cmd.ExtraFiles = []*os.File{w}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var ready shim.Ready
	line, _ := bufio.NewReader(r).ReadBytes('\n')
	if err := json.Unmarshal(line, &ready); err != nil {
		t.Errorf("report %q: %v", line, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the shim did not exit; its log: %s", stderr.String())
	}
	t.Logf("shim log: %s", stderr.String())
	return ready, cmd.ProcessState.ExitCode(), dir
}

// The shim reports the container's pid, records shim.json, writes the
// output to the CRI log and records the exit: the code, a signal and an
// OOM kill read from the cgroup's counter.
func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		script   string
		oomKills int
		want     shim.Exit
	}{
		{"exit code", "echo out; echo err >&2; exit 7", 0, shim.Exit{ExitCode: 7, Reason: "Error"}},
		{"completed", "echo out; echo err >&2", 0, shim.Exit{ExitCode: 0, Reason: "Completed"}},
		{"oom kill", "echo out; echo err >&2; echo 'oom_kill 1' > memory.oom_control; kill -9 $$", 0, shim.Exit{ExitCode: 137, Signal: 9, OOMKilled: true, Reason: "OOMKilled"}},
		// A shared counter (a gVisor pod's) that counted a kill before the
		// container started: not this container's.
		{"earlier oom kill", "echo out; echo err >&2; exit 7", 1, shim.Exit{ExitCode: 7, Reason: "Error"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ready, code, dir := runShim(t, tc.script, tc.oomKills)
			if ready.Error != "" || ready.Pid <= 0 || ready.StartedAt == 0 || code != 0 {
				t.Fatalf("report = %+v, exit code %d; want a pid and 0", ready, code)
			}
			var st shim.State
			if err := shim.ReadJSON(filepath.Join(dir, shim.StateFile), &st); err != nil || st.InitPid != ready.Pid || st.ShimPid <= 0 || st.StartedAt != ready.StartedAt {
				t.Errorf("shim.json = %+v, %v; want the reported pid and start", st, err)
			}
			var ex shim.Exit
			if err := shim.ReadJSON(filepath.Join(dir, shim.ExitFile), &ex); err != nil {
				t.Fatal(err)
			}
			if ex.ExitCode != tc.want.ExitCode || ex.Signal != tc.want.Signal || ex.OOMKilled != tc.want.OOMKilled || ex.Reason != tc.want.Reason || ex.FinishedAt == 0 {
				t.Errorf("exit.json = %+v, want %+v", ex, tc.want)
			}
			logs, _ := os.ReadFile(filepath.Join(dir, "container.log"))
			if !strings.Contains(string(logs), " stdout F out\n") || !strings.Contains(string(logs), " stderr F err\n") {
				t.Errorf("container log = %q, want out on stdout and err on stderr", logs)
			}
		})
	}
}

// A start that fails is reported with runc's own error, and no exit is
// recorded by the shim (the plugin records the StartError).
func TestRunStartError(t *testing.T) {
	t.Parallel()
	ready, code, dir := runShim(t, "exit 0", 0, "FAKE_RUNC_FAIL=1")
	if ready.Pid != 0 || !strings.Contains(ready.Error, "runc run: no such binary") || code == 0 {
		t.Errorf("report = %+v, exit code %d; want runc's error and a non-zero exit", ready, code)
	}
	for _, f := range []string{shim.StateFile, shim.ExitFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after a failed start: %v, want none", f, err)
		}
	}
}

// A failed start whose output something else keeps open (a gVisor
// sandbox keeps a failed sub-container's stdio) is still reported: the
// shim does not wait for the output to close.
func TestRunStartErrorOutputHeld(t *testing.T) {
	t.Parallel()
	ready, code, dir := runShim(t, "exit 0", 0, "FAKE_RUNC_FAIL=1", "FAKE_RUNC_HOLD=1")
	pid, err := shim.ReadPidFile(filepath.Join(dir, "holder.pid"))
	if err != nil {
		t.Fatalf("the holder's pid: %v", err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	if !shim.Alive(pid, 0) {
		t.Fatalf("the process holding the output exited before the shim did: the test proves nothing")
	}
	if ready.Pid != 0 || !strings.Contains(ready.Error, "runc run: no such binary") || code == 0 {
		t.Errorf("report = %+v, exit code %d; want runc's error and a non-zero exit", ready, code)
	}
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	if code := shim.Run(nil); code != 2 {
		t.Errorf("Run(no arguments) = %d, want 2", code)
	}
}

// The records' JSON is a protocol between plugin and shim versions: the
// records as earlier versions wrote them still decode, and the fields
// are written under the same names.
func TestRecordFormat(t *testing.T) {
	tests := []struct {
		name string
		json string
		into any
		want any
	}{
		{"shim.json", `{"shimPid": 10, "shimStart": 11, "initPid": 12, "initStart": 13, "startedAt": 14}`,
			&shim.State{}, &shim.State{ShimPid: 10, ShimStart: 11, InitPid: 12, InitStart: 13, StartedAt: 14}},
		{"exit.json", `{"exitCode": 137, "signal": 9, "oomKilled": true, "finishedAt": 5, "reason": "OOMKilled", "message": "m"}`,
			&shim.Exit{}, &shim.Exit{ExitCode: 137, Signal: 9, OOMKilled: true, FinishedAt: 5, Reason: "OOMKilled", Message: "m"}},
		{"shim-config.json", `{"id": "c", "runc": "/usr/sbin/runc", "runcRoot": "/s/runc", "bundle": "/s/b", "logPath": "/s/l", "logMaxBytes": 7, "oomFile": "/o", "oomKey": "oom_kill"}`,
			&shim.Config{}, &shim.Config{ID: "c", Runc: "/usr/sbin/runc", RuncRoot: "/s/runc", Bundle: "/s/b", LogPath: "/s/l", LogMaxBytes: 7, OOMFile: "/o", OOMKey: "oom_kill"}},
	}
	for _, tc := range tests {
		path := filepath.Join(t.TempDir(), tc.name)
		if err := os.WriteFile(path, []byte(tc.json), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := shim.ReadJSON(path, tc.into); err != nil {
			t.Fatalf("ReadJSON(%s) = %v", tc.name, err)
		}
		got, _ := json.Marshal(tc.into)
		want, _ := json.Marshal(tc.want)
		if string(got) != string(want) {
			t.Errorf("%s decoded = %s, want %s", tc.name, got, want)
		}
		// Written back, the same keys and values come out.
		var written, original map[string]any
		json.Unmarshal(got, &written)
		json.Unmarshal([]byte(tc.json), &original)
		for k, v := range original {
			if written[k] != v {
				t.Errorf("%s written: %s = %v, want %v", tc.name, k, written[k], v)
			}
		}
	}
}
