package containerd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/sandboxconf"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"
)

// The type URLs containerd's shims decode JSON OCI types by.
const (
	specTypeURL      = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
	processTypeURL   = "types.containerd.io/opencontainers/runtime-spec/1/Process"
	resourcesTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
)

// jsonAny wraps a JSON-encoded OCI type the way containerd's typeurl does.
func jsonAny(typeURL string, v any) (*anypb.Any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: typeURL, Value: b}, nil
}

// dockerCapabilities are what a container gets: Docker's defaults.
var dockerCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// hiddenPaths are masked in containers and lockedPaths read-only
// (Docker's lists).
var (
	hiddenPaths = []string{"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap"}
	lockedPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// containerSpec is what a container's OCI spec is made of.
type containerSpec struct {
	id         string
	sandbox    *sandboxRecord
	sandboxDir string // holds hostname, hosts, resolv.conf
	cfg        *runtimev1.ContainerConfig
	image      *runtimev1.Image
	cgroup     string   // cgroupsPath
	allowed    []string // allowed mount roots
	cgroups    *cgroupHost
}

// build returns the container's OCI runtime spec. Errors about the request
// are ErrInvalidArgument and name the field.
func (in containerSpec) build() (*specs.Spec, error) {
	cfg, img := in.cfg, in.image
	args := argv(cfg, img)
	if len(args) == 0 || args[0] == "" {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "config.command", "no command: the container sets none and the image has no entrypoint or cmd")
	}
	cwd, field := cfg.WorkingDir, "config.working_dir"
	if cwd == "" {
		cwd, field = img.GetWorkingDir(), "image working dir"
	}
	if cwd == "" {
		cwd = "/"
	}
	if err := safeWorkingDir(cwd); err != nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, field, err.Error())
	}
	user, err := processUser(cfg, img)
	if err != nil {
		return nil, err
	}
	hostname := sandboxconf.Hostname(in.sandbox.config())
	mounts, err := in.mounts()
	if err != nil {
		return nil, err
	}
	caps := slices.Clone(dockerCapabilities)
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User:            user,
			Args:            args,
			Env:             environment(cfg, img, hostname),
			Cwd:             path.Clean(cwd),
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: cfg.ReadOnlyRootfs},
		Hostname: hostname,
		Mounts:   mounts,
		Annotations: map[string]string{
			"dev.paddock.sandbox-id": in.sandbox.ID,
			"dev.paddock.container":  cfg.Name,
		},
		Linux: &specs.Linux{
			CgroupsPath: in.cgroup,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: in.sandbox.NetnsPath},
			},
			Resources:     in.cgroups.resources(cfg.Resources),
			MaskedPaths:   slices.Clone(hiddenPaths),
			ReadonlyPaths: slices.Clone(lockedPaths),
			Seccomp:       seccompProfile(),
		},
	}
	if in.cgroups.v2 {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	if gVisor(in.sandbox.Runtime) {
		gvisorSpec(s, in.sandbox.ID)
	}
	return s, nil
}

// argv follows Kubernetes: command replaces the image's entrypoint, args
// its cmd, and a command without args drops the image's cmd.
func argv(cfg *runtimev1.ContainerConfig, img *runtimev1.Image) []string {
	switch {
	case len(cfg.Command) > 0:
		return append(slices.Clone(cfg.Command), cfg.Args...)
	case len(cfg.Args) > 0:
		return append(slices.Clone(img.GetEntrypoint()), cfg.Args...)
	}
	return append(slices.Clone(img.GetEntrypoint()), img.GetCmd()...)
}

// environment is PATH and HOSTNAME, then the image's variables, then the
// container's, later ones replacing earlier ones of the same name.
func environment(cfg *runtimev1.ContainerConfig, img *runtimev1.Image, hostname string) []string {
	vars := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=" + hostname}
	vars = append(vars, img.GetEnv()...)
	keys := make([]string, 0, len(cfg.Env))
	for k := range cfg.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vars = append(vars, k+"="+cfg.Env[k])
	}
	pos := map[string]int{}
	var out []string
	for _, kv := range vars {
		name, _, _ := strings.Cut(kv, "=")
		if i, ok := pos[name]; ok {
			out[i] = kv
			continue
		}
		pos[name] = len(out)
		out = append(out, kv)
	}
	return out
}

// safeWorkingDir refuses a relative working directory and one in /proc,
// where /proc/self/fd/N could reach a leaked host descriptor
// (CVE-2024-21626).
func safeWorkingDir(cwd string) error {
	if !path.IsAbs(cwd) {
		return fmt.Errorf("%q is not an absolute path", cwd)
	}
	if c := path.Clean(cwd); c == "/proc" || strings.HasPrefix(c, "/proc/") {
		return fmt.Errorf("%q is inside /proc, which is refused (a working directory there can escape the container, CVE-2024-21626)", cwd)
	}
	return nil
}

