package podbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/machine"
	"github.com/paddock-dev/paddock/bench/internal/mdreport"
	"github.com/paddock-dev/paddock/bench/runtimebench"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
)

// Config configures a run. DefaultConfig returns PODSTART's.
type Config struct {
	// Runtime is the runc plugin the agent runs (and the floor
	// launches), the image the pods run (the agent imports its archive
	// at start) and runc, the floor's and the plugin's.
	runtimebench.Runtime
	// Pods is the number of measured sequential pod starts (and floor
	// starts), and the total of the concurrent phase.
	Pods int
	// Concurrency is how many pod starts the concurrent phase keeps
	// going.
	Concurrency int
	// Warmup is the number of unmeasured sequential starts of each
	// workload first.
	Warmup int
	// StartTimeout bounds one start, and the agent's cleanup after a
	// pod.
	StartTimeout time.Duration
	// DataDir is where the run's temporary directory is made (etcd's
	// data, the agent's state, the plugins' image stores); "" means the
	// system's.
	DataDir string
	// Write, when set, is a Markdown file (docs/benchmarks.md) in which
	// the run's PODSTART section is replaced, or appended when missing.
	Write string
	// Command is the command line recorded with the results.
	Command string
	// Out receives the report; nil means os.Stdout.
	Out io.Writer
	// Log receives progress; nil discards it. The control plane's and the
	// agent's own logs go to it only when it shows debug.
	Log *slog.Logger
}

// DefaultConfig returns PODSTART's configuration, with paths relative to
// the repository's root (make build, make testimages).
func DefaultConfig() Config {
	return Config{
		Runtime:      runtimebench.DefaultRuntime(),
		Pods:         50,
		Concurrency:  10,
		Warmup:       3,
		StartTimeout: time.Minute,
	}
}

// check validates cfg; errors name the field.
func (cfg *Config) check() error {
	if err := cfg.Runtime.Check(); err != nil {
		return err
	}
	switch {
	case cfg.Pods < 1 || cfg.Pods > 100:
		return fmt.Errorf("pods: %d is not between 1 and 100 (the node runs at most 110 pods)", cfg.Pods)
	case cfg.Concurrency < 1 || cfg.Concurrency > cfg.Pods:
		return fmt.Errorf("concurrency: %d is not between 1 and the pods %d", cfg.Concurrency, cfg.Pods)
	case cfg.Warmup < 0:
		return fmt.Errorf("warmup: %d is negative", cfg.Warmup)
	case cfg.StartTimeout <= 0:
		return fmt.Errorf("start timeout: %v is not positive", cfg.StartTimeout)
	}
	return nil
}

// floorConfig is the configuration of the floor: the same plugin, image
// and runc, its temporary directory inside the run's.
func (cfg *Config) floorConfig(dir string) runtimebench.Config {
	return runtimebench.Config{Runtime: cfg.Runtime, StartTimeout: cfg.StartTimeout, DataDir: dir, Log: cfg.Log}
}

// results is everything a run measured.
type results struct {
	cfg               Config
	started, finished time.Time
	machine           machine.Info
	runcVersion       string
	plugin            pluginhost.Info
	floorLabel        string
	seqPods, conPods  *podPhase
	// The floor's start latencies, and the concurrent phase's time from
	// its first start to its last process running.
	seqFloor, conFloor []time.Duration
	conFloorElapsed    time.Duration
}

// Run runs the benchmark and reports it to cfg.Out (and cfg.Write). It
// holds the machine-wide test lock while it runs, and returns when the
// run is over or ctx ends, after everything it started is gone.
func Run(ctx context.Context, cfg Config) error {
	res, err := collect(ctx, cfg)
	if err != nil {
		return fmt.Errorf("podbench: %w", err)
	}
	return res.publish()
}

// collect validates cfg, takes the machine-wide lock and measures.
func collect(ctx context.Context, cfg Config) (*results, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if err := cfg.Runtime.Resolve(); err != nil {
		return nil, err
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	release, err := runtimebench.LockMachine(ctx, cfg.Log)
	if err != nil {
		return nil, err
	}
	defer release()

	res := &results{cfg: cfg, started: time.Now(), machine: machine.Describe(ctx)}
	if err := measure(ctx, cfg, res); err != nil {
		return nil, err
	}
	res.finished = time.Now()
	res.machine.LoadAfter = machine.LoadAvg()
	return res, nil
}

// publish prints the report to cfg.Out and writes it into cfg.Write.
func (res *results) publish() error {
	if err := mdreport.Publish(res.cfg.Out, res.cfg.Write, SectionName, res.markdown()); err != nil {
		return fmt.Errorf("podbench: %w", err)
	}
	if res.cfg.Write != "" {
		res.cfg.Log.Info("results written", "file", res.cfg.Write)
	}
	return nil
}

// SectionName names the benchmark, on paddock-bench's command line and
// in its section of docs/benchmarks.md.
const SectionName = "PODSTART"

// measure sets up the cluster and the floor, runs the phases into res
// and cleans up.
func measure(ctx context.Context, cfg Config, res *results) (err error) {
	log := cfg.Log
	dir, err := os.MkdirTemp(cfg.DataDir, "pdpod-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer cleanup(&err, "the temporary directory", func() error { return os.RemoveAll(dir) })

	log.Info("preparing the floor: runtime plugin, image, template container")
	floor, err := runtimebench.NewFloor(ctx, cfg.floorConfig(dir))
	if err != nil {
		return err
	}
	defer cleanup(&err, "the floor", func() error {
		log.Info("removing the floor's containers and plugin")
		return floor.Close()
	})
	res.runcVersion, res.floorLabel, res.plugin = floor.RuncVersion(), floor.Label(), floor.Plugin()

	log.Info("starting the control plane and the node agent")
	c, err := startCluster(ctx, cfg, dir)
	if err != nil {
		return err
	}
	defer cleanup(&err, "the cluster", func() error {
		log.Info("removing the pods, stopping the agent, its plugin and the control plane")
		return c.close()
	})

	b := &bench{cfg: cfg, c: c, floor: floor, log: log}
	if err := b.openWatch(ctx); err != nil {
		return err
	}
	defer b.closeWatch()
	if cfg.Warmup > 0 {
		log.Info("warming up", "starts", cfg.Warmup)
		if _, _, err := b.sequential(ctx, "w", cfg.Warmup); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	log.Info("sequential starts, pods and floor in turn", "starts", cfg.Pods)
	if res.seqPods, res.seqFloor, err = b.sequential(ctx, "s", cfg.Pods); err != nil {
		return fmt.Errorf("sequential: %w", err)
	}
	log.Info("concurrent starts: floor", "starts", cfg.Pods, "concurrency", cfg.Concurrency)
	if res.conFloor, res.conFloorElapsed, err = floor.Concurrent(ctx, cfg.Pods, cfg.Concurrency); err != nil {
		return fmt.Errorf("concurrent, floor: %w", err)
	}
	log.Info("concurrent starts: pods", "starts", cfg.Pods, "concurrency", cfg.Concurrency)
	if res.conPods, err = b.concurrent(ctx, "c", cfg.Pods, cfg.Concurrency); err != nil {
		return fmt.Errorf("concurrent, pods: %w", err)
	}
	return nil
}

// cleanup runs a deferred clean-up step of what, adding its error to
// *err.
func cleanup(err *error, what string, step func() error) {
	if cerr := step(); cerr != nil {
		*err = errors.Join(*err, fmt.Errorf("clean up %s: %w", what, cerr))
	}
}
