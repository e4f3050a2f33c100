package netbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/paddock-dev/paddock/bench/internal/machine"
	"github.com/paddock-dev/paddock/bench/runtimebench"
)

// SectionName is the benchmark's name on the command line and its section
// of docs/benchmarks.md.
const SectionName = "B6-DATAPATH"

// Config configures a run. DefaultConfig returns B6(a)'s.
type Config struct {
	// Plugin is the bridge network plugin binary (make build).
	Plugin string
	// Duration is the measured length of one throughput run.
	Duration time.Duration
	// Warmup is the unmeasured start of each throughput run.
	Warmup time.Duration
	// Reps is the number of repetitions of every workload on both paths.
	Reps int
	// Streams are the numbers of parallel TCP connections of the
	// throughput workloads, one workload each.
	Streams []int
	// RoundTrips is the number of timed one-byte round trips per
	// repetition and path.
	RoundTrips int
	// PodCIDR is the node's pod range handed to SetupNode, inside
	// ClusterCIDR; ServiceCIDR is SetupNode's service range. Pick ranges
	// nothing else on the machine uses.
	PodCIDR, ClusterCIDR, ServiceCIDR string
	// DataDir is where the run's temporary directory is made (the plugin
	// host's state, the namespaces' mount files); "" means the system's.
	// Keep it short: the plugin's socket path lies below it.
	DataDir string
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Write, when set, is a Markdown file (docs/benchmarks.md) in which
	// the run's section is replaced, or appended when missing.
	Write string
	// Command is the command line recorded with the results.
	Command string
	// Out receives the report; nil means os.Stdout.
	Out io.Writer
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// DefaultConfig returns B6(a)'s configuration.
func DefaultConfig() Config {
	return Config{
		Plugin:      "bin/paddock-net-bridge",
		Duration:    5 * time.Second,
		Warmup:      time.Second,
		Reps:        5,
		Streams:     []int{1, 8},
		RoundTrips:  20_000,
		PodCIDR:     "10.254.7.0/24",
		ClusterCIDR: "10.254.0.0/16",
		ServiceCIDR: "10.255.0.0/16",
		Timeout:     15 * time.Minute,
	}
}

// Bounds of the configuration.
const (
	maxStreams    = 64
	maxRoundTrips = 10_000_000
	maxReps       = 1000
)

// check validates cfg; errors name the field.
func (cfg *Config) check() error {
	switch {
	case cfg.Plugin == "":
		return errors.New("plugin: required: the bridge network plugin binary (make build)")
	case cfg.Duration <= 0:
		return fmt.Errorf("duration: %v is not positive", cfg.Duration)
	case cfg.Warmup < 0:
		return fmt.Errorf("warmup: %v is negative", cfg.Warmup)
	case cfg.Reps < 1 || cfg.Reps > maxReps:
		return fmt.Errorf("reps: %d is not between 1 and %d", cfg.Reps, maxReps)
	case len(cfg.Streams) == 0:
		return errors.New("streams: at least one is required")
	case cfg.RoundTrips < 1 || cfg.RoundTrips > maxRoundTrips:
		return fmt.Errorf("round trips: %d is not between 1 and %d", cfg.RoundTrips, maxRoundTrips)
	case cfg.Timeout <= 0:
		return fmt.Errorf("timeout: %v is not positive", cfg.Timeout)
	}
	for _, n := range cfg.Streams {
		if n < 1 || n > maxStreams {
			return fmt.Errorf("streams: %d is not between 1 and %d", n, maxStreams)
		}
	}
	ranges := map[string]netip.Prefix{}
	for _, f := range []struct{ field, v string }{{"pod CIDR", cfg.PodCIDR}, {"cluster CIDR", cfg.ClusterCIDR}, {"service CIDR", cfg.ServiceCIDR}} {
		p, err := netip.ParsePrefix(f.v)
		if err != nil || !p.Addr().Is4() || p != p.Masked() {
			return fmt.Errorf("%s: %q is not an IPv4 network such as 10.254.7.0/24", f.field, f.v)
		}
		ranges[f.field] = p
	}
	pod, cluster := ranges["pod CIDR"], ranges["cluster CIDR"]
	if pod.Bits() > 29 {
		return fmt.Errorf("pod CIDR: %s holds too few addresses for the gateway and two pods; want a /29 or larger", pod)
	}
	if !cluster.Contains(pod.Addr()) || cluster.Bits() > pod.Bits() {
		return fmt.Errorf("pod CIDR: %s is not inside the cluster CIDR %s", pod, cluster)
	}
	if ranges["service CIDR"].Overlaps(cluster) {
		return fmt.Errorf("service CIDR: %s overlaps the cluster CIDR %s", ranges["service CIDR"], cluster)
	}
	return nil
}

// Run runs the benchmark and reports it to cfg.Out (and cfg.Write). It
// returns when the run is over or ctx ends, after everything it made is
// gone.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.ready(); err != nil {
		return err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	release, err := runtimebench.LockMachine(ctx, log)
	if err != nil {
		return fmt.Errorf("netbench: %w", err)
	}
	defer release()
	res, err := collect(ctx, cfg)
	if err != nil {
		return err
	}
	return res.publish()
}

