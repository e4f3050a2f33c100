package pluginhost_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/paddock-dev/paddock/internal/testlock"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/plugins/errgrpc"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestLaunch(t *testing.T) {
	dir := stateDir(t)
	h, _ := newHost(t, dir)
	inst := launch(t, h, "rt", pluginBin, `{"greeting":"hi"}`)

	if got := info(t, inst); got.Name != "testplugin" || got.Version != "0.0.1" {
		t.Errorf("Info() = %v, want testplugin 0.0.1", got)
	}
	if inst.APIVersion() != "v1" || inst.Info().Name != "testplugin" || inst.PID() == 0 || inst.Reattached() {
		t.Errorf("APIVersion, Info, PID, Reattached = %q, %v, %d, %v; want v1, testplugin, a pid, false",
			inst.APIVersion(), inst.Info(), inst.PID(), inst.Reattached())
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	health, err := rt(t, inst).Health(ctx, &runtimev1.HealthRequest{})
	if err != nil {
		t.Fatalf("Health() = %v", err)
	}
	if ev, err := health.Recv(); err != nil || !ev.Healthy {
		t.Errorf("first health event = %v, %v; want healthy", ev, err)
	}

	// SetConfig got the negotiated version, the configuration and the
	// plugin's own state directory.
	b, err := os.ReadFile(filepath.Join(dir, "plugins", "rt", "setconfig.json"))
	if err != nil {
		t.Fatal(err)
	}
	var seen struct {
		APIVersion string          `json:"apiVersion"`
		Config     json.RawMessage `json:"config"`
		StateDir   string          `json:"stateDir"`
	}
	if err := json.Unmarshal(b, &seen); err != nil {
		t.Fatal(err)
	}
	if seen.APIVersion != "v1" || string(seen.Config) != `{"greeting":"hi"}` || seen.StateDir != filepath.Join(dir, "plugins", "rt") {
		t.Errorf("SetConfig got %s, want v1, the config and %s", b, filepath.Join(dir, "plugins", "rt"))
	}
	if fi, err := os.Stat(seen.StateDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("plugin state dir: %v, %v; want mode 0700", fi.Mode(), err)
	}

	pid := inst.PID()
	kill(t, inst)
	assertGone(t, dir, "rt", pid)
	if _, err := inst.Runtime(); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Runtime() after Kill = %v, want unavailable", err)
	}
}

