package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/client"
)

// binary is the paddock binary under test, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "paddock-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "paddock")
	if b := os.Getenv("PADDOCK_BIN"); b != "" {
		binary = b
	} else {
		// Every command, so that paddock finds its plugins next to it.
		build := exec.Command("go", "build", "-o", dir+"/", "github.com/paddock-dev/paddock/cmd/...")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building paddock:", err)
			return 1
		}
	}
	return m.Run()
}

// server is a running `paddock server` process.
type server struct {
	dataDir string
	addr    string
	admin   string // admin.conf
	cmd     *exec.Cmd
	home    string // the process's HOME
	logs    *lockedBuffer
	exited  chan struct{}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startServer runs `paddock server` on a fresh data directory (or dataDir
// when not empty) and waits until it answers /readyz.
func startServer(t *testing.T, dataDir string, args ...string) *server {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	s := &server{dataDir: dataDir, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), admin: filepath.Join(dataDir, "admin.conf")}
	// The cluster DNS server on a port of its own, so that a cluster
	// already running on this machine (on :1053) does not stop the test's.
	dns := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.start(t, "server", append([]string{"--data-dir", dataDir, "--listen", s.addr, "--dns-listen", dns}, args...), s.ready)
	return s
}

// start runs `paddock COMMAND ARGS...` and waits until ready says so.
func (s *server) start(t *testing.T, command string, args []string, ready func() bool) {
	t.Helper()
	s.logs, s.exited, s.home = &lockedBuffer{}, make(chan struct{}), t.TempDir()
	s.cmd = exec.Command(binary, append([]string{command}, args...)...)
	s.cmd.Env = append(os.Environ(), "HOME="+s.home, "PADDOCK_CONFIG=")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := s.exited
	cmd := s.cmd
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(s.admin); err == nil && ready() {
			return
		}
		select {
		case <-s.exited:
			t.Fatalf("paddock %s exited early:\n%s", command, s.logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("paddock %s not ready after 60s:\n%s", command, s.logs)
		}
	}
}

func (s *server) ready() bool {
	cfg, err := client.LoadConfig(s.admin)
	if err != nil {
		return false
	}
	c, err := client.New(cfg)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := c.Do(ctx, http.MethodGet, "/readyz", nil, nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("paddock server did not stop within 20s of SIGINT:\n%s", s.logs)
	}
}

// result is what a CLI invocation did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// paddock runs the CLI with the given client config (and stdin, if any).
func paddock(t *testing.T, config string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if config != "" {
		args = append([]string{"--config", config}, args...)
	}
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "PADDOCK_CONFIG=", "HOME="+t.TempDir())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("paddock %v: %v", args, err)
	}
	return r
}

// mustPaddock runs the CLI and fails the test unless it exits 0.
func mustPaddock(t *testing.T, config, stdin string, args ...string) result {
	t.Helper()
	r := paddock(t, config, stdin, args...)
	if r.code != 0 {
		t.Fatalf("paddock %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// failPaddock runs the CLI, expects a non-zero exit and an error line on
// stderr containing every want.
func failPaddock(t *testing.T, config, stdin string, wants []string, args ...string) result {
	t.Helper()
	r := paddock(t, config, stdin, args...)
	if r.code == 0 {
		t.Fatalf("paddock %s succeeded, want failure: %s", strings.Join(args, " "), r)
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("paddock %s: stderr lacks %q: %s", strings.Join(args, " "), w, r)
		}
	}
	return r
}

// tenantConfig creates a token for tenant and role and writes its client
// config into a file, returning the path.
func tenantConfig(t *testing.T, s *server, tenant, role string) string {
	t.Helper()
	r := mustPaddock(t, s.admin, "", "token", "create", "--tenant", tenant, "--role", role, "-o", "config")
	path := filepath.Join(t.TempDir(), tenant+"-"+role+".conf")
	if err := os.WriteFile(path, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// apiClient returns a Go client for a config file.
func apiClient(t *testing.T, config string) *client.Client {
	t.Helper()
	cfg, err := client.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func execCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}

// lockedBuffer is a bytes.Buffer safe for a process writing while the test
// reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