// ready validates cfg and checks what the run needs: root and the
// plugin binary, whose path it makes absolute.
func (cfg *Config) ready() (err error) {
	if err := cfg.check(); err != nil {
		return fmt.Errorf("netbench: %w", err)
	}
	if os.Geteuid() != 0 {
		return errors.New("netbench: needs root (network namespaces, veth pairs, a bridge and nftables)")
	}
	if cfg.Plugin, err = filepath.Abs(cfg.Plugin); err != nil {
		return fmt.Errorf("netbench: plugin: %w", err)
	}
	if _, err := os.Stat(cfg.Plugin); err != nil {
		return fmt.Errorf("netbench: plugin: %w (make build)", err)
	}
	return nil
}

// collect measures; the caller holds the machine-wide test lock.
func collect(ctx context.Context, cfg Config) (*results, error) {
	if err := cfg.ready(); err != nil {
		return nil, err
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	res := &results{cfg: cfg, machine: machine.Describe(ctx), started: time.Now()}
	if err := measure(ctx, cfg, res); err != nil {
		return nil, fmt.Errorf("netbench: %w", err)
	}
	res.finished = time.Now()
	res.machine.LoadAfter = machine.LoadAvg()
	return res, nil
}

// measure builds both beds, runs the workloads on them and tears them
// down.
func measure(ctx context.Context, cfg Config, res *results) (err error) {
	dir, err := os.MkdirTemp(cfg.DataDir, "pdb6n-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	cfg.Log.Info("launching the bridge plugin and attaching two pods", "plugin", cfg.Plugin)
	br, err := newBridgeBed(ctx, cfg, dir)
	if err != nil {
		return fmt.Errorf("bridge bed: %w", err)
	}
	defer func() { err = errors.Join(err, br.close()) }()
	res.plugin, res.mtu, res.bridge = br.info, br.mtu, br.pair

	cfg.Log.Info("making the floor: a bare veth pair", "mtu", br.mtu)
	fl, err := newFloorBed(filepath.Join(dir, "floor"), br.mtu)
	if err != nil {
		return fmt.Errorf("floor bed: %w", err)
	}
	defer func() { err = errors.Join(err, fl.close()) }()
	res.floor = fl.pair

	res.streams = make([]*streamResult, len(cfg.Streams))
	for i, n := range cfg.Streams {
		res.streams[i] = &streamResult{streams: n}
	}
	for rep := range cfg.Reps {
		// Alternate which path goes first, so that neither always
		// follows the other.
		paths := []*path{{&br.pair, bridgePath}, {&fl.pair, floorPath}}
		if rep%2 == 1 {
			paths[0], paths[1] = paths[1], paths[0]
		}
		for _, s := range res.streams {
			for _, p := range paths {
				cfg.Log.Info("throughput", "rep", rep+1, "path", p.pair.name, "streams", s.streams, "duration", cfg.Duration)
				gbps, err := throughput(ctx, p.pair, s.streams, cfg.Warmup, cfg.Duration)
				if err != nil {
					return fmt.Errorf("rep %d, %s, %s: %w", rep+1, p.pair.name, streamsLabel(s.streams), err)
				}
				s.gbps[p.index] = append(s.gbps[p.index], gbps)
			}
		}
		for _, p := range paths {
			cfg.Log.Info("round trips", "rep", rep+1, "path", p.pair.name, "roundTrips", cfg.RoundTrips)
			d, err := roundTrips(ctx, p.pair, cfg.RoundTrips/10, cfg.RoundTrips)
			if err != nil {
				return fmt.Errorf("rep %d, %s, round trips: %w", rep+1, p.pair.name, err)
			}
			res.rr[p.index] = append(res.rr[p.index], d...)
		}
	}
	return nil
}

// path is one of the two datapaths being compared, with its index in the
// results (bridgePath, floorPath).
type path struct {
	pair  *pair
	index int
}
