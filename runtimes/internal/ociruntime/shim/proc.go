package shim

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcStartTime returns the start time of process pid (field 22 of
// /proc/PID/stat, in clock ticks since boot): with the pid it names a
// process unambiguously.
func ProcStartTime(pid int) (uint64, error) {
	_, start, err := ProcStat(pid)
	return start, err
}

// ProcStat returns the state letter and start time of process pid.
func ProcStat(pid int) (byte, uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name is in parentheses and may contain anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat: %w", pid, err)
	}
	return fields[0][0], start, nil
}

// Alive reports whether process pid, started at start (0: any start),
// still runs (a zombie does not).
func Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	state, s, err := ProcStat(pid)
	if err != nil {
		return false
	}
	return state != 'Z' && state != 'X' && (start == 0 || s == start)
}

// ReadPidFile reads a pid file runc wrote.
func ReadPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: malformed %q", path, b)
	}
	return pid, nil
}

// ReadKeyed reads the value of key from a file of "key value" lines (a
// cgroup's memory.oom_control, memory.events or cpu.stat).
func ReadKeyed(file, key string) (uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", file, key)
}
