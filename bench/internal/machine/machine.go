// Package machine describes the machine a benchmark ran on, in the terms
// of the ground rules of the benchmarks' design notes: CPUs and their
// affinity, memory, kernel, the cgroup layout, the Go toolchain, the
// source revision and the load around the run. It reads /proc and runs
// git only when the binary carries no VCS information.
package machine

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
	"time"
)

// Info describes the machine.
type Info struct {
	NProc      int
	Affinity   string // Cpus_allowed_list of this process
	Kernel     string
	CPUModel   string
	MemTotal   string
	Cgroup     string // whether cgroup v2 is the only hierarchy
	GOMAXPROCS int
	GoVersion  string
	Source     string // the VCS revision the binary was built from
	LoadBefore string
	LoadAfter  string // set by the caller with LoadAvg when the run ends
}

// Describe returns the machine's description, with the load average now
// as LoadBefore.
func Describe(ctx context.Context) Info {
	return Info{
		NProc:      runtime.NumCPU(),
		Affinity:   procStatusField("Cpus_allowed_list"),
		Kernel:     strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		CPUModel:   cpuModel(),
		MemTotal:   memTotal(),
		Cgroup:     cgroupMode(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		Source:     SourceRevision(ctx),
		LoadBefore: LoadAvg(),
	}
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// LoadAvg returns the 1, 5 and 15 minute load averages.
func LoadAvg() string {
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
	var v1, v2 []string
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

// ModuleVersion returns the version of a module linked into the binary.
func ModuleVersion(path string) string {
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

// SourceRevision describes the commit the binary was built from, as go
// build records it or, when it was built without (-buildvcs=false), as git
// reports the working directory.
func SourceRevision(ctx context.Context) string {
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
