package ociruntime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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
)

// defaultCapabilities are Docker's default capabilities: what a container
// gets unless it asks for more.
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// maskedPaths are hidden from containers (Docker's list).
var maskedPaths = []string{
	"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
	"/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
}

// readonlyPaths are read-only in containers (Docker's list).
var readonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// defaultPath is PATH when neither the image nor the container sets it.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// specInput is what a container's OCI spec is made of.
type specInput struct {
	id          string
	sandbox     *sandboxRecord
	sandboxDir  string // holds hostname, hosts, resolv.conf
	cfg         *runtimev1.ContainerConfig
	image       *runtimev1.Image
	rootfs      string // absolute path of the prepared root filesystem
	cgroupsPath string
	allowed     []string // allowed mount roots
	unified     bool     // cgroup v2
	memsw       bool     // cgroup v1 accounts swap (memory.memsw.*)
}

// buildSpec returns the OCI runtime spec of a container. Errors about the
// request are ErrInvalidArgument and name the field.
func buildSpec(in specInput) (*specs.Spec, error) {
	cfg, img := in.cfg, in.image
	args, err := processArgs(cfg, img)
	if err != nil {
		return nil, err
	}
	cwd := cfg.WorkingDir
	cwdField := "config.working_dir"
	if cwd == "" {
		cwd, cwdField = img.GetWorkingDir(), "image working dir"
	}
	if cwd == "" {
		cwd = "/"
	}
	if err := checkWorkingDir(cwd); err != nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, cwdField, err.Error())
	}
	if err := checkWorkingDirIn(in.rootfs, cwd); err != nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, cwdField, err.Error())
	}
	user, err := resolveUser(cfg, img, in.rootfs)
	if err != nil {
		return nil, err
	}
	hostname := sandboxconf.Hostname(in.sandbox.Config.Msg)
	seccomp := defaultSeccomp()
	if seccomp == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "no default seccomp profile for this architecture")
	}

	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User: user,
			Args: args,
			Env:  processEnv(cfg, img, hostname),
			Cwd:  path.Clean(cwd),
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  slices.Clone(defaultCapabilities),
				Effective: slices.Clone(defaultCapabilities),
				Permitted: slices.Clone(defaultCapabilities),
			},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: in.rootfs, Readonly: cfg.ReadOnlyRootfs},
		Hostname: hostname,
		Annotations: map[string]string{
			"dev.paddock.sandbox-id": in.sandbox.ID,
			"dev.paddock.container":  cfg.Name,
		},
		Linux: &specs.Linux{
			CgroupsPath: in.cgroupsPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: in.sandbox.NetnsPath},
			},
			Resources:     containerResources(cfg.Resources, in.unified, in.memsw),
			MaskedPaths:   slices.Clone(maskedPaths),
			ReadonlyPaths: slices.Clone(readonlyPaths),
			Seccomp:       seccomp,
		},
	}
	if in.unified {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	mounts, err := containerMounts(cfg.Mounts, in.allowed, in.sandboxDir)
	if err != nil {
		return nil, err
	}
	s.Mounts = mounts
	return s, nil
}

// processArgs are the container's argv, with Kubernetes' rules: command
// replaces the image's entrypoint, args replace its cmd, and a command
// without args drops the image's cmd.
func processArgs(cfg *runtimev1.ContainerConfig, img *runtimev1.Image) ([]string, error) {
	var args []string
	switch {
	case len(cfg.Command) > 0:
		args = append(slices.Clone(cfg.Command), cfg.Args...)
	case len(cfg.Args) > 0:
		args = append(slices.Clone(img.GetEntrypoint()), cfg.Args...)
	default:
		args = append(slices.Clone(img.GetEntrypoint()), img.GetCmd()...)
	}
	if len(args) == 0 || args[0] == "" {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "config.command", "no command: the container sets none and the image has no entrypoint or cmd")
	}
	return args, nil
}

// processEnv is the image's environment overlaid with the container's.
func processEnv(cfg *runtimev1.ContainerConfig, img *runtimev1.Image, hostname string) []string {
	var env []string
	index := map[string]int{}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			env[i] = kv
			return
		}
		index[k] = len(env)
		env = append(env, kv)
	}
	set(defaultPath)
	set("HOSTNAME=" + hostname)
	for _, kv := range img.GetEnv() {
		set(kv)
	}
	for _, k := range sortedKeys(cfg.Env) {
		set(k + "=" + cfg.Env[k])
	}
	return env
}

