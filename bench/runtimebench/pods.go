package runtimebench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/paddock-dev/paddock/runtimes/containerd/containerdtest"
)

// The runtime classes whose pod starts B3 measures.
const (
	ClassRunc       = "runc"       // paddock-runtime-runc
	ClassGvisor     = "gvisor"     // paddock-runtime-runsc, systrap platform
	ClassContainerd = "containerd" // paddock-runtime-containerd, runc handler
)

// AllClasses are the runtime classes, in the order the report lists them.
var AllClasses = []string{ClassRunc, ClassGvisor, ClassContainerd}

// benchTenant is the tenant of every sandbox the bench makes.
const benchTenant = "bench"

// gvisorPlatform is the gVisor platform of the gvisor class and of the
// `runsc run` floor.
const gvisorPlatform = "systrap"

// PodRuntimes are the plugins and binaries of the gvisor and containerd
// classes.
type PodRuntimes struct {
	// RunscPlugin is the gVisor runtime plugin binary.
	RunscPlugin string
	// Runsc is the runsc binary of the gvisor class, also the `runsc run`
	// floor's: a path, or a name looked up in PATH.
	Runsc string
	// ContainerdPlugin is the containerd runtime plugin binary.
	ContainerdPlugin string
	// Containerd is the containerd daemon binary the bench starts a
	// private daemon of: a path, or a name looked up in PATH.
	Containerd string
}

// DefaultPodRuntimes returns B3's, with paths relative to the repository's
// root (make build).
func DefaultPodRuntimes() PodRuntimes {
	return PodRuntimes{
		RunscPlugin:      "bin/paddock-runtime-runsc",
		Runsc:            "bin/runsc",
		ContainerdPlugin: "bin/paddock-runtime-containerd",
		Containerd:       "containerd",
	}
}

// checkClasses says what is wrong with a list of classes.
func checkClasses(classes []string) error {
	if len(classes) == 0 {
		return fmt.Errorf("classes: none given; want some of %s", strings.Join(AllClasses, ","))
	}
	for i, c := range classes {
		if !slices.Contains(AllClasses, c) {
			return fmt.Errorf("classes: %q is not a runtime class; want some of %s", c, strings.Join(AllClasses, ","))
		}
		if slices.Contains(classes[:i], c) {
			return fmt.Errorf("classes: %q is named twice", c)
		}
	}
	return nil
}

// classPlan is one class as the run sees it: measured, or not with the
// reason.
type classPlan struct {
	name    string
	skipped string // why the class is not measured; "" when it is
}

// planClasses resolves the chosen classes' prerequisites, in AllClasses
// order. A class with a prerequisite missing is skipped with the reason,
// or fails the run when strict (CI=true).
func (cfg *Config) planClasses(strict bool) ([]classPlan, error) {
	var plans []classPlan
	for _, c := range AllClasses {
		if !slices.Contains(cfg.Classes, c) {
			continue
		}
		missing := cfg.resolveClass(c)
		if missing != "" && strict {
			return nil, fmt.Errorf("classes: %s: needs %s, and CI=true", c, missing)
		}
		plans = append(plans, classPlan{name: c, skipped: missing})
	}
	return plans, nil
}

// resolveClass makes class c's paths absolute and returns what is missing
// for it ("" when nothing). The runc class needs only what the container
// starts need.
func (cfg *Config) resolveClass(c string) string {
	var missing []string
	need := func(err error) {
		if err != nil {
			missing = append(missing, err.Error())
		}
	}
	switch c {
	case ClassGvisor:
		if runtime.GOARCH != "amd64" {
			missing = append(missing, "amd64 (the runsc plugin's pause process is built for it)")
		}
		need(executable(&cfg.RunscPlugin, "gvisor plugin", "make build builds bin/paddock-runtime-runsc"))
		need(lookPath(&cfg.Runsc, "runsc", "make build builds bin/runsc"))
	case ClassContainerd:
		need(executable(&cfg.ContainerdPlugin, "containerd plugin", "make build builds bin/paddock-runtime-containerd"))
		need(lookPath(&cfg.Containerd, "containerd", "Debian package containerd"))
		shim := "containerd-shim-runc-v2"
		need(lookPath(&shim, "containerd's runc shim", "Debian package containerd"))
	}
	return strings.Join(missing, "; ")
}

// executable makes *path absolute and checks that it is an executable
// file; the error names the field and what builds it.
func executable(path *string, field, hint string) error {
	abs, err := filepath.Abs(*path)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	*path = abs
	if st, err := os.Stat(abs); err != nil || st.Mode().Perm()&0o111 == 0 || !st.Mode().IsRegular() {
		return fmt.Errorf("%s %s: not an executable file (%s)", field, abs, hint)
	}
	return nil
}

