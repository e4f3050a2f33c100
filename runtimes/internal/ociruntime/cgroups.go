package ociruntime

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
	"golang.org/x/sys/unix"
)

// cgroupParent is the cgroup under which all pods live, relative to each
// hierarchy's root.
const cgroupParent = "/paddock"

// cgroupMount is one mounted cgroup hierarchy.
type cgroupMount struct {
	dir         string   // mount point
	root        string   // the hierarchy path mounted there (mountinfo's root)
	controllers []string // v1 controllers (name=systemd included); nil for v2
	v2          bool
}

// path returns the directory of cgroup p (an absolute cgroup path) in m.
func (m cgroupMount) path(p string) string {
	rel := p
	if m.root != "/" && strings.HasPrefix(p, m.root) {
		rel = strings.TrimPrefix(p, m.root)
	}
	return filepath.Join(m.dir, filepath.FromSlash(rel))
}

// cgroupLayout is the host's cgroup layout: unified (v2 at
// /sys/fs/cgroup) or v1 (legacy or hybrid, each controller at its own
// mount point).
type cgroupLayout struct {
	unified bool
	mounts  []cgroupMount // every cgroup mount, v1 and v2
	byCtrl  map[string]cgroupMount
}

// detectCgroups reads the layout from /proc/self/mountinfo.
func detectCgroups() (*cgroupLayout, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return nil, fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
	}
	l := &cgroupLayout{unified: st.Type == unix.CGROUP2_SUPER_MAGIC, byCtrl: map[string]cgroupMount{}}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		fstype, super := fields[sep+1], fields[sep+3]
		m := cgroupMount{dir: unescapeMountPath(fields[4]), root: unescapeMountPath(fields[3])}
		switch fstype {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			for _, o := range strings.Split(super, ",") {
				switch o {
				case "rw", "ro", "clone_children", "noprefix", "xattr", "cpuset_v2_mode":
				default:
					if !strings.HasPrefix(o, "release_agent=") {
						m.controllers = append(m.controllers, o)
					}
				}
			}
		default:
			continue
		}
		l.mounts = append(l.mounts, m)
		for _, c := range m.controllers {
			if _, dup := l.byCtrl[c]; !dup {
				l.byCtrl[c] = m
			}
		}
		if m.v2 && l.unified && m.dir == "/sys/fs/cgroup" {
			l.byCtrl[""] = m
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if l.unified {
		if _, ok := l.byCtrl[""]; !ok {
			return nil, errors.New("cgroup v2 is mounted at /sys/fs/cgroup but not listed in mountinfo")
		}
		return l, nil
	}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
		if _, ok := l.byCtrl[c]; !ok {
			return nil, fmt.Errorf("cgroup v1 controller %s is not mounted", c)
		}
	}
	return l, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// String names the layout for logs and health messages.
func (l *cgroupLayout) String() string {
	if l.unified {
		return "v2"
	}
	for _, m := range l.mounts {
		if m.v2 {
			return "v1 (hybrid)"
		}
	}
	return "v1"
}

// dir returns the directory of cgroup p for a v1 controller; on v2 the
// controller is ignored.
func (l *cgroupLayout) dir(ctrl, p string) string {
	if l.unified {
		return l.byCtrl[""].path(p)
	}
	return l.byCtrl[ctrl].path(p)
}

// podCgroup returns the cgroup path of a sandbox.
func podCgroup(sandboxID string) string { return path.Join(cgroupParent, sandboxID) }

// containerCgroup returns the cgroup path of a container.
func containerCgroup(sandboxID, containerID string) string {
	return path.Join(cgroupParent, sandboxID, containerID)
}

// createPod makes the pod cgroup p and applies r to it.
func (l *cgroupLayout) createPod(p string, r *runtimev1.Resources) error {
	if l.unified {
		root := l.byCtrl[""]
		// Controllers must be enabled in every ancestor's subtree_control
		// for the pod's (and its containers') limits to work.
		for _, dir := range []string{root.dir, root.path(cgroupParent), root.path(p)} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if dir == root.path(p) {
				break
			}
			if err := enableControllers(dir); err != nil {
				return err
			}
		}
		if err := enableControllers(root.path(p)); err != nil {
			return err
		}
		return l.setPodLimits(p, r)
	}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
		if err := os.MkdirAll(l.dir(c, p), 0o755); err != nil {
			return err
		}
	}
	return l.setPodLimits(p, r)
}

// enableControllers enables cpu, memory and pids (those available) for
// the children of the v2 cgroup dir.
func enableControllers(dir string) error {
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return err
	}
	var want []string
	for _, c := range strings.Fields(string(avail)) {
		switch c {
		case "cpu", "memory", "pids", "io", "cpuset":
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 {
		return nil
	}
	return os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(want, " ")), 0)
}