func TestSocketIsPrivate(t *testing.T) {
	dir := stateDir(t)
	h, _ := newHost(t, dir)
	inst := launch(t, h, "rt", pluginBin, `{}`)

	dirs, files := sockets(t, dir)
	if len(dirs) != 1 || len(files) != 1 {
		t.Fatalf("socket dirs %v, files %v; want one socket in one directory", dirs, files)
	}
	for _, d := range []string{dir, filepath.Join(dir, "sockets"), dirs[0]} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, %v; want 0700", d, fi.Mode(), err)
		}
	}
	fi, err := os.Lstat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		t.Errorf("%s is a %v, want a socket", files[0], fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm&^0o660 != 0 {
		t.Errorf("socket mode %v, want at most 0660", perm)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		t.Errorf("socket owned by %d:%d, want %d:%d", st.Uid, st.Gid, os.Geteuid(), os.Getegid())
	}

	// AutoMTLS: a client without the host's certificate gets nowhere.
	conn, err := grpc.NewClient("unix://"+files[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := runtimev1.NewClient(conn).Info(ctx, &runtimev1.InfoRequest{}); err == nil {
		t.Error("Info over a connection without TLS succeeded")
	}

	kill(t, inst)
	if dirs, files := sockets(t, dir); len(dirs)+len(files) > 0 {
		t.Errorf("after Kill: socket dirs %v, files %v", dirs, files)
	}
}

func TestVersionMismatchRefused(t *testing.T) {
	dir := stateDir(t)
	h, _ := newHost(t, dir)
	path := scripts["v9"]
	_, err := h.Launch(t.Context(), pluginhost.RuntimeKind, "old", path, []byte(`{}`))
	want := fmt.Sprintf(`plugin "old" at %s speaks API versions [v9]; this host speaks [v1]: upgrade the plugin or the host`, path)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || err.Error() != want {
		t.Fatalf("Launch(v9 plugin) = %v\nwant failed precondition %q", err, want)
	}
	assertGone(t, dir, "old")
}

func TestInvalidConfig(t *testing.T) {
	dir := stateDir(t)
	h, _ := newHost(t, dir)
	_, err := h.Launch(t.Context(), pluginhost.RuntimeKind, "picky", pluginBin, []byte(`{"invalid":true}`))
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `plugin "picky"`) || !strings.Contains(err.Error(), "config.invalid: is set: remove it") {
		t.Fatalf("Launch(invalid config) = %v, want invalid naming the plugin and the field", err)
	}
	assertGone(t, dir, "picky")
}

func TestHandshakeFailures(t *testing.T) {
	otherKind := pluginhost.RuntimeKind
	otherKind.Name = "network"
	otherKind.Handshake.MagicCookieKey = "PADDOCK_NETWORK_PLUGIN"
	otherKind.Handshake.MagicCookieValue = "not-the-runtime-cookie"

	tests := []struct {
		name   string
		kind   pluginhost.Kind
		path   string
		config string
		class  error
		want   []string // in the error
	}{
		{"not a plugin", pluginhost.RuntimeKind, "/bin/true", "{}", errdefs.ErrFailedPrecondition,
			[]string{`plugin "p" at /bin/true`, "exited (exit status 0) before printing the go-plugin handshake", "not a runtime plugin"}},
		{"prints something else", pluginhost.RuntimeKind, scripts["garbage"], "{}", errdefs.ErrFailedPrecondition,
			[]string{scripts["garbage"], `printed "hello, I am not a plugin" instead of the go-plugin handshake`}},
		{"exits at once", pluginhost.RuntimeKind, scripts["exit"], "{}", errdefs.ErrFailedPrecondition,
			[]string{scripts["exit"], "exited (exit status 3)", "refusing to start (TESTPLUGIN_MODE=exit)"}},
		{"wrong kind", otherKind, pluginBin, "{}", errdefs.ErrFailedPrecondition,
			[]string{pluginBin, "does not know the network plugin magic cookie (PADDOCK_NETWORK_PLUGIN)", "This binary is a plugin"}},
		{"no handshake", pluginhost.RuntimeKind, scripts["nohandshake"], "{}", errdefs.ErrUnavailable,
			[]string{scripts["nohandshake"], "did not print the go-plugin handshake within 1s"}},
		{"cannot be executed", pluginhost.RuntimeKind, scripts["noexec"], "{}", errdefs.ErrFailedPrecondition,
			[]string{scripts["noexec"], "cannot be started", "exec format error"}},
		{"missing binary", pluginhost.RuntimeKind, "/nonexistent/plugin", "{}", errdefs.ErrNotFound,
			[]string{`plugin "p": binary /nonexistent/plugin`}},
		{"crashes while configured", pluginhost.RuntimeKind, pluginBin, `{"crash":true}`, errdefs.ErrUnavailable,
			[]string{pluginBin, "exited during SetConfig"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := stateDir(t)
			h, _ := newHost(t, dir, func(c *pluginhost.Config) { c.HandshakeTimeout = time.Second })
			inst, err := h.Launch(t.Context(), tt.kind, "p", tt.path, []byte(tt.config))
			if err == nil {
				kill(t, inst)
				t.Fatalf("Launch(%s) succeeded", tt.path)
			}
			t.Logf("Launch(%s) = %v", tt.path, err)
			if !errors.Is(err, tt.class) {
				t.Errorf("Launch(%s) = %v, want class %v", tt.path, err, tt.class)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Launch(%s) = %v\nwant it to say %q", tt.path, err, w)
				}
			}
			assertGone(t, dir, "p")
		})
	}
}

