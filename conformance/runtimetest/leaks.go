package runtimetest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// state is what the leak check compares before and after a case: live
// processes, mount points and cgroups.
type state struct {
	procs   map[int]string // pid → command line
	parents map[int]int
	// sessions are the processes' session ids: 0 for a process init
	// started itself, never for one that came from the plugin's tree.
	sessions map[int]int
	mounts   map[string]bool
	cgroups  map[string]bool
}

// snapshot reads the machine's processes, mounts and Paddock cgroups.
func snapshot() *state {
	s := &state{procs: map[int]string{}, parents: map[int]int{}, sessions: map[int]int{}, mounts: map[string]bool{}, cgroups: map[string]bool{}}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command, which is in parentheses and may hold
		// spaces: state ppid pgrp session ...
		rest := string(stat)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) < 4 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		sid, _ := strconv.Atoi(f[3])
		if ppid == 2 || pid == 2 {
			continue // kernel threads
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		s.procs[pid] = strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		s.parents[pid] = ppid
		s.sessions[pid] = sid
	}
	s.mounts = readMounts()
	// Paddock's runtimes keep their cgroups under a parent named
	// "paddock" or "paddock-..." (the containerd plugin's) in every
	// hierarchy.
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/paddock*")
	v2, _ := filepath.Glob("/sys/fs/cgroup/paddock*")
	for _, r := range v2 {
		if fi, err := os.Stat(r); err == nil && fi.IsDir() {
			roots = append(roots, r)
		}
	}
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && path != root {
				s.cgroups[path] = true
			}
			return nil
		})
	}
	return s
}

// readMounts returns the mount points of this process's mount namespace.
func readMounts() map[string]bool {
	mounts := map[string]bool{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mounts
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			mounts[fields[4]] = true
		}
	}
	return mounts
}

// firstOldAncestor returns the nearest ancestor of pid (in after) that
// was already running in before: 1 for init, 0 when the chain breaks.
func firstOldAncestor(before, after *state, pid int) int {
	for i := 0; i < 64; i++ {
		pid = after.parents[pid]
		if pid <= 1 {
			return pid
		}
		if _, old := before.procs[pid]; old {
			return pid
		}
	}
	return 0
}

// fromInitService reports whether pid, or one of its new ancestors, is a
// process init started itself (session 0), which nothing the plugin
// starts can be: a service's work, such as a remote shell's command.
func (s *state) fromInitService(before *state, pid int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		if _, old := before.procs[pid]; old {
			return false
		}
		if s.sessions[pid] == 0 {
			return true
		}
		pid = s.parents[pid]
	}
	return false
}

// descendsFrom reports whether pid is ancestor or one of its descendants.
func (s *state) descendsFrom(pid, ancestor int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		if pid == ancestor {
			return true
		}
		pid = s.parents[pid]
	}
	return pid == ancestor
}

// leaks returns what is in after and was not in before. A new process
// counts when it is the runtime's: a descendant of the plugin, or one
// whose first ancestor that was there before is init (a daemonized shim
// or container, or an orphan). Processes that other programs on the
// machine start meanwhile (other test binaries, shells, builds) descend
// from a process that was already running, or are services init started
// itself (session 0, which nothing the plugin starts can be in), and do
// not count; neither does the plugin's own process.
func leaks(before, after *state, pluginPID int) []string {
	var out []string
	self := os.Getpid()
	for pid, cmd := range after.procs {
		if _, old := before.procs[pid]; old || pid == self || pid == pluginPID {
			continue
		}
		if !after.descendsFrom(pid, pluginPID) && (firstOldAncestor(before, after, pid) > 1 || after.fromInitService(before, pid)) {
			continue
		}
		out = append(out, fmt.Sprintf("process %d: %s", pid, cmd))
	}
	for m := range after.mounts {
		if !before.mounts[m] && !strings.HasPrefix(m, "/proc/") {
			out = append(out, "mount "+m)
		}
	}
	for c := range after.cgroups {
		if !before.cgroups[c] {
			out = append(out, "cgroup "+c)
		}
	}
	slices.Sort(out)
	return out
}

// waitNoLeaks gives asynchronous cleanup (a shim exiting) a moment and
// returns what is still leaked after within.
func (e *env) waitNoLeaks(before *state, within time.Duration) []string {
	deadline := time.Now().Add(within)
	for {
		l := leaks(before, snapshot(), e.cfg.Target.PluginPID())
		if len(l) == 0 || time.Now().After(deadline) {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
}
