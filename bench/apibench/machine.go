package apibench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// machine describes where a run happened, in the terms of the ground
// rules of docs/benchmarks.md.
type machine struct {
	NProc      int
	Affinity   string // Cpus_allowed_list of this process
	Kernel     string
	CPUModel   string
	MemTotal   string
	Disk       string // df's line for the data directory
	Rotational string // the block device's rotational flag
	Cgroup     string
	GOMAXPROCS int
	GoVersion  string
	Etcd       string
	Source     string // the VCS revision the binary was built from
	LoadBefore string
	LoadAfter  string
	Fsync      fsyncResult
}

// fsyncResult is what the fdatasync probe measured.
type fsyncResult struct {
	N             int
	BlockSize     int
	P50, P99, Max time.Duration
}

// fsyncBlockSize is the size of the probe's writes: fio's
// --bs=2300, about the size of an etcd WAL entry of a small write.
const fsyncBlockSize = 2300

// describeMachine gathers the machine's description; dir is the directory
// the data lives in.
func describeMachine(ctx context.Context, dir string) machine {
	m := machine{
		NProc:      runtime.NumCPU(),
		Affinity:   procStatusField("Cpus_allowed_list"),
		Kernel:     strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		CPUModel:   cpuModel(),
		MemTotal:   memTotal(),
		Cgroup:     cgroupMode(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		Etcd:       moduleVersion("go.etcd.io/etcd/server/v3"),
		Source:     sourceRevision(ctx),
		LoadBefore: loadAvg(),
	}
	m.Disk, m.Rotational = diskOf(ctx, dir)
	return m
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

func loadAvg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func procStatusField(name string) string {
	for line := range strings.Lines(readFile("/proc/self/status")) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func cpuModel() string {
	for line := range strings.Lines(readFile("/proc/cpuinfo")) {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	for line := range strings.Lines(readFile("/proc/meminfo")) {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return "unknown"
}

// cgroupMode says whether cgroup v2 is the only hierarchy, from the
// mount table.
func cgroupMode() string {
	var v1 []string
	var v2 []string
	for line := range strings.Lines(readFile("/proc/self/mounts")) {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		switch f[2] {
		case "cgroup2":
			v2 = append(v2, f[1])
		case "cgroup":
			v1 = append(v1, filepath.Base(f[1]))
		}
	}
	switch {
	case len(v2) > 0 && len(v1) == 0:
		return "v2 only (unified hierarchy at " + strings.Join(v2, ", ") + ")"
	case len(v2) > 0:
		return fmt.Sprintf("no: hybrid, v1 hierarchies %s and v2 at %s", strings.Join(v1, ","), strings.Join(v2, ", "))
	case len(v1) > 0:
		return "no: v1 only (" + strings.Join(v1, ",") + ")"
	}
	return "unknown (no cgroup mounts visible)"
}

// moduleVersion returns the version of a module linked into the binary.
func moduleVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range bi.Deps {
		if d.Path == path {
			if d.Replace != nil {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return "unknown"
}

// sourceRevision describes the commit the binary was built from, as go
// build records it or, when it was built without (-buildvcs=false), as git
// reports the working directory.
func sourceRevision(ctx context.Context) string {
	var rev, modified string
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}
	from := "build info"
	if rev == "" {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
		if err != nil {
			return "unknown (no VCS information in the binary, and git: " + err.Error() + ")"
		}
		rev, from = strings.TrimSpace(string(out)), "git, working directory at run time"
		if out, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
			modified = strconv.FormatBool(len(bytes.TrimSpace(out)) > 0)
		}
	}
	rev = rev[:min(12, len(rev))]
	if modified == "true" {
		rev += " plus uncommitted changes"
	}
	return rev + " (" + from + ")"
}

// diskOf returns df's description of the file system holding dir and
// whether the block device under it is rotational.
func diskOf(ctx context.Context, dir string) (desc, rotational string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "df", "-PT", dir).Output()
	if err != nil {
		return "unknown (df: " + err.Error() + ")", "rotational flag unknown"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		return "unknown", "rotational flag unknown"
	}
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 7 {
		return strings.Join(f, " "), "rotational flag unknown"
	}
	size := f[2]
	if kb, err := strconv.ParseInt(f[2], 10, 64); err == nil {
		size = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	desc = fmt.Sprintf("%s (%s, %s, %s used, mounted on %s)", f[0], f[1], size, f[5], f[6])
	return desc, rotationalOf(f[0])
}

// rotationalOf reads the rotational flag of the disk behind a device such
// as /dev/vda1 or /dev/nvme0n1p2.
func rotationalOf(dev string) string {
	name, ok := strings.CutPrefix(dev, "/dev/")
	if !ok {
		return "rotational flag unknown"
	}
	sys, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", name))
	if err != nil {
		return "rotational flag unknown"
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		sys = filepath.Dir(sys)
	}
	switch v := strings.TrimSpace(readFile(filepath.Join(sys, "queue", "rotational"))); v {
	case "0", "1":
		// Virtual disks often say 1 whatever the medium underneath.
		return filepath.Base(sys) + " queue/rotational=" + v
	}
	return "rotational flag unknown"
}

// probeFsync writes n blocks of fsyncBlockSize bytes to a new file in dir,
// each followed by fdatasync, and returns the fdatasync latencies, as
// `fio --rw=write --ioengine=sync --fdatasync=1 --bs=2300` does. The file
// is removed.
func probeFsync(ctx context.Context, dir string, n int) (fsyncResult, error) {
	res := fsyncResult{N: n, BlockSize: fsyncBlockSize}
	if n <= 0 {
		return res, nil
	}
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return res, fmt.Errorf("fsync probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, fsyncBlockSize)
	for i := range block {
		block[i] = byte('a' + i%26)
	}
	lat := make([]time.Duration, 0, n)
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < n && ctx.Err() == nil && time.Now().Before(deadline); i++ {
		if _, err := f.Write(block); err != nil {
			return res, fmt.Errorf("fsync probe: %w", err)
		}
		t0 := time.Now()
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return res, fmt.Errorf("fsync probe: fdatasync: %w", err)
		}
		lat = append(lat, time.Since(t0))
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	s := summarize(lat)
	res.N, res.P50, res.P99, res.Max = s.N, s.P50, s.P99, s.Max
	return res, nil
}