func TestLaunchTwiceAndLockedStateDir(t *testing.T) {
	dir := stateDir(t)
	h, _ := newHost(t, dir)
	launch(t, h, "rt", pluginBin, `{}`)
	if _, err := h.Launch(t.Context(), pluginhost.RuntimeKind, "rt", pluginBin, nil); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second Launch(rt) = %v, want already exists", err)
	}
	if _, err := h.Launch(t.Context(), pluginhost.RuntimeKind, "../x", pluginBin, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Launch(../x) = %v, want invalid", err)
	}
	if h2, err := pluginhost.New(pluginhost.Config{StateDir: dir}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		if h2 != nil {
			h2.Close()
		}
		t.Errorf("a second New on a state dir in use = %v, want failed precondition", err)
	}
}

// events records a host's events.
type events struct {
	mu   sync.Mutex
	list []timedEvent
}

type timedEvent struct {
	pluginhost.Event
	at time.Time
}

func (e *events) add(ev pluginhost.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, timedEvent{ev, time.Now()})
}

func (e *events) get() []timedEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]timedEvent(nil), e.list...)
}

func TestCrashedPluginRestartsWithBackoff(t *testing.T) {
	dir := stateDir(t)
	var evs events
	h, _ := newHost(t, dir, func(c *pluginhost.Config) { c.OnEvent = evs.add })
	counter := filepath.Join(dir, "crashes")
	inst := launch(t, h, "crashy", pluginBin, fmt.Sprintf(`{"crashAfter":"300ms","crashTimes":2,"counterFile":%q}`, counter))
	first := inst.PID()

	eventually(t, 10*time.Second, "two restarts", func() bool { return inst.Restarts() == 2 && inst.PID() != 0 })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := inst.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if got := info(t, inst); got.Name != "testplugin" {
		t.Errorf("Info() after restarts = %v", got)
	}
	if inst.PID() == first {
		t.Errorf("PID() = %d after restarts, the crashed process's", first)
	}

	// Exited, Restarted, Exited, Restarted; each restart after a back-off
	// twice the last.
	var got []string
	list := evs.get()
	for _, e := range list {
		got = append(got, e.Type.String())
	}
	if strings.Join(got, " ") != "exited restarted exited restarted" {
		t.Fatalf("events %v, want exited restarted exited restarted", got)
	}
	for n, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		exited, restarted := list[2*n], list[2*n+1]
		if gap := restarted.at.Sub(exited.at); gap < want {
			t.Errorf("restart %d came %v after the exit, want at least %v", n+1, gap, want)
		}
		if restarted.Restarts != n+1 || restarted.PID == exited.PID || restarted.Instance != inst {
			t.Errorf("restart event %d = %+v", n+1, restarted.Event)
		}
	}
}

func TestKilledPluginRestarts(t *testing.T) {
	dir := stateDir(t)
	var evs events
	h, _ := newHost(t, dir, func(c *pluginhost.Config) { c.OnEvent = evs.add })
	inst := launch(t, h, "rt", pluginBin, `{}`)
	old, oldClient := inst.PID(), rt(t, inst)

	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the killed plugin reaped", func() bool { return !alive(old) })
	// A client of the dead process says so.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := oldClient.Info(ctx, &runtimev1.InfoRequest{}); !errgrpc.IsPluginExited(err) || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Info() on the dead process = %v, want unavailable, plugin exited", err)
	}
	eventually(t, 5*time.Second, "a restart", func() bool { return inst.Restarts() == 1 })
	if err := inst.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if inst.Restarts() != 1 || inst.PID() == old || inst.PID() == 0 {
		t.Errorf("Restarts, PID = %d, %d; want 1 and a new pid (the old was %d)", inst.Restarts(), inst.PID(), old)
	}
	info(t, inst)
	if list := evs.get(); len(list) != 2 || list[0].Type != pluginhost.EventExited || list[0].PID != old || list[1].Type != pluginhost.EventRestarted {
		t.Errorf("events = %+v, want exited (pid %d) then restarted", list, old)
	}
}

