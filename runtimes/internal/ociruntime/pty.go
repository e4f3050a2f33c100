package ociruntime

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A process exec'd on a terminal gets a terminal of the container's own:
// `runc exec --detach --tty` creates it inside the container, hands its
// master over a console socket and exits once the process runs. The
// process, orphaned, is adopted by this process — a child subreaper — and
// waited for by pid. Holding the container terminal's master directly
// keeps resizes and input in order: a resize is applied before any input
// that follows it is written.

// becomeSubreaper makes this process adopt orphaned descendants.
var becomeSubreaper = sync.OnceValue(func() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
})

// consoleSocket is a listening socket runc sends a terminal's master to.
type consoleSocket struct {
	dir string
	l   *net.UnixListener
}

// newConsoleSocket listens on a file socket in a new 0700 directory
// (socket paths are short, so not under the container's directory).
func newConsoleSocket() (*consoleSocket, error) {
	dir, err := os.MkdirTemp("", "paddock-tty-")
	if err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "console.sock"), Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return &consoleSocket{dir: dir, l: l}, nil
}

func (s *consoleSocket) path() string { return filepath.Join(s.dir, "console.sock") }

// receive accepts runc's connection and returns the terminal master it
// passes, non-blocking so that Close ends a pending Read.
func (s *consoleSocket) receive(timeout time.Duration) (*os.File, error) {
	s.l.SetDeadline(time.Now().Add(timeout))
	conn, err := s.l.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(name, oob)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	var fds []int
	for i := range msgs {
		if rights, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, rights...)
		}
	}
	if len(fds) == 0 {
		return nil, errors.New("console socket: runc sent no terminal")
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

// openPTY opens a new pseudo-terminal: its master, non-blocking so that a
// read deadline ends a pending read, and its replica.
func openPTY() (master, replica *os.File, err error) {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(m)
		return nil, nil, fmt.Errorf("unlock the terminal: %w", err)
	}
	// TIOCGPTPEER opens the replica from the master, whatever devpts
	// instance /dev/pts is.
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(m), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		unix.Close(m)
		return nil, nil, fmt.Errorf("open the terminal's replica: %w", errno)
	}
	return os.NewFile(uintptr(m), "/dev/ptmx"), os.NewFile(r, "pty-replica"), nil
}

func (s *consoleSocket) close() {
	s.l.Close()
	os.RemoveAll(s.dir)
}

// resizePTY sets the window size of the terminal whose master is m; the
// kernel signals SIGWINCH to the terminal's foreground process group.
func resizePTY(m *os.File, width, height uint32) error {
	if width == 0 || height == 0 || width > 0xffff || height > 0xffff {
		return fmt.Errorf("terminal size %dx%d: want columns and rows between 1 and 65535", width, height)
	}
	return unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(width), Row: uint16(height)})
}

// waitAdopted waits for pid, a process this one adopted (or started),
// and returns its exit code in the shell's convention.
func waitAdopted(pid int) (int, error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("wait for pid %d: %w", pid, err)
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
}