// lookPath resolves *path as exec.LookPath does (a name in PATH, or a
// path) and makes it absolute.
func lookPath(path *string, field, hint string) error {
	if *path == "" {
		return fmt.Errorf("%s: required (%s)", field, hint)
	}
	p, err := exec.LookPath(*path)
	if err != nil {
		return fmt.Errorf("%s: %w (%s)", field, err, hint)
	}
	*path, err = filepath.Abs(p)
	return err
}

// setupPods launches the measured classes' plugins (the gvisor class's,
// and a private containerd daemon with the containerd class's) and makes
// the pod floors. The runc class shares the container starts' plugin.
// What it made is undone by close.
func (e *env) setupPods(ctx context.Context, plans []classPlan) error {
	cfg := e.cfg
	for _, c := range plans {
		if c.skipped != "" {
			e.log.Warn("runtime class not measured", "class", c.name, "missing", c.skipped)
			continue
		}
		p := &pluginStarter{e: e, short: "pod-" + c.name, title: "pod start, " + classTitles[c.name] + ": CreateSandbox + CreateContainer + StartContainer", pods: true, class: c.name, ids: map[string]started{}}
		switch c.name {
		case ClassRunc:
			p.rt, p.info = e.rt, e.info
		case ClassGvisor:
			inst, rt, err := e.launch(ctx, "b3-gvisor", cfg.RunscPlugin, map[string]any{"runscPath": cfg.Runsc, "platform": gvisorPlatform})
			if err != nil {
				return err
			}
			e.others, p.rt, p.info = append(e.others, inst), rt, inst.Info()
			// runsc's options as the plugin gives them (gvisor.go's
			// runscArgs): its platform, gVisor's network stack in the
			// container's network namespace, the spec's seccomp profile
			// applied inside the sandbox.
			e.runscFloor = e.newFloor("runsc-run", "pod floor: `runsc run`, a gVisor sandbox and network namespace of its own", cfg.Runsc, "runsc",
				"--platform", gvisorPlatform, "--network", "sandbox", "--oci-seccomp")
			e.runscFloor.pod = true
		case ClassContainerd:
			dir := filepath.Join(e.dir, "ctrd")
			if err := os.Mkdir(dir, 0o700); err != nil {
				return err
			}
			e.log.Info("starting a private containerd daemon", "containerd", cfg.Containerd, "dir", dir)
			d, err := containerdtest.StartIn(ctx, cfg.Containerd, dir)
			if err != nil {
				return fmt.Errorf("containerd daemon: %w", err)
			}
			e.daemon = d
			inst, rt, err := e.launch(ctx, "b3-containerd", cfg.ContainerdPlugin, map[string]any{"address": d.Address})
			if err != nil {
				return errors.Join(err, fmt.Errorf("containerd's log: %s", lastLines(d.Log(), 5)))
			}
			e.others, p.rt, p.info, p.handler = append(e.others, inst), rt, inst.Info(), "runc"
		}
		e.pods = append(e.pods, p)
		// The floor of the runc and containerd classes.
		if c.name != ClassGvisor && e.podFloor == nil {
			e.podFloor = e.newFloor("pod-runc-run", "pod floor: `runc run`, a network namespace of its own", cfg.Runc, "runc")
			e.podFloor.pod = true
		}
	}
	return nil
}

// podStarters returns the pod starts' workloads: each class and each
// floor, the floor next to the classes measured against it.
func (e *env) podStarters() []starter {
	var s []starter
	if e.podFloor != nil {
		s = append(s, e.podFloor)
	}
	for _, p := range e.pods {
		s = append(s, p)
	}
	if e.runscFloor != nil {
		s = append(s, e.runscFloor)
	}
	return s
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// containerdCgroupRoot is the parent of the containerd plugin's pod
// cgroups (runtimes/containerd).
const containerdCgroupRoot = "paddock-containerd"

// removeContainerdPodCgroups removes the empty pod cgroups of the
// containerd class's sandboxes that outlive RemoveSandbox: containerd's
// runc shim creates a container's parent (the pod cgroup) in every
// hierarchy, and the plugin removes it only from those it made itself.
func (e *env) removeContainerdPodCgroups() error {
	var ids []string
	for _, p := range e.pods {
		if p.class == ClassContainerd {
			ids = append(ids, p.made...)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for i, m := range mounts {
		mounts[i] = filepath.Join(m, containerdCgroupRoot)
	}
	removed, err := removeCgroupDirs(mounts, ids)
	if removed > 0 {
		e.log.Warn("removed pod cgroups the containerd plugin left", "cgroups", removed, "pods", len(ids))
	}
	return err
}
