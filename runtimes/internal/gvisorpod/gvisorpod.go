// Package gvisorpod holds what Paddock's two ways of running a pod as one
// gVisor sandbox share — the runsc plugin (the runsc flavor of
// runtimes/internal/ociruntime) and the containerd plugin's runsc handler:
// the CRI annotations by which runsc puts a pod's containers into one
// sandbox, and the sandbox's root container, a pause process that needs
// no image.
package gvisorpod

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The CRI annotations runsc reads: a container of type sandbox starts a
// sandbox, one of type container joins the sandbox whose id it names.
const (
	AnnotationContainerType = "io.kubernetes.cri.container-type"
	AnnotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	ContainerTypeSandbox    = "sandbox"
	ContainerTypeContainer  = "container"
	// annotationPaddockSandbox names the pod's sandbox for Paddock's own
	// bookkeeping (runsc ignores it).
	annotationPaddockSandbox = "dev.paddock.sandbox-id"
)

// JoinSandbox makes spec s a container of the gVisor sandbox sandboxID.
func JoinSandbox(s *specs.Spec, sandboxID string) {
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[AnnotationContainerType] = ContainerTypeContainer
	s.Annotations[AnnotationSandboxID] = sandboxID
}

// Pause is a sandbox's root container.
type Pause struct {
	SandboxID string
	Hostname  string
	// NetnsPath is the pod's network namespace, whose interfaces gVisor's
	// network stack takes over.
	NetnsPath string
	// CgroupsPath is the pod cgroup, which holds the whole sandbox.
	CgroupsPath string
	// Root is the root file system WriteRoot made (a path, relative to
	// the bundle or absolute).
	Root string
	// Rlimits apply to the pause process and so to every exec of the
	// sandbox.
	Rlimits []specs.POSIXRlimit
}

// WriteRoot makes dir the pause container's root file system: the pause
// binary alone.
func WriteRoot(dir string) error {
	elf, err := pauseELF()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pause root: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pause"), elf, 0o755); err != nil {
		return fmt.Errorf("pause root: %w", err)
	}
	return nil
}

// Spec is the pause container's OCI spec: no capabilities, no new
// privileges, a read-only root, the pod's namespaces.
func (p Pause) Spec() *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args:            []string{"/pause"},
			Cwd:             "/",
			Env:             []string{"PATH=/"},
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{},
			Rlimits:         p.Rlimits,
		},
		Root:     &specs.Root{Path: p.Root, Readonly: true},
		Hostname: p.Hostname,
		Annotations: map[string]string{
			AnnotationContainerType:  ContainerTypeSandbox,
			AnnotationSandboxID:      p.SandboxID,
			annotationPaddockSandbox: p.SandboxID,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: p.CgroupsPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: p.NetnsPath},
			},
		},
	}
}

// pauseELF returns a minimal static x86-64 Linux executable that calls
// pause(2) forever. It is a 64-byte ELF header, one 56-byte PT_LOAD
// program header and 9 bytes of code (mov eax, 34; syscall; jmp back).
func pauseELF() ([]byte, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("the gVisor sandbox's pause process is built for amd64 only, not %s", runtime.GOARCH)
	}
	const base, hdr = 0x400000, 64 + 56
	code := []byte{0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7}
	size := uint64(hdr + len(code))
	var b bytes.Buffer
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	for _, v := range []any{
		uint16(2), uint16(0x3e), uint32(1), uint64(base + hdr), uint64(64), uint64(0), // type, machine, version, entry, phoff, shoff
		uint32(0), uint16(64), uint16(56), uint16(1), uint16(0), uint16(0), uint16(0), // flags, ehsize, phentsize, phnum, shentsize, shnum, shstrndx
		uint32(1), uint32(5), uint64(0), uint64(base), uint64(base), size, size, uint64(0x1000), // PT_LOAD, R+X, offset, vaddr, paddr, filesz, memsz, align
	} {
		binary.Write(&b, binary.LittleEndian, v)
	}
	b.Write(code)
	return b.Bytes(), nil
}
