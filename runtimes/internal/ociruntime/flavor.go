package ociruntime

import (
	"os"
	"path/filepath"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// Flavor is the OCI runtime a Plugin drives: runc (the zero value) or
// gVisor's runsc. Both speak the same command line (create, run
// --detach, exec, kill, delete, update); what differs is listed here and
// in gvisor.go.
type Flavor int

const (
	// Runc runs every container with runc in namespaces of the host
	// kernel.
	Runc Flavor = iota
	// Runsc runs each sandbox as one gVisor sandbox (runsc) whose
	// containers share its user-space kernel.
	Runsc
)

// name is the plugin's name (Info, handles) and the runtime's binary.
func (f Flavor) name() string {
	if f == Runsc {
		return "runsc"
	}
	return "runc"
}

// capabilities is what a plugin of the flavor can do.
func (f Flavor) capabilities() *runtimev1.CapabilitiesResponse {
	caps := &runtimev1.CapabilitiesResponse{
		IsolationClass:  runtimev1.IsolationClass_ISOLATION_CLASS_NAMESPACE,
		Exec:            true,
		ExecTty:         true,
		Signals:         true,
		UserNamespaces:  false,
		Checkpoint:      false,
		UpdateResources: true,
		ReadOnlyRootfs:  true,
		// Containers run under their own shims and outlive the plugin.
		ContainersTiedToPlugin: false,
		Handlers:               []string{f.name()},
	}
	if f == Runsc {
		caps.IsolationClass = runtimev1.IsolationClass_ISOLATION_CLASS_USERSPACE_KERNEL
		// Limits are the pod's (the sandbox's cgroup), set at creation.
		caps.UpdateResources = false
	}
	return caps
}

// schema is the JSON Schema of the flavor's configuration.
func (f Flavor) schema() string {
	if f == Runsc {
		return runscConfigSchema
	}
	return configSchema
}

// defaultBinary is the runtime binary a configuration that names none
// uses: runc from PATH; runsc next to the plugin's own binary (where
// `make build` puts it), else from PATH.
func (f Flavor) defaultBinary() string {
	if f != Runsc {
		return "runc"
	}
	if exe, err := os.Executable(); err == nil {
		next := filepath.Join(filepath.Dir(exe), "runsc")
		if checkExecutable(next) == nil {
			return next
		}
	}
	return "runsc"
}

// binary is the configured runtime binary of cfg.
func (f Flavor) binary(cfg *Config) string {
	if f == Runsc {
		return cfg.RunscPath
	}
	return cfg.RuncPath
}

// binaryField is the configuration field naming the runtime binary.
func (f Flavor) binaryField() string { return f.name() + "Path" }

// runtimeRoot is the directory of the runtime's own state (its --root).
func (p *Plugin) runtimeRoot() string {
	if p.opts.Flavor == Runsc && p.cfg != nil && p.cfg.RootDir != "" {
		return p.cfg.RootDir
	}
	return filepath.Join(p.stateDir, p.opts.Flavor.name())
}

// globalArgs are the runtime's options before any command: its root and,
// for runsc, the platform, the network stack and the debug log. The
// caller holds p.mu.
func (p *Plugin) globalArgsLocked() []string {
	args := []string{"--root", p.runtimeRoot()}
	if p.opts.Flavor == Runsc {
		args = append(args, runscArgs(p.cfg)...)
	}
	return args
}

// runtimeCommand returns the runtime binary and its global options.
func (p *Plugin) runtimeCommand() (string, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runc, p.globalArgsLocked()
}
