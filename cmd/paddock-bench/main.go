// Command paddock-bench runs Paddock's benchmarks against their floors on
// this machine, prints a Markdown table per benchmark and, with --write,
// records each in its section of docs/benchmarks.md: B1, scheduler
// throughput with every binding committed against raw etcd
// compare-and-swap (package bench/schedbench), B3, pod start of the
// runc, gvisor and containerd runtime classes against bare runc run and
// runsc run, and container start through the runc plugin against bare
// runc (package bench/runtimebench), B4, the API write path, store and watch fan-out
// against raw etcd (package bench/apibench), PODSTART, a pod's start
// end to end on the real runc runtime against bare runc (package
// bench/podbench), and B6, service programming latency of the nftables
// service proxy against a bare one-rule netlink DNAT insert (package
// bench/svcbench), and B6-DATAPATH, pod-to-pod TCP throughput and round
// trips over the bridge network plugin against a bare veth pair (package
// bench/netbench).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/paddock-dev/paddock/bench/apibench"
	"github.com/paddock-dev/paddock/bench/netbench"
	"github.com/paddock-dev/paddock/bench/podbench"
	"github.com/paddock-dev/paddock/bench/runtimebench"
	"github.com/paddock-dev/paddock/bench/schedbench"
	"github.com/paddock-dev/paddock/bench/svcbench"
)

// allBenchmarks are the benchmarks this command runs, in the order it
// runs them.
var allBenchmarks = []string{"B1", "B3", "B4", podbench.SectionName, svcbench.SectionName, netbench.SectionName}