// checkWorkingDir rejects a working directory that is not absolute or
// lies in /proc: a cwd of /proc/self/fd/N points outside the container's
// root through a file descriptor runc leaked (CVE-2024-21626), and no
// program needs a working directory in /proc.
func checkWorkingDir(cwd string) error {
	if !path.IsAbs(cwd) {
		return fmt.Errorf("%q is not an absolute path", cwd)
	}
	clean := path.Clean(cwd)
	if clean == "/proc" || strings.HasPrefix(clean, "/proc/") {
		return fmt.Errorf("%q is inside /proc; a working directory there is refused (it can escape the container, CVE-2024-21626)", cwd)
	}
	return nil
}

// checkWorkingDirIn rejects a working directory that, resolved inside
// the container's root filesystem rootfs (resolveInRoot), lies in /proc:
// a symbolic link in the image such as /work -> /proc/self/fd/7 escapes
// as the path itself would (checkWorkingDir).
func checkWorkingDirIn(rootfs, cwd string) error {
	resolved, err := resolveInRoot(rootfs, cwd)
	if err != nil {
		return fmt.Errorf("%q: %w", cwd, err)
	}
	if resolved == "/proc" || strings.HasPrefix(resolved, "/proc/") {
		return fmt.Errorf("%q resolves to %q in the container's root filesystem, inside /proc; a working directory there is refused (it can escape the container, CVE-2024-21626)", cwd, resolved)
	}
	return nil
}

// maxSymlinks bounds the symbolic links resolveInRoot follows, as the
// kernel's ELOOP limit does.
const maxSymlinks = 40

// resolveInRoot resolves p, an absolute path in a container, as the
// container would see it in its root filesystem root (a host directory),
// and returns the resolved path in the container: symbolic links are
// followed with root as "/", relative ones from their directory, and
// ".." never climbs above root. Nothing outside root is ever looked at.
// The part of p from the first component that does not exist is taken
// as it is (the runtime makes a missing working directory).
func resolveInRoot(root, p string) (string, error) {
	todo := strings.Split(p, "/")
	cur := "/"
	links := 0
	for len(todo) > 0 {
		part := todo[0]
		todo = todo[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		host := filepath.Join(root, next)
		fi, err := os.Lstat(host)
		if errors.Is(err, os.ErrNotExist) {
			cur = next
			continue
		} else if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", fmt.Errorf("more than %d symbolic links", maxSymlinks)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return cur, nil
}

// resolveUser returns the process's user: the container's uid/gid if set,
// else the image's user ("uid", "uid:gid", "name" or "name:group", names
// looked up in the image's /etc/passwd and /etc/group), else root.
func resolveUser(cfg *runtimev1.ContainerConfig, img *runtimev1.Image, rootfs string) (specs.User, error) {
	if cfg.HasUser {
		return specs.User{UID: cfg.Uid, GID: cfg.Gid}, nil
	}
	u := img.GetUser()
	if u == "" {
		return specs.User{}, nil
	}
	name, group, hasGroup := strings.Cut(u, ":")
	var user specs.User
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		user.UID = uint32(n)
		// The primary group of a numeric user is its passwd entry's, or 0.
		if e, err := lookupPasswd(rootfs, func(f []string) bool { return f[2] == name }); err == nil {
			if g, err := strconv.ParseUint(e[3], 10, 32); err == nil {
				user.GID = uint32(g)
			}
		}
	} else {
		e, err := lookupPasswd(rootfs, func(f []string) bool { return f[0] == name })
		if err != nil {
			return specs.User{}, errdefs.Field(errdefs.ErrInvalidArgument, "image user", fmt.Sprintf("user %q: %v", name, err))
		}
		uid, err1 := strconv.ParseUint(e[2], 10, 32)
		gid, err2 := strconv.ParseUint(e[3], 10, 32)
		if err1 != nil || err2 != nil {
			return specs.User{}, errdefs.Field(errdefs.ErrInvalidArgument, "image user", fmt.Sprintf("user %q has a malformed /etc/passwd entry", name))
		}
		user.UID, user.GID = uint32(uid), uint32(gid)
	}
	if hasGroup {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			user.GID = uint32(n)
		} else {
			e, err := lookupFile(rootfs, "/etc/group", 3, func(f []string) bool { return f[0] == group })
			if err != nil {
				return specs.User{}, errdefs.Field(errdefs.ErrInvalidArgument, "image user", fmt.Sprintf("group %q: %v", group, err))
			}
			gid, err := strconv.ParseUint(e[2], 10, 32)
			if err != nil {
				return specs.User{}, errdefs.Field(errdefs.ErrInvalidArgument, "image user", fmt.Sprintf("group %q has a malformed /etc/group entry", group))
			}
			user.GID = uint32(gid)
		}
	}
	return user, nil
}

func lookupPasswd(rootfs string, match func([]string) bool) ([]string, error) {
	return lookupFile(rootfs, "/etc/passwd", 7, match)
}

