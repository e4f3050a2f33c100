package runtimetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// The cases about the plugin as a process: its handshake, shutdown,
// socket and output (RT-HS-001, -005, -006, -007).

// handshakeWithin is how long a plugin may take to print its handshake.
const handshakeWithin = 10 * time.Second

// pluginEnv returns this process's environment without go-plugin's
// variables and the runtime cookie, plus extra.
func pluginEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PLUGIN_") || strings.HasPrefix(kv, runtimev1.Handshake.MagicCookieKey+"=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// handshake starts the plugin binary with the cookie, as go-plugin's host
// does (without AutoMTLS, so that the suite can speak to it in plain
// gRPC), and checks its handshake line and that the address in it serves.
func handshake(t *T) {
	dir := t.tempDir("", "pdhs")
	sockDir := filepath.Join(dir, "sock")
	if err := os.Mkdir(sockDir, 0o700); err != nil {
		t.Fatalf("socket directory: %v", err)
	}
	cmd := exec.Command(t.env.cfg.Target.PluginPath())
	cmd.Dir = dir
	cmd.Env = pluginEnv(
		runtimev1.Handshake.MagicCookieKey+"="+runtimev1.Handshake.MagicCookieValue,
		fmt.Sprintf("PLUGIN_PROTOCOL_VERSIONS=%d", runtimev1.ProtocolVersion),
		"PLUGIN_UNIX_SOCKET_DIR="+sockDir,
		"TMPDIR="+dir,
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("stdout pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait() // after the reader is done: Wait closes the pipe
		}
	}
	t.Cleanup(stop)
	var line string
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("the plugin started with the cookie closed stdout without a handshake line; stderr: %q", stderr.String())
		}
		line = l
	case <-time.After(handshakeWithin):
		t.Fatalf("no handshake line on stdout within %v", handshakeWithin)
	case <-t.Context().Done():
		t.Fatalf("waiting for the handshake: %v", t.Context().Err())
	}
	addr := checkHandshakeLine(t, line)
	if addr != "" {
		conn, err := grpc.NewClient("unix:"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		defer conn.Close()
		h := grpc_health_v1.NewHealthClient(conn)
		t.Eventually(5*time.Second, "the handshake's address serving grpc health of service plugin", func() bool {
			r, err := h.Check(t.Context(), &grpc_health_v1.HealthCheckRequest{Service: "plugin"})
			return err == nil && r.Status == grpc_health_v1.HealthCheckResponse_SERVING
		})
	}
	stop()
	extra := 0
	for l := range lines {
		extra++
		t.Errorf("a second line on stdout after the handshake: %q", l)
	}
	if extra == 0 {
		t.Logf("handshake: %s", line)
	}

	// Without the cookie: a message for a human, a failed exit, no socket.
	bare := t.tempDir("", "pdhs")
	bareSockets := filepath.Join(bare, "sock")
	if err := os.Mkdir(bareSockets, 0o700); err != nil {
		t.Fatalf("socket directory: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), handshakeWithin)
	defer cancel()
	cmd = exec.CommandContext(ctx, t.env.cfg.Target.PluginPath())
	cmd.Dir = bare
	cmd.Env = pluginEnv(fmt.Sprintf("PLUGIN_PROTOCOL_VERSIONS=%d", runtimev1.ProtocolVersion), "PLUGIN_UNIX_SOCKET_DIR="+bareSockets, "TMPDIR="+bare)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Errorf("started without the cookie, the plugin did not exit within %v", handshakeWithin)
	case err == nil:
		t.Errorf("started without the cookie, the plugin exited 0; want a failure")
	case !errors.As(err, &exitErr) || exitErr.ExitCode() <= 0:
		t.Errorf("started without the cookie: %v; want a non-zero exit", err)
	}
	if msg := strings.TrimSpace(errOut.String()); len(msg) < 10 || !utf8.ValidString(msg) || !strings.Contains(msg, " ") {
		t.Errorf("started without the cookie, the plugin said %q on stderr; want a message for a human", msg)
	}
	if strings.Contains(out.String(), "|unix|") || strings.Contains(out.String(), "|tcp|") {
		t.Errorf("started without the cookie, the plugin printed a handshake: %q", out.String())
	}
	if socks := socketsUnder(bare); len(socks) > 0 {
		t.Errorf("started without the cookie, the plugin created sockets %v", socks)
	}
}

// checkHandshakeLine checks go-plugin's handshake line
// CORE|APP|unix|ADDR|grpc[|CERT] and returns ADDR ("" if the line is
// wrong).
func checkHandshakeLine(t *T, line string) string {
	f := strings.Split(line, "|")
	if len(f) < 5 {
		t.Errorf("handshake line %q: want CORE|APP|unix|PATH|grpc", line)
		return ""
	}
	ok := true
	want := func(what, got, want string) {
		if got != want {
			ok = false
			t.Errorf("handshake line %q: %s is %q, want %q", line, what, got, want)
		}
	}
	want("go-plugin core protocol version", f[0], "1")
	want("application protocol version", f[1], strconv.Itoa(runtimev1.ProtocolVersion))
	want("network", f[2], "unix")
	want("protocol", f[4], "grpc")
	if fi, err := os.Lstat(f[3]); err != nil || fi.Mode().Type() != fs.ModeSocket {
		ok = false
		t.Errorf("handshake line %q: address %s is not a socket file (%v)", line, f[3], err)
	}
	if !ok {
		return ""
	}
	return f[3]
}

// socketsUnder returns the unix socket files at or below dir.
func socketsUnder(dir string) []string {
	var socks []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type() == fs.ModeSocket {
			socks = append(socks, p)
		}
		return nil
	})
	return socks
}

