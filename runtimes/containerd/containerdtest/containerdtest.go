// Package containerdtest starts a private containerd daemon for tests: its
// own configuration, root, state directory and socket under a short
// temporary directory, with the CRI plugin disabled (nothing it runs
// reaches outside the machine). The daemon is stopped, and its directory
// removed, when the test ends.
package containerdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Daemon is a running private containerd.
type Daemon struct {
	// Address is the daemon's gRPC socket.
	Address string
	// Dir holds its configuration, root, state and log.
	Dir string
	cmd *exec.Cmd
}

// Config returns the configuration file of a private daemon in dir.
func Config(dir string) string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "containerd.sock"),
		filepath.Join(dir, "containerd.sock.ttrpc"), filepath.Join(dir, "opt"))
}

// Start starts a private daemon and waits until its socket answers. It
// needs root and the containerd binary (Debian package containerd): a
// missing one fails the test under CI=true and skips it otherwise.
// pathDirs are put in front of the daemon's PATH, where it looks for
// shims (containerd-shim-runsc-v1).
func Start(tb testing.TB, pathDirs ...string) *Daemon {
	tb.Helper()
	bin, err := exec.LookPath("containerd")
	missing := ""
	switch {
	case os.Geteuid() != 0:
		missing = "root"
	case err != nil:
		missing = "the containerd binary (Debian package containerd; make deps)"
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("this test runs a containerd daemon and needs %s, and CI=true", missing)
		}
		tb.Skipf("skipping: this test runs a containerd daemon and needs %s", missing)
	}
	// A short path: the socket's must fit in a sockaddr_un.
	dir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		tb.Fatal(err)
	}
	d, err := StartIn(context.Background(), bin, dir, pathDirs...)
	if err != nil {
		os.RemoveAll(dir)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := d.Stop(); err != nil {
			tb.Errorf("stop containerd: %v", err)
		}
		os.RemoveAll(dir)
	})
	return d
}

// StartIn starts the containerd binary bin with a private configuration in
// dir, pathDirs in front of its PATH, and waits up to 30 s for its socket.
func StartIn(ctx context.Context, bin, dir string, pathDirs ...string) (*Daemon, error) {
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(Config(dir)), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	d := &Daemon{Address: filepath.Join(dir, "containerd.sock"), Dir: dir}
	d.cmd = exec.Command(bin, "--config", cfg)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	if len(pathDirs) > 0 {
		d.cmd.Env = append(os.Environ(), "PATH="+strings.Join(append(pathDirs, os.Getenv("PATH")), string(os.PathListSeparator)))
	}
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.Dial("unix", d.Address); err == nil {
			conn.Close()
			return d, nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(log.Name())
			return nil, fmt.Errorf("containerd exited before it served: %v: %s", err, tail(string(b)))
		case <-ctx.Done():
			d.cmd.Process.Kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.cmd.Process.Kill()
			b, _ := os.ReadFile(log.Name())
			return nil, fmt.Errorf("containerd did not serve %s within 30s: %s", d.Address, tail(string(b)))
		}
	}
}

// Stop stops the daemon (SIGTERM, then SIGKILL after 10 s) and waits for
// it to exit. The containers' shims are not the daemon's children and stay
// until their tasks are deleted.
func (d *Daemon) Stop() error {
	pid := d.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil // already gone
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(5 * time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Log returns the daemon's log so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "containerd.log"))
	return string(b)
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}