// lookupFile finds the first line of a colon-separated file of the image
// (resolved inside rootfs, so a symbolic link cannot point at the host's
// file) whose fields match.
func lookupFile(rootfs, name string, nfields int, match func([]string) bool) ([]string, error) {
	f, err := openInRoot(rootfs, name)
	if err != nil {
		return nil, fmt.Errorf("read the image's %s: %w", name, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 4<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) < nfields {
			continue
		}
		if match(fields) {
			return fields, nil
		}
	}
	return nil, fmt.Errorf("not found in the image's %s", name)
}

// openInRoot opens name inside root with every path component resolved
// within root (openat2 RESOLVE_IN_ROOT).
func openInRoot(root, name string) (*os.File, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, strings.TrimPrefix(name, "/"), &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, name)), nil
}

// containerResources converts the contract's limits to the spec's.
func containerResources(r *runtimev1.Resources, unified, memsw bool) *specs.LinuxResources {
	res := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	if r == nil {
		return res
	}
	if r.CpuMillis > 0 || r.CpuSharesMillis > 0 {
		res.CPU = &specs.LinuxCPU{}
		if r.CpuMillis > 0 {
			quota, period := cpuQuota(r.CpuMillis)
			res.CPU.Quota, res.CPU.Period = &quota, &period
		}
		if r.CpuSharesMillis > 0 {
			shares := cpuShares(r.CpuSharesMillis)
			res.CPU.Shares = &shares
		}
	}
	if r.MemoryBytes > 0 {
		limit := r.MemoryBytes
		res.Memory = &specs.LinuxMemory{Limit: &limit}
		// Memory+swap equal to the limit: no swapping around it.
		if unified || memsw {
			swap := limit
			res.Memory.Swap = &swap
		}
	}
	if r.Pids > 0 {
		limit := r.Pids
		res.Pids = &specs.LinuxPids{Limit: &limit}
	}
	return res
}

// containerMounts returns the default mounts, the sandbox's shared files
// and the container's own mounts, whose host paths must lie inside the
// allowed roots once symbolic links are resolved.
func containerMounts(ms []*runtimev1.Mount, allowed []string, sandboxDir string) ([]specs.Mount, error) {
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
	reserved := map[string]bool{}
	for _, m := range mounts {
		reserved[m.Destination] = true
	}
	user := make([]specs.Mount, 0, len(ms))
	seen := map[string]bool{}
	roots := resolveRoots(allowed)
	for i, m := range ms {
		field := fmt.Sprintf("config.mounts[%d]", i)
		dst := m.GetContainerPath()
		if !path.IsAbs(dst) {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, field+".container_path", fmt.Sprintf("%q is not an absolute path", dst))
		}
		dst = path.Clean(dst)
		if dst == "/" || reserved[dst] || dst == "/proc" || strings.HasPrefix(dst, "/proc/") || dst == "/sys" || strings.HasPrefix(dst, "/sys/") {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, field+".container_path", fmt.Sprintf("%q may not be mounted over", dst))
		}
		if seen[dst] {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, field+".container_path", fmt.Sprintf("%q is mounted twice", dst))
		}
		seen[dst] = true
		src, err := allowedHostPath(m.GetHostPath(), roots)
		if err != nil {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, field+".host_path", err.Error())
		}
		opts := []string{"rbind", "rprivate", "nosuid", "nodev"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		user = append(user, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
		dst := "/etc/" + f
		if seen[dst] {
			continue // the container brings its own
		}
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: filepath.Join(sandboxDir, f),
			Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", "ro"}})
	}
	// Parents before children, so that a mount inside another lands on it.
	slices.SortStableFunc(user, func(a, b specs.Mount) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	return append(mounts, user...), nil
}

// resolveRoots resolves the symbolic links of the allowed roots (a root
// that does not exist stays as written; nothing can resolve inside it).
func resolveRoots(roots []string) []string {
	out := make([]string, 0, len(roots))
	for _, r := range roots {
		if rr, err := filepath.EvalSymlinks(r); err == nil {
			r = rr
		}
		out = append(out, filepath.Clean(r))
	}
	return out
}

// allowedHostPath resolves p's symbolic links and returns the result if
// it lies inside one of roots.
func allowedHostPath(p string, roots []string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%q is not an absolute path", p)
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s does not exist", p)
		}
		return "", fmt.Errorf("%s: %v", p, err)
	}
	for _, r := range roots {
		if resolved == r || strings.HasPrefix(resolved, r+string(filepath.Separator)) {
			return resolved, nil
		}
	}
	if resolved != filepath.Clean(p) {
		return "", fmt.Errorf("%s resolves to %s, which is outside the allowed mount roots %v", p, resolved, roots)
	}
	return "", fmt.Errorf("%s is outside the allowed mount roots %v", p, roots)
}