// processAlive reports whether pid is a process that has not exited.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// shutdown runs a container under a second instance of the plugin, kills
// the instance as the agent does and checks that the process exited in
// time, the container kept running and no socket is left. The instance is
// launched again on the same state afterwards to remove the container.
func shutdown(t *T) {
	target := t.env.cfg.Target
	state := t.tempDir("", "pdhs")
	inst, err := target.Launch(t.Context(), state)
	if err != nil {
		t.Fatalf("launch a second instance of the plugin: %v", err)
	}
	killed := false
	var sb *runtimev1.Sandbox
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
		defer cancel()
		cur := inst
		if killed {
			if sb == nil {
				return
			}
			var err error
			if cur, err = target.Launch(ctx, state); err != nil {
				t.Errorf("cleanup: launch the plugin again on its state to remove the sandbox: %v", err)
				return
			}
		}
		if sb != nil {
			removeSandboxVia(ctx, t, cur.Client(), sb)
		}
		if err := cur.Kill(ctx); err != nil {
			t.Errorf("cleanup: kill the second instance: %v", err)
		}
	})
	c := inst.Client()
	if c == nil {
		t.Fatalf("the second instance does not answer")
	}
	if err := t.env.importImage(t.Context(), c); err != nil {
		t.Fatalf("second instance: %v", err)
	}
	resp, err := c.CreateSandbox(t.Context(), &runtimev1.CreateSandboxRequest{Config: t.sandboxConfig()})
	if err != nil {
		t.Fatalf("second instance: CreateSandbox: %v", err)
	}
	sb = resp.Sandbox
	ct, err := c.CreateContainer(t.Context(), &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: t.containerConfig("sleep", "600")})
	if err != nil {
		t.Fatalf("second instance: CreateContainer: %v", err)
	}
	if _, err := c.StartContainer(t.Context(), &runtimev1.StartContainerRequest{Id: ct.Container.Id}); err != nil {
		t.Fatalf("second instance: StartContainer: %v", err)
	}
	var ctPID int32
	t.Eventually(60*time.Second, "the second instance's container running", func() bool {
		got, err := c.InspectContainer(t.Context(), &runtimev1.InspectContainerRequest{Id: ct.Container.Id})
		if err != nil {
			t.Fatalf("second instance: InspectContainer: %v", err)
		}
		ctPID = got.Pid
		return got.State == runtimev1.ContainerState_CONTAINER_RUNNING
	})
	pid, sock := inst.PluginPID(), inst.SocketPath()
	start := time.Now()
	err = inst.Kill(t.Context())
	took := time.Since(start)
	killed = true
	if err != nil {
		t.Errorf("Kill: %v", err)
	}
	if took >= 2*time.Second {
		t.Errorf("Kill took %v: the plugin did not exit within 2 s of go-plugin's shutdown request and was killed", took.Round(time.Millisecond))
	}
	if processAlive(pid) {
		t.Errorf("plugin process %d still runs after Kill", pid)
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("the plugin's socket %s remains after Kill", sock)
	}
	if socks := socketsUnder(filepath.Join(state, "sockets")); len(socks) > 0 {
		t.Errorf("sockets remain in the host's socket directory after Kill: %v", socks)
	}
	if alive := processAlive(int(ctPID)); !alive && !t.Caps().ContainersTiedToPlugin {
		t.Errorf("container process %d died with the plugin, which does not advertise containers_tied_to_plugin", ctPID)
	}
}