func main() {
	cfg := apibench.DefaultConfig()
	rcfg := runtimebench.DefaultConfig()
	scfg := schedbench.DefaultConfig()
	pcfg := podbench.DefaultConfig()
	vcfg := svcbench.DefaultConfig()
	ncfg := netbench.DefaultConfig()
	fs := flag.NewFlagSet("paddock-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: paddock-bench [flags]\n\nRuns benchmarks against their floors on this machine:\n"+
			"  B1  scheduler throughput, every binding committed, against raw etcd compare-and-swap, in one process (flags --b1-*)\n"+
			"  B3  pod start of the runc, gvisor and containerd classes against bare runc run and runsc run, and container start through the runc plugin against bare runc run (flags --b3-*, --runtime-plugin, --image-archive, --runc; needs root)\n"+
			"  B4  API creates, gets and watch fan-out against raw etcd, in one process (the other flags)\n"+
			"  PODSTART  pod create → Running seen through a watch, scheduler and node agent with the runc plugin in one process, against bare runc run (flags --podstart-*, --runtime-plugin, --image-archive, --image, --runc; needs root)\n"+
			"  B6  service programming latency of the nftables service proxy, change → first connection, against a bare one-rule netlink DNAT insert, in network namespaces (flags --b6-*; needs root)\n"+
			"  B6-DATAPATH  pod-to-pod TCP throughput and round trips over the bridge network plugin against a bare veth pair (flags --datapath-*, --network-plugin; needs root)\n\nFlags:\n")
		fs.PrintDefaults()
	}
	benchmarks := fs.String("benchmarks", strings.Join(allBenchmarks, ","), "comma-separated benchmarks to run")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the run's temporary data (decides the disk under etcd and the plugin's image store; default: the system temp dir)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each repetition of each workload")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured warm-up of each workload")
	fs.IntVar(&cfg.Reps, "reps", cfg.Reps, "repetitions")
	clients := fs.String("clients", joinInts(cfg.Clients), "comma-separated concurrency levels")
	fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "HTTP/2 connections the API clients and watchers are spread over")
	fs.IntVar(&cfg.Watchers, "watchers", cfg.Watchers, "watch streams in the watch phase")
	fs.IntVar(&cfg.WatchRate, "watch-rate", cfg.WatchRate, "updates per second in the watch phase")
	fs.IntVar(&cfg.ObjectSize, "object-size", cfg.ObjectSize, "stored size in bytes of the API objects and raw values")
	fs.IntVar(&cfg.GetObjects, "get-objects", cfg.GetObjects, "objects the get phase reads from")
	fs.IntVar(&cfg.MaxOps, "max-ops", cfg.MaxOps, "most operations of one run of one workload")
	fs.IntVar(&cfg.FsyncSamples, "fsync-samples", cfg.FsyncSamples, "fdatasync calls of the disk probe")
	fs.IntVar(&cfg.Procs, "procs", cfg.Procs, "GOMAXPROCS for the run (0: leave as is)")
	phases := fs.String("phases", strings.Join(apibench.AllPhases, ","), "comma-separated phases to run")
	workloads := fs.String("workloads", "", "run only these workloads of the throughput phases, e.g. api-create-edit (for profiling; floors are skipped unless named)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the measured phases to this file")
	fs.StringVar(&cfg.Write, "write", "", "replace (or add) each benchmark's section of this Markdown file, e.g. docs/benchmarks.md")
	fs.IntVar(&rcfg.Starts, "b3-starts", rcfg.Starts, "B3: measured sequential starts of each workload, and the total of the concurrent phase")
	fs.IntVar(&rcfg.Concurrency, "b3-concurrency", rcfg.Concurrency, "B3: starts kept going at once in the concurrent phase")
	fs.IntVar(&rcfg.Sandboxes, "b3-sandboxes", 0, "B3: sandboxes the concurrent plugin starts are spread over (0: one per concurrent start; 1: all in one pod)")
	fs.IntVar(&rcfg.Warmup, "b3-warmup", rcfg.Warmup, "B3: unmeasured sequential starts of each workload first")
	b3Classes := fs.String("b3-classes", strings.Join(rcfg.Classes, ","), "B3: comma-separated runtime classes whose pod starts are measured (runc, gvisor, containerd)")
	fs.IntVar(&rcfg.PodStarts, "b3-pod-starts", rcfg.PodStarts, "B3: measured sequential pod starts of each class and floor")
	fs.StringVar(&rcfg.RunscPlugin, "b3-runsc-plugin", rcfg.RunscPlugin, "B3: the gVisor runtime plugin binary of the gvisor class (make build)")
	fs.StringVar(&rcfg.Runsc, "b3-runsc", rcfg.Runsc, "B3: runsc of the gvisor class and the runsc run floor (make build)")
	fs.StringVar(&rcfg.ContainerdPlugin, "b3-containerd-plugin", rcfg.ContainerdPlugin, "B3: the containerd runtime plugin binary of the containerd class (make build)")
	fs.StringVar(&rcfg.Containerd, "b3-containerd", rcfg.Containerd, "B3: the containerd binary the containerd class's private daemon runs")
	fs.StringVar(&rcfg.Plugin, "runtime-plugin", rcfg.Plugin, "B3 and PODSTART: the runtime plugin binary (make build)")
	fs.StringVar(&rcfg.ImageArchive, "image-archive", rcfg.ImageArchive, "B3 and PODSTART: OCI archive of the image the containers run (make testimages)")
	fs.StringVar(&rcfg.Image, "image", rcfg.Image, "B3 and PODSTART: the image's reference in the archive")
	fs.StringVar(&rcfg.Runc, "runc", rcfg.Runc, "B3 and PODSTART: the runc binary of the floor, also given to the plugin")
	fs.IntVar(&scfg.Nodes, "b1-nodes", scfg.Nodes, "B1: simulated nodes (Node objects only)")
	fs.IntVar(&scfg.Pods, "b1-pods", scfg.Pods, "B1: pending pods of the burst the scheduler binds")
	fs.IntVar(&scfg.PrePlaced, "b1-preplaced", scfg.PrePlaced, "B1: pods created already bound before the burst")
	fs.IntVar(&scfg.Tenants, "b1-tenants", scfg.Tenants, "B1: tenants the burst's pods are spread over")
	fs.IntVar(&scfg.Creators, "b1-creators", scfg.Creators, "B1: goroutines creating the burst's pods")
	fs.StringVar(&scfg.CPUProfile, "b1-cpuprofile", "", "B1: write the CPU profile of the burst to this file")
	fs.IntVar(&scfg.Binders, "b1-binders", 0, "B1: the scheduler's binds in flight, and the floor's goroutines (0: the scheduler's default)")
	fs.IntVar(&pcfg.Pods, "podstart-pods", pcfg.Pods, "PODSTART: measured sequential pod starts, and the total of the concurrent phase")
	fs.IntVar(&pcfg.Concurrency, "podstart-concurrency", pcfg.Concurrency, "PODSTART: pod starts kept going at once in the concurrent phase")
	b6Sizes := fs.String("b6-sizes", joinInts(vcfg.Sizes), "B6: comma-separated numbers of services the proxy's table is ramped to")
	fs.IntVar(&vcfg.Endpoints, "b6-endpoints", vcfg.Endpoints, "B6: endpoints of every service")
	fs.IntVar(&vcfg.Changes, "b6-changes", vcfg.Changes, "B6: timed endpoint changes per size and path, and floor inserts per size")
	fs.IntVar(&vcfg.FirstPackets, "b6-first-packets", vcfg.FirstPackets, "B6: timed connections to the last-defined service per size")
	fs.BoolVar(&vcfg.API, "b6-api", vcfg.API, "B6: also time the changes through an API server and the proxy's informers")
	fs.StringVar(&ncfg.Plugin, "network-plugin", ncfg.Plugin, "B6-DATAPATH: the bridge network plugin binary (make build)")
	fs.DurationVar(&ncfg.Duration, "datapath-duration", ncfg.Duration, "B6-DATAPATH: measured length of each throughput run")
	fs.DurationVar(&ncfg.Warmup, "datapath-warmup", ncfg.Warmup, "B6-DATAPATH: unmeasured start of each throughput run")
	fs.IntVar(&ncfg.Reps, "datapath-reps", ncfg.Reps, "B6-DATAPATH: repetitions of every workload on both paths")
	datapathStreams := fs.String("datapath-streams", joinInts(ncfg.Streams), "B6-DATAPATH: comma-separated TCP stream counts of the throughput workloads")
	fs.IntVar(&ncfg.RoundTrips, "datapath-round-trips", ncfg.RoundTrips, "B6-DATAPATH: timed one-byte round trips per repetition and path")
	logLevel := fs.String("log-level", "info", "progress log level on stderr: debug, info, warn or error")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "paddock-bench: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}
	var err error
	if cfg.Clients, err = parseInts(*clients); err != nil {
		fmt.Fprintf(os.Stderr, "paddock-bench: --clients: %v\n", err)
		os.Exit(2)
	}
	if vcfg.Sizes, err = parseInts(*b6Sizes); err != nil {
		fmt.Fprintf(os.Stderr, "paddock-bench: --b6-sizes: %v\n", err)
		os.Exit(2)
	}
	if ncfg.Streams, err = parseInts(*datapathStreams); err != nil {
		fmt.Fprintf(os.Stderr, "paddock-bench: --datapath-streams: %v\n", err)
		os.Exit(2)
	}
	rcfg.Classes = nil
	for c := range strings.SplitSeq(*b3Classes, ",") {
		if c = strings.ToLower(strings.TrimSpace(c)); c != "" {
			rcfg.Classes = append(rcfg.Classes, c)
		}
	}
	run, err := parseBenchmarks(*benchmarks)
	if err != nil {
		fmt.Fprintf(os.Stderr, "paddock-bench: --benchmarks: %v\n", err)
		os.Exit(2)
	}
	cfg.Phases = strings.Split(*phases, ",")
	if *workloads != "" {
		cfg.Workloads = strings.Split(*workloads, ",")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "paddock-bench: --log-level: %v\n", err)
		os.Exit(2)
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Command = strings.Join(os.Args, " ")
	rcfg.DataDir, rcfg.Write, rcfg.Log, rcfg.Command = cfg.DataDir, cfg.Write, cfg.Log, cfg.Command
	scfg.DataDir, scfg.Write, scfg.Log, scfg.Command, scfg.Procs = cfg.DataDir, cfg.Write, cfg.Log, cfg.Command, cfg.Procs
	pcfg.Runtime, pcfg.DataDir, pcfg.Write, pcfg.Log, pcfg.Command = rcfg.Runtime, cfg.DataDir, cfg.Write, cfg.Log, cfg.Command
	vcfg.DataDir, vcfg.Write, vcfg.Log, vcfg.Command = cfg.DataDir, cfg.Write, cfg.Log, cfg.Command
	ncfg.DataDir, ncfg.Write, ncfg.Log, ncfg.Command = cfg.DataDir, cfg.Write, cfg.Log, cfg.Command

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, b := range run {
		var err error
		switch b {
		case "B1":
			err = schedbench.Run(ctx, scfg)
		case "B3":
			err = runtimebench.Run(ctx, rcfg)
		case "B4":
			err = apibench.Run(ctx, cfg)
		case podbench.SectionName:
			err = podbench.Run(ctx, pcfg)
		case svcbench.SectionName:
			err = svcbench.Run(ctx, vcfg)
		case netbench.SectionName:
			err = netbench.Run(ctx, ncfg)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "paddock-bench: %s: %v\n", b, err)
			stop()
			os.Exit(1)
		}
	}
}

// parseBenchmarks returns the benchmarks named in s, in the order they
// run.
func parseBenchmarks(s string) ([]string, error) {
	want := map[string]bool{}
	for f := range strings.SplitSeq(s, ",") {
		name := strings.ToUpper(strings.TrimSpace(f))
		if !slices.Contains(allBenchmarks, name) {
			return nil, fmt.Errorf("%q is not a benchmark; want some of %s", f, strings.Join(allBenchmarks, ","))
		}
		want[name] = true
	}
	var out []string
	for _, b := range allBenchmarks {
		if want[b] {
			out = append(out, b)
		}
	}
	return out, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
