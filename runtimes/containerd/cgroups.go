package containerd

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"golang.org/x/sys/unix"
)

// cgroupRoot is where the pods' cgroups live in every hierarchy: one
// directory per sandbox holding the pod's limits, with one per container
// below it (made by runc from the spec's cgroupsPath).
const cgroupRoot = "/paddock-containerd"

// cgroupHost is the host's cgroup layout as far as the plugin needs it:
// v2 (unified at /sys/fs/cgroup) or v1 with the cpu, cpuacct, memory and
// pids controllers at /sys/fs/cgroup/NAME (Debian's and systemd's
// layout, hybrid included).
type cgroupHost struct {
	v2    bool
	memsw bool // v1 accounts swap (memory.memsw.*)
}

func detectCgroupHost() (*cgroupHost, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return nil, fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return &cgroupHost{v2: true}, nil
	}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, "tasks")); err != nil {
			return nil, fmt.Errorf("cgroup v1 controller %s is not mounted at /sys/fs/cgroup/%s", c, c)
		}
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return &cgroupHost{memsw: err == nil}, nil
}

// dir is cgroup p's directory for a v1 controller (ignored on v2).
func (h *cgroupHost) dir(ctrl, p string) string {
	if h.v2 {
		return filepath.Join("/sys/fs/cgroup", p)
	}
	return filepath.Join("/sys/fs/cgroup", ctrl, p)
}

func podCgroupPath(sandboxID string) string { return cgroupRoot + "/" + sandboxID }

// resources converts the contract's limits to the spec's; devices are
// denied but for runc's defaults.
func (h *cgroupHost) resources(r *runtimev1.Resources) *specs.LinuxResources {
	res := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	if r == nil {
		return res
	}
	if r.CpuMillis > 0 || r.CpuSharesMillis > 0 {
		res.CPU = &specs.LinuxCPU{}
		if r.CpuMillis > 0 {
			period := uint64(100000)
			quota := r.CpuMillis * int64(period) / 1000
			res.CPU.Quota, res.CPU.Period = &quota, &period
		}
		if r.CpuSharesMillis > 0 {
			shares := uint64(max(2, r.CpuSharesMillis*1024/1000))
			res.CPU.Shares = &shares
		}
	}
	if r.MemoryBytes > 0 {
		limit := r.MemoryBytes
		res.Memory = &specs.LinuxMemory{Limit: &limit}
		if h.v2 || h.memsw {
			swap := limit // no swapping around the limit
			res.Memory.Swap = &swap
		}
	}
	if r.Pids > 0 {
		limit := r.Pids
		res.Pids = &specs.LinuxPids{Limit: &limit}
	}
	return res
}

// createPod makes the pod cgroup p with the pod's limits.
func (h *cgroupHost) createPod(p string, r *runtimev1.Resources) error {
	if h.v2 {
		// The controllers must be enabled down to the pod for its limits
		// and its containers' to work.
		for _, d := range []string{"/", cgroupRoot, p} {
			dir := h.dir("", d)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if d == p {
				break
			}
			for _, c := range []string{"+cpu", "+memory", "+pids"} {
				if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(c), 0); err != nil && !errors.Is(err, syscall.EBUSY) {
					return fmt.Errorf("enable %s in %s: %w", c[1:], dir, err)
				}
			}
		}
	} else {
		for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
			if err := os.MkdirAll(h.dir(c, p), 0o755); err != nil {
				return err
			}
		}
	}
	if r == nil {
		return nil
	}
	for _, l := range []struct {
		set   func(string, int64) error
		value int64
	}{{h.setMemoryLimit, r.MemoryBytes}, {h.setCPULimit, r.CpuMillis}, {h.setPidsLimit, r.Pids}} {
		if l.value > 0 {
			if err := l.set(p, l.value); err != nil {
				return err
			}
		}
	}
	return nil
}

// setMemoryLimit sets cgroup p's memory limit; 0 lifts it.
func (h *cgroupHost) setMemoryLimit(p string, bytes int64) error {
	if h.v2 {
		return writeLimit(h.dir("", p), "memory.max", bytes, "max")
	}
	return writeLimit(h.dir("memory", p), "memory.limit_in_bytes", bytes, "-1")
}