// removeSandboxVia re-adopts a sandbox through client and removes it.
func removeSandboxVia(ctx context.Context, t *T, c *runtimev1.Client, sb *runtimev1.Sandbox) {
	if c == nil {
		t.Errorf("cleanup: the plugin does not answer; sandbox %s is left", sb.Id)
		return
	}
	// A relaunched plugin re-adopts it; one that never stopped has it.
	_, _ = c.Recover(ctx, &runtimev1.RecoverRequest{Handle: sb.Handle})
	if _, err := c.StopSandbox(ctx, &runtimev1.StopSandboxRequest{Id: sb.Id}); err != nil {
		t.Errorf("cleanup StopSandbox(%s): %v", sb.Id, err)
	}
	if _, err := c.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{Id: sb.Id}); err != nil {
		t.Errorf("cleanup RemoveSandbox(%s): %v", sb.Id, err)
	}
}

// nobody is the uid and gid the socket case connects as.
const nobody = 65534

// socketHardening checks the plugin socket's file, mode, owner and
// directory, and that neither another uid nor a client without the
// host's certificate gets through.
func socketHardening(t *T) {
	sock := t.env.cfg.Target.SocketPath()
	if sock == "" || strings.HasPrefix(sock, "@") || !filepath.IsAbs(sock) {
		t.Fatalf("plugin socket %q: want a file socket at an absolute path, not an abstract one", sock)
	}
	uid := uint32(os.Geteuid())
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatalf("plugin socket: %v", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode().Type() != fs.ModeSocket:
		t.Errorf("%s is a %v, not a socket", sock, fi.Mode().Type())
	case fi.Mode().Perm()&^0o660 != 0:
		t.Errorf("socket %s has mode %v; want at most 0660", sock, fi.Mode().Perm())
	case st.Uid != uid:
		t.Errorf("socket %s is owned by uid %d; want the host's %d", sock, st.Uid, uid)
	}
	dir := filepath.Dir(sock)
	di, err := os.Lstat(dir)
	if err != nil {
		t.Fatalf("socket directory: %v", err)
	}
	if dst := di.Sys().(*syscall.Stat_t); !di.IsDir() || di.Mode().Perm() != 0o700 || dst.Uid != uid {
		t.Errorf("socket directory %s: mode %v owner %d; want a directory of mode 0700 owned by the host's uid %d", dir, di.Mode(), dst.Uid, uid)
	}
	if err := connectAs(sock, nobody, nobody); err == nil {
		t.Errorf("uid %d connected to the plugin socket %s", nobody, sock)
	} else if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
		t.Errorf("connect as uid %d: %v; want permission denied", nobody, err)
	}
	// The host's uid without the host's client certificate: in plain text
	// and over TLS without a certificate.
	for what, creds := range map[string]credentials.TransportCredentials{
		"plain text": insecure.NewCredentials(),
		// The server is not verified: the check is whether it lets in a
		// client without a certificate.
		"TLS without a certificate": credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}),
	} {
		if err := healthCheck(t.Context(), sock, creds); err == nil {
			t.Errorf("a client speaking %s reached the plugin's gRPC health service", what)
		}
	}
}

// connectAs connects to the unix socket at path from a thread whose
// credentials are uid, gid and no supplementary groups, and returns the
// connect error. Credentials are per thread in Linux; the thread is never
// handed back to the Go scheduler, so it ends with the goroutine.
func connectAs(path string, uid, gid int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		for _, call := range []struct {
			nr   uintptr
			args [3]uintptr
		}{
			{unix.SYS_SETGROUPS, [3]uintptr{0, 0, 0}},
			{unix.SYS_SETRESGID, [3]uintptr{uintptr(gid), uintptr(gid), uintptr(gid)}},
			{unix.SYS_SETRESUID, [3]uintptr{uintptr(uid), uintptr(uid), uintptr(uid)}},
		} {
			if _, _, e := unix.RawSyscall(call.nr, call.args[0], call.args[1], call.args[2]); e != 0 {
				errc <- fmt.Errorf("cannot drop to uid %d (the suite runs as root): %w", uid, e)
				return
			}
		}
		if got := unix.Getuid(); got != uid {
			errc <- fmt.Errorf("the connecting thread runs as uid %d, not %d", got, uid)
			return
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		errc <- unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	}()
	return <-errc
}

// healthCheck calls the gRPC health service of the socket at path with
// creds.
func healthCheck(ctx context.Context, path string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "plugin"})
	return err
}

// outputHygiene judges the whole run: nothing on stdout after the
// handshake, and a bounded log on stderr.
func outputHygiene(t *T) {
	stdout, stderr := t.env.cfg.Target.Output()
	if stdout != 0 {
		t.Errorf("the plugin wrote %d bytes to stdout after its handshake; after the handshake a plugin logs to stderr only", stdout)
	}
	if max := t.env.cfg.MaxPluginLogBytes; stderr > max {
		t.Errorf("the plugin logged %d bytes to stderr during the run; the cap is %d", stderr, max)
	}
	t.Logf("the plugin wrote %d bytes to stdout after its handshake and %d bytes to stderr", stdout, stderr)
}