// setPodLimits writes r's limits into the pod cgroup p.
func (l *cgroupLayout) setPodLimits(p string, r *runtimev1.Resources) error {
	if r == nil {
		return nil
	}
	w := func(ctrl, file, val string) error {
		return os.WriteFile(filepath.Join(l.dir(ctrl, p), file), []byte(val), 0)
	}
	if l.unified {
		if r.CpuMillis > 0 {
			quota, period := cpuQuota(r.CpuMillis)
			if err := w("", "cpu.max", fmt.Sprintf("%d %d", quota, period)); err != nil {
				return err
			}
		}
		if r.CpuSharesMillis > 0 {
			if err := w("", "cpu.weight", strconv.FormatUint(sharesToWeight(cpuShares(r.CpuSharesMillis)), 10)); err != nil {
				return err
			}
		}
		if r.MemoryBytes > 0 {
			if err := w("", "memory.max", strconv.FormatInt(r.MemoryBytes, 10)); err != nil {
				return err
			}
			// No swapping around the limit (ignored where swap is not accounted).
			_ = w("", "memory.swap.max", "0")
		}
		if r.Pids > 0 {
			if err := w("", "pids.max", strconv.FormatInt(r.Pids, 10)); err != nil {
				return err
			}
		}
		return nil
	}
	if r.CpuMillis > 0 {
		quota, period := cpuQuota(r.CpuMillis)
		if err := w("cpu", "cpu.cfs_period_us", strconv.FormatUint(period, 10)); err != nil {
			return err
		}
		if err := w("cpu", "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); err != nil {
			return err
		}
	}
	if r.CpuSharesMillis > 0 {
		if err := w("cpu", "cpu.shares", strconv.FormatUint(cpuShares(r.CpuSharesMillis), 10)); err != nil {
			return err
		}
	}
	if r.MemoryBytes > 0 {
		// Memory+swap equal to memory: the limit is not dodged by swapping.
		// The kernel keeps memsw at or above memory, so a raise writes memsw
		// first and a cut memory first.
		files := []string{"memory.limit_in_bytes"}
		if _, err := os.Stat(filepath.Join(l.dir("memory", p), "memory.memsw.limit_in_bytes")); err == nil {
			files = append(files, "memory.memsw.limit_in_bytes")
			if cur, err := readUint(filepath.Join(l.dir("memory", p), "memory.limit_in_bytes")); err == nil && uint64(r.MemoryBytes) > cur {
				slices.Reverse(files)
			}
		}
		for _, f := range files {
			if err := w("memory", f, strconv.FormatInt(r.MemoryBytes, 10)); err != nil {
				return err
			}
		}
	}
	if r.Pids > 0 {
		if err := w("pids", "pids.max", strconv.FormatInt(r.Pids, 10)); err != nil {
			return err
		}
	}
	return nil
}

// removeTree removes cgroup p (and any cgroups left below it) from every
// hierarchy. Processes still in it make it fail with EBUSY; it retries
// for a short while, as the kernel frees an emptied cgroup asynchronously.
func (l *cgroupLayout) removeTree(p string) error {
	var errs []error
	for _, m := range l.mounts {
		dir := m.path(p)
		if err := rmdirTree(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rmdirTree removes the cgroup directory dir and its descendants,
// deepest first. A missing dir is not an error.
func rmdirTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := rmdirTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cgroupExists reports whether cgroup p exists in any hierarchy.
func (l *cgroupLayout) exists(p string) bool {
	for _, m := range l.mounts {
		if _, err := os.Stat(m.path(p)); err == nil {
			return true
		}
	}
	return false
}

// stats reads the usage of the container cgroup p.
func (l *cgroupLayout) stats(p string) (cpuNanos, memUsage, memLimit, pids uint64, err error) {
	if l.unified {
		dir := l.dir("", p)
		usec, err := shim.ReadKeyed(filepath.Join(dir, "cpu.stat"), "usage_usec")
		if err != nil {
			return 0, 0, 0, 0, err
		}
		cpuNanos = usec * 1000
		memUsage, _ = readUint(filepath.Join(dir, "memory.current"))
		memLimit, _ = readUint(filepath.Join(dir, "memory.max")) // "max" reads as 0: no limit
		pids, _ = readUint(filepath.Join(dir, "pids.current"))
		return cpuNanos, memUsage, memLimit, pids, nil
	}
	cpuNanos, err = readUint(filepath.Join(l.dir("cpuacct", p), "cpuacct.usage"))
	if err != nil {
		return 0, 0, 0, 0, err
	}
	memUsage, _ = readUint(filepath.Join(l.dir("memory", p), "memory.usage_in_bytes"))
	memLimit, _ = readUint(filepath.Join(l.dir("memory", p), "memory.limit_in_bytes"))
	if memLimit >= 1<<62 { // v1 reports "no limit" as a huge page-aligned number
		memLimit = 0
	}
	pids, _ = readUint(filepath.Join(l.dir("pids", p), "pids.current"))
	return cpuNanos, memUsage, memLimit, pids, nil
}

// oomFile returns the file and key whose counter says how many processes
// of cgroup p the OOM killer killed.
func (l *cgroupLayout) oomFile(p string) (file, key string) {
	if l.unified {
		return filepath.Join(l.dir("", p), "memory.events"), "oom_kill"
	}
	return filepath.Join(l.dir("memory", p), "memory.oom_control"), "oom_kill"
}

// readUint reads a file holding one unsigned number ("max" reads as 0).
func readUint(file string) (uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// cpuPeriod is the CFS period used for cpu limits, in microseconds.
const cpuPeriod = 100000

// cpuQuota converts a limit in thousandths of a core to a CFS quota and
// period in microseconds.
func cpuQuota(millis int64) (quota int64, period uint64) {
	quota = millis * cpuPeriod / 1000
	if quota < 1000 { // the kernel's minimum is 1 ms
		quota = 1000
	}
	return quota, cpuPeriod
}

// cpuShares converts a request in thousandths of a core to v1 cpu.shares.
func cpuShares(millis int64) uint64 {
	s := millis * 1024 / 1000
	if s < 2 {
		s = 2
	}
	if s > 262144 {
		s = 262144
	}
	return uint64(s)
}

// sharesToWeight converts v1 shares to a v2 cpu.weight, as runc does.
func sharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	return 1 + ((shares-2)*9999)/262142
}
