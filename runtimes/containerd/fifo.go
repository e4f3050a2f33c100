package containerd

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// fifos are named pipes in a directory through which a shim and the
// plugin exchange a process's stdio. The plugin opens its ends in the
// background while it asks the shim to open the other ones: an open of a
// FIFO blocks until both sides are there.
type fifos struct {
	paths   map[string]string // name → path
	results chan openedFIFO
}

type openedFIFO struct {
	name string
	f    *os.File
	err  error
}

// makeFIFOs makes a FIFO DIR/NAME for each name and starts opening the
// plugin's end of each: for writing those named in write, for reading the
// others.
func makeFIFOs(dir string, names []string, write ...string) (*fifos, error) {
	ff := &fifos{paths: map[string]string{}, results: make(chan openedFIFO, len(names))}
	for _, name := range names {
		path := filepath.Join(dir, name)
		if err := unix.Mkfifo(path, 0o600); err != nil {
			return nil, fmt.Errorf("fifo %s: %w", path, err)
		}
		ff.paths[name] = path
	}
	for _, name := range names {
		flag := os.O_RDONLY
		for _, w := range write {
			if w == name {
				flag = os.O_WRONLY
			}
		}
		go func() {
			f, err := os.OpenFile(ff.paths[name], flag, 0)
			ff.results <- openedFIFO{name, f, err}
		}()
	}
	return ff, nil
}

// wait returns the plugin's ends once the shim has opened its own, or an
// error after timeout (the pending opens are then abandoned).
func (ff *fifos) wait(timeout time.Duration) (map[string]*os.File, error) {
	files := map[string]*os.File{}
	deadline := time.After(timeout)
	for range ff.paths {
		select {
		case r := <-ff.results:
			if r.err != nil {
				ff.closeAll(files)
				ff.abandon(len(ff.paths) - len(files) - 1)
				return nil, r.err
			}
			files[r.name] = r.f
		case <-deadline:
			ff.closeAll(files)
			ff.abandon(len(ff.paths) - len(files))
			return nil, fmt.Errorf("the shim did not open the process's stdio within %s", timeout)
		}
	}
	return files, nil
}

// abort unblocks the pending opens and closes what they opened: the shim
// will not open its ends.
func (ff *fifos) abort() { ff.abandon(len(ff.paths)) }

// abandon unblocks n pending opens by opening the other side, and closes
// what they return.
func (ff *fifos) abandon(n int) {
	for _, path := range ff.paths {
		if f, err := os.OpenFile(path, os.O_RDWR, 0); err == nil {
			defer f.Close()
		}
	}
	for range n {
		if r := <-ff.results; r.f != nil {
			r.f.Close()
		}
	}
}

func (ff *fifos) closeAll(files map[string]*os.File) {
	for _, f := range files {
		f.Close()
	}
}
