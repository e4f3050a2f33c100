package runtimebench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/paddock-dev/paddock/plugins/pluginhost"
)

// Runtime is what B3 and its floor run: the runtime plugin, the image
// and runc.
type Runtime struct {
	// Plugin is the runtime plugin binary.
	Plugin string
	// ImageArchive is an OCI archive holding Image.
	ImageArchive string
	Image        string
	// Runc is the runc binary of the floor, also handed to the plugin
	// (runcPath): an absolute path or a name looked up in PATH.
	Runc string
}

// DefaultRuntime returns B3's runtime, with paths relative to the
// repository's root (make build, make testimages).
func DefaultRuntime() Runtime {
	return Runtime{
		Plugin:       "bin/paddock-runtime-runc",
		ImageArchive: "build/images/busybox.tar",
		Image:        "paddock.dev/test/busybox:latest",
		Runc:         "runc",
	}
}

// Check says which field is missing.
func (r *Runtime) Check() error {
	switch {
	case r.Plugin == "":
		return errors.New("plugin: required: the runtime plugin binary")
	case r.ImageArchive == "":
		return errors.New("image archive: required: an OCI archive of the image (make testimages builds build/images/busybox.tar)")
	case r.Image == "":
		return errors.New("image: required: the image's reference in the archive")
	case r.Runc == "":
		return errors.New("runc: required: the runc binary")
	}
	return nil
}

// Resolve makes the plugin's and the archive's paths absolute and finds
// runc, saying what builds a missing file.
func (r *Runtime) Resolve() error {
	if err := executable(&r.Plugin, "plugin", "make build builds bin/paddock-runtime-runc"); err != nil {
		return err
	}
	var err error
	if r.ImageArchive, err = filepath.Abs(r.ImageArchive); err != nil {
		return err
	}
	if _, err := os.Stat(r.ImageArchive); err != nil {
		return fmt.Errorf("image archive: %w (make testimages builds build/images/busybox.tar)", err)
	}
	return lookPath(&r.Runc, "runc", "Debian package runc")
}

// Floor is B3's floor on its own, for benchmarks that measure another
// path to a running container of the same image against it in the same
// run: bare `runc run` of the runtime plugin's own bundle (its OCI spec
// and root filesystem) with a command that writes a marker and sleeps,
// timed from the fork of runc until the marker is read. NewFloor
// prepares it as Run does (the plugin launched, the image imported, one
// sandbox, the template container); Close undoes all of it.
//
// The caller holds the machine-wide lock (LockMachine) while a Floor is
// open. Start, Remove and Concurrent may be called from several
// goroutines with different tags.
type Floor struct {
	e           *env
	runcVersion string
}

// NewFloor prepares the floor from cfg's Runtime, StartTimeout, DataDir
// and Log; its other fields are ignored.
func NewFloor(ctx context.Context, cfg Config) (*Floor, error) {
	if err := cfg.checkFloor(); err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	cfg.Sandboxes = 1
	if err := cfg.resolve(); err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	e, err := setup(ctx, cfg, cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	return &Floor{e: e, runcVersion: runcVersion(ctx, cfg.Runc)}, nil
}

// Label names the floor's workload in a report.
func (f *Floor) Label() string { return f.e.floor.label() }

// Plugin describes the runtime plugin whose bundle the floor runs.
func (f *Floor) Plugin() pluginhost.Info { return f.e.info }

// RuncVersion is the first line of the floor's `runc --version`.
func (f *Floor) RuncVersion() string { return f.runcVersion }

// Start starts a container with `runc run` whose process writes tag (a
// name unique among the floor's containers: letters, digits and '-'),
// and returns the time from the fork of runc until the process ran. The
// container stays until Remove.
func (f *Floor) Start(ctx context.Context, tag string) (time.Duration, error) {
	s, err := f.e.floor.start(ctx, tag, 0)
	return s.Ready, err
}

// Remove kills and deletes tag's container.
func (f *Floor) Remove(ctx context.Context, tag string) error {
	return f.e.floor.remove(ctx, tag)
}

// Concurrent starts n containers from c workers at once, each taking the
// next start when its last one runs, as Run's concurrent phase does, and
// returns each start's latency in the order they began and the time from
// the first start to the last process running. The containers are
// removed afterwards, untimed.
func (f *Floor) Concurrent(ctx context.Context, n, c int) (ready []time.Duration, elapsed time.Duration, err error) {
	p, err := f.e.concurrent(ctx, f.e.floor, n, c)
	if err != nil {
		return nil, 0, err
	}
	for _, s := range p.Samples {
		ready = append(ready, s.Ready)
	}
	return ready, p.Elapsed, nil
}

// Close removes every container, the sandbox, the plugin and the
// temporary directory.
func (f *Floor) Close() error { return f.e.close() }