// processUser is the container's uid/gid when set, else the image's
// numeric user ("uid" or "uid:gid"), else root. Named image users are
// refused with a message: their lookup needs the image's /etc/passwd.
func processUser(cfg *runtimev1.ContainerConfig, img *runtimev1.Image) (specs.User, error) {
	if cfg.HasUser {
		return specs.User{UID: cfg.Uid, GID: cfg.Gid}, nil
	}
	u := img.GetUser()
	if u == "" {
		return specs.User{}, nil
	}
	uidStr, gidStr, _ := strings.Cut(u, ":")
	uid, err := strconv.ParseUint(uidStr, 10, 32)
	if err != nil {
		return specs.User{}, errdefs.Field(errdefs.ErrInvalidArgument, "image user", fmt.Sprintf("user %q: the containerd plugin runs images with numeric users only; set the container's uid and gid", u))
	}
	var gid uint64
	if gidStr != "" {
		if gid, err = strconv.ParseUint(gidStr, 10, 32); err != nil {
			return specs.User{}, errdefs.Field(errdefs.ErrInvalidArgument, "image user", fmt.Sprintf("group %q: the containerd plugin runs images with numeric groups only; set the container's uid and gid", gidStr))
		}
	}
	return specs.User{UID: uint32(uid), GID: uint32(gid)}, nil
}

// mounts are the kernel file systems, the sandbox's shared files and the
// container's own bind mounts, whose host paths must resolve inside the
// allowed roots.
func (in containerSpec) mounts() ([]specs.Mount, error) {
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
	taken := map[string]bool{}
	for _, m := range ms {
		taken[m.Destination] = true
	}
	roots := make([]string, 0, len(in.allowed))
	for _, r := range in.allowed {
		if resolved, err := filepath.EvalSymlinks(r); err == nil {
			r = resolved
		}
		roots = append(roots, filepath.Clean(r))
	}
	var binds []specs.Mount
	for i, m := range in.cfg.Mounts {
		field := fmt.Sprintf("config.mounts[%d]", i)
		dst := m.GetContainerPath()
		if !path.IsAbs(dst) {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, field+".container_path", fmt.Sprintf("%q is not an absolute path", dst))
		}
		dst = path.Clean(dst)
		if dst == "/" || taken[dst] || under(dst, "/proc") || under(dst, "/sys") {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, field+".container_path", fmt.Sprintf("%q may not be mounted over", dst))
		}
		taken[dst] = true
		src, err := insideRoots(m.GetHostPath(), roots)
		if err != nil {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, field+".host_path", err.Error())
		}
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		binds = append(binds, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "nosuid", "nodev", mode}})
	}
	for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
		if !taken["/etc/"+f] {
			ms = append(ms, specs.Mount{Destination: "/etc/" + f, Type: "bind", Source: filepath.Join(in.sandboxDir, f),
				Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", "ro"}})
		}
	}
	// Parents first, so that a mount inside another lands on it.
	slices.SortStableFunc(binds, func(a, b specs.Mount) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	return append(ms, binds...), nil
}

// under reports whether p is dir or below it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// insideRoots resolves p's symbolic links and returns the result when it
// lies in one of roots.
func insideRoots(p string, roots []string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%q is not an absolute path", p)
	}
	resolved, err := filepath.EvalSymlinks(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%s does not exist", p)
	} else if err != nil {
		return "", fmt.Errorf("%s: %v", p, err)
	}
	for _, r := range roots {
		if under(resolved, r) {
			return resolved, nil
		}
	}
	return "", fmt.Errorf("%s (resolved %s) is outside the allowed mount roots %v", p, resolved, roots)
}

// deniedSyscalls are refused with EPERM by the containers' seccomp filter:
// the calls that change mounts, namespaces, the kernel, its keyrings,
// clocks and modules, trace other processes, or reach the kernel through
// io_uring and BPF. Most need capabilities a container does not have; the
// filter is a second wall in front of kernel bugs behind them.
var deniedSyscalls = []string{
	"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
	"finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms",
	"init_module", "io_uring_enter", "io_uring_register", "io_uring_setup", "ioperm", "iopl",
	"kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mount",
	"mount_setattr", "move_mount", "name_to_handle_at", "nfsservctl",
	"open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
	"process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl", "reboot",
	"request_key", "setns", "settimeofday", "stime", "swapoff", "swapon",
	"syslog", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86",
	"vm86old", "_sysctl",
}

// seccompProfile allows what deniedSyscalls does not; clone may not make
// namespaces (one rule per namespace flag), and clone3 (whose flags a
// filter cannot read) answers ENOSYS so that the C library falls back to
// clone.
func seccompProfile() *specs.LinuxSeccomp {
	eperm, enosys := uint(unix.EPERM), uint(unix.ENOSYS)
	rules := []specs.LinuxSyscall{
		{Names: slices.Clone(deniedSyscalls), Action: specs.ActErrno, ErrnoRet: &eperm},
		{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
	}
	for _, flag := range []uint64{unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER,
		unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWCGROUP} {
		rules = append(rules, specs.LinuxSyscall{Names: []string{"clone"}, Action: specs.ActErrno, ErrnoRet: &eperm,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: flag, ValueTwo: flag, Op: specs.OpMaskedEqual}}})
	}
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM},
		Syscalls:      rules,
	}
}
