// Command paddock-bench runs benchmark B4 (API write path, store and watch
// fan-out) against the raw etcd floor on this machine, prints a Markdown
// table and, with --write, records it in docs/benchmarks.md. See package
// bench/apibench.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/paddock-dev/paddock/bench/apibench"
)

func main() {
	cfg := apibench.DefaultConfig()
	fs := flag.NewFlagSet("paddock-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: paddock-bench [flags]\n\nRuns benchmark B4 (API creates, gets and watch fan-out against raw etcd) in one process.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the run's temporary data (decides the disk under etcd; default: the system temp dir)")
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
	fs.StringVar(&cfg.Write, "write", "", "replace (or add) the B4 section of this Markdown file, e.g. docs/benchmarks.md")
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := apibench.Run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "paddock-bench: %v\n", err)
		stop()
		os.Exit(1)
	}
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