// setCPULimit sets cgroup p's CPU quota in thousandths of a CPU over a
// 100 ms period; 0 lifts it.
func (h *cgroupHost) setCPULimit(p string, millis int64) error {
	if h.v2 {
		v := "max 100000"
		if millis > 0 {
			v = strconv.FormatInt(millis*100, 10) + " 100000"
		}
		return writeLimit(h.dir("", p), "cpu.max", 0, v)
	}
	dir := h.dir("cpu", p)
	if err := writeLimit(dir, "cpu.cfs_period_us", 100000, ""); err != nil {
		return err
	}
	return writeLimit(dir, "cpu.cfs_quota_us", millis*100, "-1")
}

// setPidsLimit sets cgroup p's pids limit; 0 lifts it.
func (h *cgroupHost) setPidsLimit(p string, n int64) error {
	return writeLimit(h.dir("pids", p), "pids.max", n, "max")
}

// writeLimit writes value to the limit file dir/file, or none when
// value is 0.
func writeLimit(dir, file string, value int64, none string) error {
	v := none
	if value > 0 {
		v = strconv.FormatInt(value, 10)
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil {
		return fmt.Errorf("pod cgroup %s = %s: %w", file, v, err)
	}
	return nil
}

// remove deletes cgroup p and what is below it (which must hold no
// processes) in every hierarchy — also those the plugin does not limit,
// where the shim's runc made the containers' cgroups under p (blkio,
// devices, freezer, ...); a missing cgroup is fine.
func (h *cgroupHost) remove(p string) error {
	ctrls := []string{""}
	if !h.v2 {
		ctrls = v1Hierarchies()
	}
	var errs []error
	for _, c := range ctrls {
		root := h.dir(c, p)
		var dirs []string
		filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// v1Hierarchies lists the mounted cgroup v1 hierarchies by their
// directory under /sys/fs/cgroup (cpu and cpuacct may be links to one).
func v1Hierarchies() []string {
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, e := range entries {
		if e.IsDir() || e.Type()&os.ModeSymlink != 0 {
			out = append(out, e.Name())
		}
	}
	return out
}

// usage reads cgroup p's cumulative CPU time, memory use and limit and
// number of processes.
func (h *cgroupHost) usage(p string) (cpu, mem, limit, pids uint64, err error) {
	if h.v2 {
		dir := h.dir("", p)
		usec, err := keyedValue(filepath.Join(dir, "cpu.stat"), "usage_usec")
		if err != nil {
			return 0, 0, 0, 0, err
		}
		cpu = usec * 1000
		mem, err = fileUint(filepath.Join(dir, "memory.current"))
		if err != nil {
			return 0, 0, 0, 0, err
		}
		limit, _ = fileUint(filepath.Join(dir, "memory.max")) // "max": 0, no limit
		pids, _ = fileUint(filepath.Join(dir, "pids.current"))
		return cpu, mem, limit, pids, nil
	}
	if cpu, err = fileUint(filepath.Join(h.dir("cpuacct", p), "cpuacct.usage")); err != nil {
		return 0, 0, 0, 0, err
	}
	if mem, err = fileUint(filepath.Join(h.dir("memory", p), "memory.usage_in_bytes")); err != nil {
		return 0, 0, 0, 0, err
	}
	limit, _ = fileUint(filepath.Join(h.dir("memory", p), "memory.limit_in_bytes"))
	if limit >= 1<<62 {
		limit = 0 // unlimited
	}
	pids, _ = fileUint(filepath.Join(h.dir("pids", p), "pids.current"))
	return cpu, mem, limit, pids, nil
}

// oomKills returns how many processes of cgroup p the kernel's OOM killer
// killed; 0 when the cgroup is gone.
func (h *cgroupHost) oomKills(p string) uint64 {
	file := filepath.Join(h.dir("memory", p), "memory.oom_control")
	if h.v2 {
		file = filepath.Join(h.dir("", p), "memory.events")
	}
	n, _ := keyedValue(file, "oom_kill")
	return n
}

func fileUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// keyedValue reads "key value" lines (cpu.stat, memory.oom_control).
func keyedValue(path, key string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}
