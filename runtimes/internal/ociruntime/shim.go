package ociruntime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
)

// Every container is started by a shim (runtimes/internal/ociruntime/shim): one process
// per container, the parent (subreaper) of the container's init. It is
// the binary cmd/paddock-runc-shim, run as
//
//	paddock-runc-shim DIR
//
// or, when that binary is not installed, this plugin's own binary run as
// "paddock-runtime-runc shim DIR" (IsShim, RunShim): the same code, with
// the start-up cost of the plugin's much larger binary. DIR is the
// container's state directory and fd 3 the write end of a pipe on which
// the shim reports, in one JSON line (shim.Ready), whether the container
// started. It runs in a session of its own, so it outlives the plugin.

// ShimBinary is the file name of the shim binary, looked up next to the
// plugin's own executable unless the configuration names another.
const ShimBinary = "paddock-runc-shim"

// shimArg is the argument that makes the plugin's binary a shim.
const shimArg = "shim"

// IsShim reports whether a process with arguments args (os.Args) is to run
// as a shim; its main then calls RunShim instead of serving the plugin.
func IsShim(args []string) bool { return len(args) > 1 && args[1] == shimArg }

// RunShim runs the shim with os.Args[2:] as args and returns the process's
// exit code. See IsShim.
func RunShim(args []string) int { return shim.Run(args) }

// shimCommand is how the plugin starts a shim: Path, then Args, then the
// container's directory.
type shimCommand struct {
	Path string
	Args []string
}

// resolveShim returns the shim command: configured (the configuration's
// shimPath, else Options.ShimPath) if set, which must then be an
// executable file; else ShimBinary next to this process's executable
// when it is there; else this executable as "EXE shim" (fallback true).
func resolveShim(configured string) (cmd shimCommand, fallback bool, err error) {
	if configured != "" {
		if err := checkExecutable(configured); err != nil {
			return shimCommand{}, false, err
		}
		return shimCommand{Path: configured}, false, nil
	}
	self, err := os.Executable()
	if err != nil {
		return shimCommand{}, false, fmt.Errorf("find this plugin's executable: %w", err)
	}
	sibling := filepath.Join(filepath.Dir(self), ShimBinary)
	if checkExecutable(sibling) == nil {
		return shimCommand{Path: sibling}, false, nil
	}
	return shimCommand{Path: self, Args: []string{shimArg}}, true, nil
}

// checkExecutable checks that path is an executable regular file.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// launchShim starts the shim for the container in dir, calls started
// with its pid and waits for its report. The shim is this process's child until it exits or this
// process does; a goroutine reaps it.
func launchShim(ctx context.Context, sc shimCommand, dir string, started func(pid int)) (shim.Ready, int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return shim.Ready{}, 0, err
	}
	defer r.Close()
	logf, err := os.OpenFile(filepath.Join(dir, shim.LogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		w.Close()
		return shim.Ready{}, 0, err
	}
	cmd := exec.Command(sc.Path, slices.Concat(sc.Args, []string{dir})...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	logf.Close()
	if err != nil {
		return shim.Ready{}, 0, fmt.Errorf("start the shim %s: %w", sc.Path, err)
	}
	pid := cmd.Process.Pid
	go cmd.Wait()
	started(pid)

	// The report arrives when the container runs or failed to start; the
	// pipe closes without one if the shim dies.
	type result struct {
		ready shim.Ready
		err   error
	}
	done := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadBytes('\n')
		if err != nil && len(line) == 0 {
			done <- result{err: errors.New("the shim exited without reporting; see " + filepath.Join(dir, shim.LogFile))}
			return
		}
		var rd shim.Ready
		if err := json.Unmarshal(line, &rd); err != nil {
			done <- result{err: fmt.Errorf("the shim's report %q: %w", line, err)}
			return
		}
		done <- result{ready: rd}
	}()
	select {
	case res := <-done:
		return res.ready, pid, res.err
	case <-ctx.Done():
		// The caller gave up; the shim goes on and its outcome is read
		// from its files (shim.json, exit.json) later.
		r.SetReadDeadline(time.Now())
		return shim.Ready{}, pid, ctx.Err()
	}
}