func TestPluginLogsReachTheHostLog(t *testing.T) {
	dir := stateDir(t)
	h, logs := newHost(t, dir)
	inst := launch(t, h, "chatty", pluginBin, `{}`)
	info(t, inst)

	// The plugin's hclog JSON line {"@level":"info","@message":"info
	// called","@module":"testplugin","pid":N} comes out as a record of
	// the host's logger.
	want := func(r map[string]any) bool {
		return r["msg"] == "info called" && r["plugin"] == "chatty" && r["level"] == "INFO" &&
			r["module"] == "testplugin" && r["pid"] == float64(inst.PID())
	}
	eventually(t, 5*time.Second, "the plugin's log line in the host's log", func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil && want(r) {
				return true
			}
		}
		return false
	})
}

// TestOutputCounted checks Instance.Output: what a plugin writes to
// stdout after its handshake, by either path, and to stderr.
func TestOutputCounted(t *testing.T) {
	dir := stateDir(t)
	h, _ := newHost(t, dir)
	quiet := launch(t, h, "quiet", pluginBin, `{}`)
	noisy := launch(t, h, "noisy", pluginBin, `{"stdout":"abc\n","rawStdout":"defgh\n"}`)
	eventually(t, 5*time.Second, "the noisy plugin's 10 bytes on stdout counted", func() bool {
		return noisy.Output().Stdout == 10
	})
	eventually(t, 5*time.Second, "the plugins' logs counted", func() bool {
		return quiet.Output().Stderr > 0 && noisy.Output().Stderr > 0
	})
	if o := quiet.Output(); o.Stdout != 0 {
		t.Errorf("quiet plugin Output().Stdout = %d, want 0", o.Stdout)
	}
}

func TestReattachAfterClose(t *testing.T) {
	dir := stateDir(t)
	h1, _ := newHost(t, dir)
	inst1, err := h1.Launch(t.Context(), pluginhost.RuntimeKind, "rt", pluginBin, []byte(`{"logEvery":"20ms"}`))
	if err != nil {
		t.Fatal(err)
	}
	pid := inst1.PID()
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) }) // should the test fail half-way
	if err := h1.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if !alive(pid) {
		t.Fatal("the plugin died with its host's Close")
	}
	if _, err := inst1.Runtime(); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Runtime() of a closed Instance = %v, want unavailable", err)
	}

	h2, logs := newHost(t, dir)
	inst2 := launch(t, h2, "rt", pluginBin, `{"logEvery":"20ms"}`)
	if inst2.PID() != pid || !inst2.Reattached() {
		t.Fatalf("PID, Reattached = %d, %v; want %d, true", inst2.PID(), inst2.Reattached(), pid)
	}
	if got := info(t, inst2); got.Name != "testplugin" {
		t.Errorf("Info() after reattach = %v", got)
	}
	if inst2.APIVersion() != "v1" {
		t.Errorf("APIVersion() = %q after reattach, want v1", inst2.APIVersion())
	}
	// The plugin's log keeps reaching the (new) host.
	eventually(t, 5*time.Second, "ticks in the new host's log", func() bool {
		return strings.Count(logs.String(), `"msg":"tick"`) >= 3
	})

	kill(t, inst2)
	assertGone(t, dir, "rt", pid)
}

