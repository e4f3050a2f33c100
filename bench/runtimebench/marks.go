package runtimebench

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// markDir is where containers see the directory of the marker FIFO.
const markDir = "/paddock-bench"

// markFile is the FIFO's name in that directory.
const markFile = "ready"

// command is the container's process: it writes its tag to the marker
// FIFO, its first act once running, and then sleeps until it is
// removed.
func command(tag string) []string {
	return []string{"sh", "-c", "echo " + tag + " > " + markDir + "/" + markFile + " && exec sleep 3600"}
}

// marks reads the tags containers write to the marker FIFO and tells the
// starts waiting for them when each arrived. The FIFO is held open for
// reading and writing, so a container's open for writing never blocks and
// the reader never sees end-of-file between containers; a tag is one
// line, shorter than PIPE_BUF, so lines of concurrent writers never mix.
type marks struct {
	f    *os.File
	done chan struct{}

	mu      sync.Mutex
	waiting map[string]chan time.Time
}

// openMarks makes the FIFO at path and starts reading it.
func openMarks(path string) (*marks, error) {
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("marker FIFO %s: %w", path, err)
	}
	// Writable whatever user the container runs as (the umask applied
	// to Mkfifo); only the run's own directory leads to it.
	if err := os.Chmod(path, 0o666); err != nil {
		return nil, fmt.Errorf("marker FIFO %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("marker FIFO %s: %w", path, err)
	}
	m := &marks{f: f, done: make(chan struct{}), waiting: map[string]chan time.Time{}}
	go m.read()
	return m, nil
}

// read delivers each line's arrival time until the FIFO is closed. The
// time is taken as soon as the line is read: the goroutine is woken by
// the runtime's poller when the container writes.
func (m *marks) read() {
	defer close(m.done)
	r := bufio.NewReader(m.f)
	for {
		line, err := r.ReadString('\n')
		at := time.Now()
		if tag := strings.TrimSpace(line); tag != "" {
			m.mu.Lock()
			if ch, ok := m.waiting[tag]; ok {
				ch <- at
				delete(m.waiting, tag)
			}
			m.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// expect registers tag before its container starts; the channel receives
// the time its line arrived.
func (m *marks) expect(tag string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	m.mu.Lock()
	m.waiting[tag] = ch
	m.mu.Unlock()
	return ch
}

// forget drops tag's registration if its line never came.
func (m *marks) forget(tag string) {
	m.mu.Lock()
	delete(m.waiting, tag)
	m.mu.Unlock()
}

// close stops the reader and waits for it.
func (m *marks) close() error {
	err := m.f.Close()
	<-m.done
	return err
}
