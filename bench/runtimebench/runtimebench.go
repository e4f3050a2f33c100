package runtimebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/machine"
	"github.com/paddock-dev/paddock/bench/internal/mdreport"
	"github.com/paddock-dev/paddock/bench/internal/stats"
	"github.com/paddock-dev/paddock/internal/testlock"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
)

// Config configures a run. DefaultConfig returns B3's.
type Config struct {
	// Runtime is the plugin, the image and runc. The image is imported
	// through the plugin's image service before anything is timed.
	Runtime
	// Starts is the number of measured sequential starts of each
	// workload, and the total of the concurrent phase.
	Starts int
	// Concurrency is how many starts the concurrent phase keeps going.
	Concurrency int
	// Sandboxes is how many sandboxes the concurrent phase's plugin starts
	// are spread over (worker w uses sandbox w mod Sandboxes): the
	// default, Concurrency, is that many pods starting at once; 1 puts
	// every container in one pod. The sequential phase uses the first.
	Sandboxes int
	// Warmup is the number of unmeasured sequential starts of each
	// workload before the measured ones.
	Warmup int
	// Classes are the runtime classes whose pod starts are measured (of
	// AllClasses). A class whose prerequisites are missing is reported
	// as not measured, with the reason, or is an error under CI=true.
	Classes []string
	// PodStarts is the number of measured sequential pod starts of each
	// class and of each pod floor.
	PodStarts int
	// PodRuntimes are the gvisor and containerd classes' plugins and
	// binaries (the runc class uses Runtime's).
	PodRuntimes
	// StartTimeout bounds one start.
	StartTimeout time.Duration
	// DataDir is where the run's temporary directory is made (it holds
	// the plugin's state and image store); "" means the system's.
	DataDir string
	// Write, when set, is a Markdown file (docs/benchmarks.md) in which
	// the run's B3 section is replaced, or appended when missing.
	Write string
	// Command is the command line recorded with the results.
	Command string
	// Out receives the results table; nil means os.Stdout.
	Out io.Writer
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// DefaultConfig returns B3's configuration, with paths relative to the
// repository's root (make build, make testimages).
func DefaultConfig() Config {
	return Config{
		Runtime:      DefaultRuntime(),
		Starts:       100,
		Concurrency:  10,
		Warmup:       5,
		Classes:      AllClasses,
		PodStarts:    100,
		PodRuntimes:  DefaultPodRuntimes(),
		StartTimeout: time.Minute,
	}
}

// check validates cfg; errors name the field.
func (cfg *Config) check() error {
	if err := cfg.checkFloor(); err != nil {
		return err
	}
	switch {
	case cfg.Starts < 1 || cfg.Starts > 10_000:
		return fmt.Errorf("starts: %d is not between 1 and 10000", cfg.Starts)
	case cfg.Concurrency < 1 || cfg.Concurrency > 200:
		return fmt.Errorf("concurrency: %d is not between 1 and 200", cfg.Concurrency)
	case cfg.Sandboxes < 0 || cfg.Sandboxes > cfg.Concurrency:
		return fmt.Errorf("sandboxes: %d is not between 1 and the concurrency %d (0: as many as the concurrency)", cfg.Sandboxes, cfg.Concurrency)
	case cfg.Warmup < 0:
		return fmt.Errorf("warmup: %d is negative", cfg.Warmup)
	case cfg.PodStarts < 1 || cfg.PodStarts > 10_000:
		return fmt.Errorf("pod starts: %d is not between 1 and 10000", cfg.PodStarts)
	}
	return checkClasses(cfg.Classes)
}

// checkFloor validates the fields the floor uses; errors name the field.
func (cfg *Config) checkFloor() error {
	if err := cfg.Runtime.Check(); err != nil {
		return err
	}
	if cfg.StartTimeout <= 0 {
		return fmt.Errorf("start timeout: %v is not positive", cfg.StartTimeout)
	}
	return nil
}

// resolve resolves the runtime's paths and fills in the default number of
// sandboxes.
func (cfg *Config) resolve() error {
	if err := cfg.Runtime.Resolve(); err != nil {
		return err
	}
	if cfg.Sandboxes == 0 {
		cfg.Sandboxes = cfg.Concurrency
	}
	return nil
}

// results is everything a run measured.
type results struct {
	cfg               Config
	started, finished time.Time
	machine           machine.Info
	runcVersion       string
	plugin            pluginhost.Info
	// The phases: sequential through the plugin, runc run and runc
	// create + start; concurrent through the plugin and runc run.
	seqPlugin, seqFloor, seqTwoStep, conPlugin, conFloor *phase
	// The pod starts: the classes chosen, each measured one's phase and
	// plugin by name, and the floors (nil when not measured).
	classes              []classPlan
	pods                 map[string]*phase
	podPlugins           map[string]pluginhost.Info
	podFloor, runscFloor *phase
	runscVersion         string
	containerdVersion    string
	// podSandboxes is every sandbox the pod starts made.
	podSandboxes []string
	// markLatency is the marker's own latency (marks.latency).
	markLatency stats.Latencies
}

// markSamples is how many times the marker's own latency is measured.
const markSamples = 100

// Run runs the benchmark and reports it to cfg.Out (and cfg.Write). It
// holds the machine-wide test lock while containers run, and returns when
// the run is over or ctx ends, after every container, sandbox, cgroup and
// process it started is gone and its temporary directory is removed.
func Run(ctx context.Context, cfg Config) error {
	res, err := collect(ctx, cfg)
	if err != nil {
		return fmt.Errorf("runtimebench: %w", err)
	}
	return res.publish()
}

// collect validates cfg, takes the machine-wide lock and measures.
func collect(ctx context.Context, cfg Config) (*results, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if err := cfg.resolve(); err != nil {
		return nil, err
	}
	classes, err := cfg.planClasses(os.Getenv("CI") == "true")
	if err != nil {
		return nil, err
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	release, err := LockMachine(ctx, cfg.Log)
	if err != nil {
		return nil, err
	}
	defer release()

	res := &results{cfg: cfg, started: time.Now(), machine: machine.Describe(ctx), runcVersion: runcVersion(ctx, cfg.Runc), classes: classes}
	if err := measure(ctx, cfg, cfg.Log, res); err != nil {
		return nil, err
	}
	res.finished = time.Now()
	res.machine.LoadAfter = machine.LoadAvg()
	return res, nil
}

// publish prints the report to cfg.Out and writes it into cfg.Write.
func (res *results) publish() error {
	if err := mdreport.Publish(res.cfg.Out, res.cfg.Write, sectionName, res.markdown()); err != nil {
		return fmt.Errorf("runtimebench: %w", err)
	}
	if res.cfg.Write != "" {
		res.cfg.Log.Info("results written", "file", res.cfg.Write)
	}
	return nil
}

// sectionName names B3's section of docs/benchmarks.md.
const sectionName = "B3"

// measure sets up, runs the phases into res and cleans up.
func measure(ctx context.Context, cfg Config, log *slog.Logger, res *results) (err error) {
	e, err := setup(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		log.Info("removing the containers, sandboxes and plugin")
		if cerr := e.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
	}()
	res.plugin = e.info
	if err := e.setupPods(ctx, res.classes); err != nil {
		return fmt.Errorf("pod starts: %w", err)
	}
	pods := e.podStarters()
	lat, err := e.marks.latency(markSamples)
	if err != nil {
		return err
	}
	res.markLatency = stats.Summarize(lat)
	if cfg.Warmup > 0 {
		log.Info("warming up", "starts", cfg.Warmup)
		if _, err := e.sequential(ctx, "w", cfg.Warmup, e.floor, e.plugin, e.twoStep); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	log.Info("sequential starts, plugin and floors in turn", "starts", cfg.Starts)
	seq, err := e.sequential(ctx, "s", cfg.Starts, e.floor, e.plugin, e.twoStep)
	if err != nil {
		return fmt.Errorf("sequential: %w", err)
	}
	res.seqFloor, res.seqPlugin, res.seqTwoStep = seq[0], seq[1], seq[2]
	log.Info("concurrent starts: floor", "starts", cfg.Starts, "concurrency", cfg.Concurrency)
	if res.conFloor, err = e.concurrent(ctx, e.floor, cfg.Starts, cfg.Concurrency); err != nil {
		return fmt.Errorf("concurrent, floor: %w", err)
	}
	log.Info("concurrent starts: plugin", "starts", cfg.Starts, "concurrency", cfg.Concurrency, "sandboxes", cfg.Sandboxes)
	if res.conPlugin, err = e.concurrent(ctx, e.plugin, cfg.Starts, cfg.Concurrency); err != nil {
		return fmt.Errorf("concurrent, plugin: %w", err)
	}
	// Only `runc create` needs this process to adopt containers; the
	// containerd daemon's shims, which daemonize, must not become its
	// children.
	if err := e.restoreSubreaper(); err != nil {
		return err
	}
	if cfg.Warmup > 0 {
		log.Info("warming up pod starts", "starts", cfg.Warmup, "workloads", len(pods))
		if _, err := e.sequential(ctx, "pw", cfg.Warmup, pods...); err != nil {
			return fmt.Errorf("warm-up, pod starts: %w", err)
		}
	}
	log.Info("sequential pod starts, classes and floors in turn", "starts", cfg.PodStarts, "workloads", len(pods))
	podPhases, err := e.sequential(ctx, "p", cfg.PodStarts, pods...)
	if err != nil {
		return fmt.Errorf("pod starts: %w", err)
	}
	res.pods, res.podPlugins = map[string]*phase{}, map[string]pluginhost.Info{}
	for i, s := range pods {
		switch s {
		case e.podFloor:
			res.podFloor = podPhases[i]
		case e.runscFloor:
			res.runscFloor = podPhases[i]
			res.runscVersion = runcVersion(ctx, cfg.Runsc)
		default:
			p := s.(*pluginStarter)
			res.pods[p.class], res.podPlugins[p.class] = podPhases[i], p.info
			res.podSandboxes = append(res.podSandboxes, p.made...)
			if p.class == ClassContainerd {
				res.containerdVersion = runcVersion(ctx, cfg.Containerd)
			}
		}
	}
	return nil
}

// LockMachine takes the machine-wide lock that tests starting containers
// take (internal/testlock), so that neither counts the other's
// containers, nor competes for the CPUs unseen, and returns its release.
// It gives up when ctx ends. The lock does not nest: a process that holds
// it must not ask again. Run takes it; a benchmark that uses a Floor
// takes it around its own run.
func LockMachine(ctx context.Context, log *slog.Logger) (func(), error) {
	type result struct {
		release func()
		err     error
	}
	got := make(chan result, 1)
	go func() {
		release, err := testlock.Acquire()
		got <- result{release, err}
	}()
	logged := false
	for {
		select {
		case r := <-got:
			return r.release, r.err
		case <-ctx.Done():
			// Release the lock if it comes after all.
			go func() {
				if r := <-got; r.err == nil {
					r.release()
				}
			}()
			return nil, ctx.Err()
		case <-time.After(time.Second):
			if !logged {
				log.Info("waiting for the machine-wide test lock (tests that start containers are running)", "file", testlock.Path)
				logged = true
			}
		}
	}
}

// runcVersion returns the first line of `runc --version` (or runsc's).
func runcVersion(ctx context.Context, runc string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, runc, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first)
}