func TestReattachAfterHostSIGKILL(t *testing.T) {
	// The plugin outlives its host here: keep the conformance suite's
	// leak check (another package) from counting it.
	testlock.Machine(t)
	dir := stateDir(t)
	cmd := exec.Command(hostBin, "-state", dir, "-plugin", pluginBin, "-name", "rt", "-config", `{"logEvery":"20ms"}`)
	hostLog := &syncBuffer{}
	cmd.Stderr = hostLog
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
	}()
	var pid int
	select {
	case line := <-ready:
		if _, err := fmt.Sscanf(line, "ready %d", &pid); err != nil {
			t.Fatalf("testhost said %q (%v); its log:\n%s", line, err, hostLog)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("testhost did not get ready; its log:\n%s", hostLog)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) }) // should the test fail half-way

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// The plugin outlives its host and keeps logging: its stderr is not a
	// pipe into the dead host (that would kill it with SIGPIPE).
	logFile := filepath.Join(dir, "logs", "rt.log")
	size := func() int64 {
		fi, err := os.Stat(logFile)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	before := size()
	eventually(t, 5*time.Second, "the plugin logging after its host died", func() bool { return size() > before+200 })
	if !alive(pid) {
		t.Fatalf("the plugin %d died with its host", pid)
	}

	h, _ := newHost(t, dir)
	inst := launch(t, h, "rt", pluginBin, `{"logEvery":"20ms"}`)
	if inst.PID() != pid || !inst.Reattached() {
		t.Fatalf("PID, Reattached = %d, %v; want %d, true", inst.PID(), inst.Reattached(), pid)
	}
	if got := info(t, inst); got.Name != "testplugin" {
		t.Errorf("Info() after reattach = %v", got)
	}
	kill(t, inst)
	assertGone(t, dir, "rt", pid)
}

func TestNewBinaryReplacesRecordedProcess(t *testing.T) {
	dir := stateDir(t)
	h1, _ := newHost(t, dir)
	inst1, err := h1.Launch(t.Context(), pluginhost.RuntimeKind, "rt", pluginBin, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	old := inst1.PID()
	t.Cleanup(func() { syscall.Kill(old, syscall.SIGKILL) })
	h1.Close()

	// The same plugin under another path: an upgrade.
	h2, _ := newHost(t, dir)
	inst2 := launch(t, h2, "rt", scripts["normal"], `{}`)
	if inst2.PID() == old || inst2.Reattached() {
		t.Errorf("PID, Reattached = %d, %v; want a new process, not %d", inst2.PID(), inst2.Reattached(), old)
	}
	eventually(t, 5*time.Second, "the old process gone", func() bool { return !alive(old) })
	info(t, inst2)
}

func TestKillHonoursContext(t *testing.T) {
	dir := stateDir(t)
	h, _ := newHost(t, dir)
	inst := launch(t, h, "rt", pluginBin, `{}`)
	pid := inst.PID()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := inst.Kill(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Kill(canceled) = %v, want canceled", err)
	}
	assertGone(t, dir, "rt", pid)
	if err := inst.Kill(t.Context()); err != nil {
		t.Errorf("second Kill = %v, want nil", err)
	}
}

func TestReattachWithRejectedConfigKeepsPlugin(t *testing.T) {
	dir := stateDir(t)
	h1, _ := newHost(t, dir)
	inst1, err := h1.Launch(t.Context(), pluginhost.RuntimeKind, "rt", pluginBin, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	pid := inst1.PID()
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	h1.Close()

	h2, _ := newHost(t, dir)
	_, err = h2.Launch(t.Context(), pluginhost.RuntimeKind, "rt", pluginBin, []byte(`{"invalid":true}`))
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `plugin "rt" rejected its configuration`) {
		t.Fatalf("Launch(reattach, invalid config) = %v, want invalid naming the plugin", err)
	}
	if !alive(pid) {
		t.Fatal("the running plugin was stopped because a new configuration was invalid")
	}
	inst := launch(t, h2, "rt", pluginBin, `{}`)
	if inst.PID() != pid || !inst.Reattached() {
		t.Errorf("PID, Reattached = %d, %v; want %d, true", inst.PID(), inst.Reattached(), pid)
	}
	info(t, inst)
}
