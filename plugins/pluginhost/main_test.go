package pluginhost_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/plugins/pluginhost"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// Binaries built by TestMain.
var (
	pluginBin string // internal/testplugin
	hostBin   string // internal/testhost
	scripts   = map[string]string{}
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pluginhost-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	pluginBin, hostBin = filepath.Join(dir, "testplugin"), filepath.Join(dir, "testhost")
	for bin, pkg := range map[string]string{pluginBin: "./internal/testplugin", hostBin: "./internal/testhost"} {
		cmd := exec.Command(goTool(), "build", "-o", bin, pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	// Plugins that misbehave before any configuration can steer them are
	// the same binary under a wrapper that sets its mode.
	for name, body := range map[string]string{
		"normal":      "exec " + pluginBin,
		"v9":          "TESTPLUGIN_MODE=v9 exec " + pluginBin,
		"nohandshake": "TESTPLUGIN_MODE=nohandshake exec " + pluginBin,
		"exit":        "TESTPLUGIN_MODE=exit exec " + pluginBin,
		"garbage":     "echo hello, I am not a plugin; exec sleep 30",
	} {
		p := filepath.Join(dir, name+".sh")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		scripts[name] = p
	}
	// A file marked executable that no kernel can run.
	scripts["noexec"] = filepath.Join(dir, "noexec")
	if err := os.WriteFile(scripts["noexec"], []byte("\x00\x01 not a program"), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := checkNoLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	return code
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// checkNoLeaks fails if goroutines of pluginhost or go-plugin, or plugin
// processes, outlive the tests.
func checkNoLeaks() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var leaked []string
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "paddock/plugins/pluginhost.") || strings.Contains(g, "hashicorp/go-plugin") {
				leaked = append(leaked, g)
			}
		}
		procs := pluginProcs()
		if len(leaked) == 0 && len(procs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaked after the tests: plugin processes %v, goroutines:\n%s", procs, strings.Join(leaked, "\n\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pluginProcs returns the pids of live test plugin processes.
func pluginProcs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A zombie's exe cannot be read: it is gone but for its entry.
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == pluginBin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid is a live, not zombie, process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// stateDir returns a fresh state directory: short, as socket paths under
// it must fit in 107 bytes (t.TempDir's names are long).
func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ph")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// newHost returns a host on dir logging into the returned buffer, closed
// at the end of the test.
func newHost(t *testing.T, dir string, mod ...func(*pluginhost.Config)) (*pluginhost.Host, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg := pluginhost.Config{
		StateDir: dir,
		Logger:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range mod {
		f(&cfg)
	}
	h, err := pluginhost.New(cfg)
	if err != nil {
		t.Fatalf("New(%s) = %v", dir, err)
	}
	t.Cleanup(func() {
		h.Close()
		if t.Failed() {
			t.Logf("host log:\n%s", logs)
		}
	})
	return h, logs
}

// launch launches a plugin that the test kills at its end.
func launch(t *testing.T, h *pluginhost.Host, name, path, config string) *pluginhost.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	inst, err := h.Launch(ctx, pluginhost.RuntimeKind, name, path, []byte(config))
	if err != nil {
		t.Fatalf("Launch(%s, %s) = %v", name, path, err)
	}
	t.Cleanup(func() { kill(t, inst) })
	return inst
}

func kill(t *testing.T, inst *pluginhost.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := inst.Kill(ctx); err != nil {
		t.Errorf("Kill(%s) = %v", inst.Name(), err)
	}
}

// rt returns the runtime client of inst's current process.
func rt(t *testing.T, inst *pluginhost.Instance) *runtimev1.Client {
	t.Helper()
	c, err := inst.Runtime()
	if err != nil {
		t.Fatalf("Runtime() = %v", err)
	}
	return c
}

// info calls Info on the plugin's current process.
func info(t *testing.T, inst *pluginhost.Instance) *runtimev1.InfoResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := rt(t, inst).Info(ctx, &runtimev1.InfoRequest{})
	if err != nil {
		t.Fatalf("Info() = %v", err)
	}
	return resp
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sockets returns the socket directories and files under dir.
func sockets(t *testing.T, dir string) (dirs, files []string) {
	t.Helper()
	dirs, _ = filepath.Glob(filepath.Join(dir, "sockets", "*"))
	files, _ = filepath.Glob(filepath.Join(dir, "sockets", "*", "*"))
	return dirs, files
}

// assertGone checks that nothing of a plugin is left: no process, socket
// or record.
func assertGone(t *testing.T, dir, name string, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("plugin process %d still runs", pid)
		}
	}
	if procs := pluginProcs(); len(procs) > 0 {
		t.Errorf("plugin processes %v still run", procs)
	}
	if dirs, _ := sockets(t, dir); len(dirs) > 0 {
		t.Errorf("socket directories left: %v", dirs)
	}
	if _, err := os.Stat(filepath.Join(dir, "records", name+".json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record of %s left (stat: %v)", name, err)
	}
}
