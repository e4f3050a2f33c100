package runtimebench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// markDir is where containers see the directory the marker files are
// made in.
const markDir = "/paddock-bench"

// command is the container's process: it creates the marker file named
// tag, its first act once running, and then sleeps until it is removed.
func command(tag string) []string {
	return []string{"sh", "-c", "echo " + tag + " > " + markDir + "/" + tag + " && exec sleep 3600"}
}

// marks tells the starts waiting for their containers when each
// container's marker file appeared in the marker directory: an inotify
// watch on the host's side of the directory wakes a reader blocked on it
// (through the Go runtime's poller) when the file is created. A file
// works in every runtime class: gVisor's gofer creates it on the host for
// the sandbox, while a host FIFO (the bench's earlier marker) is refused
// inside gVisor unless runsc runs with --host-fifo=open.
type marks struct {
	dir  string
	f    *os.File // the inotify instance
	done chan struct{}

	mu      sync.Mutex
	waiting map[string]chan time.Time
}

// openMarks makes the marker directory dir and starts watching it.
func openMarks(dir string) (*marks, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("marker directory: %w", err)
	}
	// Writable whatever user the container runs as; only the run's own
	// directory leads to it.
	if err := os.Chmod(dir, 0o777); err != nil {
		return nil, fmt.Errorf("marker directory %s: %w", dir, err)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("marker directory %s: inotify: %w", dir, err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("marker directory %s: inotify watch: %w", dir, err)
	}
	// Non-blocking, so that reads park on the runtime's poller and Close
	// wakes the reader.
	m := &marks{dir: dir, f: os.NewFile(uintptr(fd), "inotify"), done: make(chan struct{}), waiting: map[string]chan time.Time{}}
	go m.read()
	return m, nil
}

// read delivers each marker's arrival until the inotify instance is
// closed. The time is taken as soon as the read returns.
func (m *marks) read() {
	defer close(m.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := m.f.Read(buf)
		at := time.Now()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			m.deliver(string(bytes.TrimRight(name, "\x00")), at)
		}
		if err != nil {
			return
		}
	}
}

// deliver hands at to the start waiting for tag, if any.
func (m *marks) deliver(tag string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ch, ok := m.waiting[tag]; ok {
		ch <- at
		delete(m.waiting, tag)
	}
}

// expect registers tag before its container starts; the channel receives
// the time its marker appeared.
func (m *marks) expect(tag string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	m.mu.Lock()
	m.waiting[tag] = ch
	m.mu.Unlock()
	return ch
}

// forget drops tag's registration if its marker never came, and its
// marker file.
func (m *marks) forget(tag string) {
	m.mu.Lock()
	delete(m.waiting, tag)
	m.mu.Unlock()
	_ = os.Remove(filepath.Join(m.dir, tag))
}

// latency measures the marker's own cost: n times, the time from just
// before this process creates a marker file until the reader has taken
// its time.
func (m *marks) latency(n int) ([]time.Duration, error) {
	d := make([]time.Duration, 0, n)
	for i := range n {
		tag := fmt.Sprintf("calibrate-%d", i)
		ch := m.expect(tag)
		t0 := time.Now()
		err := os.WriteFile(filepath.Join(m.dir, tag), []byte(tag+"\n"), 0o644)
		if err == nil {
			select {
			case at := <-ch:
				d = append(d, at.Sub(t0))
			case <-time.After(10 * time.Second):
				err = errors.New("no inotify event within 10s")
			}
		}
		m.forget(tag)
		if err != nil {
			return nil, fmt.Errorf("marker latency: %w", err)
		}
	}
	return d, nil
}

// close stops the reader and waits for it.
func (m *marks) close() error {
	err := m.f.Close()
	<-m.done
	return err
}
